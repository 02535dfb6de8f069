//! Scale-out on Redis (issue 6): three gateway processes sharing a real
//! `redis-server` (no persistence) on free loopback ports. The scenarios live in
//! `scale/mod.rs`, shared with the other broker's tests.
#![cfg(feature = "redis")]

mod scale;

scale::broker_tests!(scale::Kind::Redis);
