//! Capabilities a stream uses, each a small unit with its own tests and a
//! known cost (docs/capacity.md): rate limits, dedup, batching, timers, sinks.

pub mod batch;
pub mod dedup;
pub mod rate_limit;
pub mod sink;
pub mod timer_shards;

#[cfg(test)]
mod props;
