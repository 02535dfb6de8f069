//! Scale-out on Redis (issue 6): three gateway processes sharing a real
//! `redis-server` (no persistence) on free loopback ports. The scenarios live in
//! `scale/mod.rs`, shared with the other broker's tests.
#![cfg(feature = "redis")]

mod scale;

use scale::Kind;

const KIND: Kind = Kind::Redis;

#[test]
fn fanout_across_nodes() -> anyhow::Result<()> {
    scale::run(scale::fanout_across_nodes(KIND))
}

#[test]
fn lambda_publish_reaches_other_nodes() -> anyhow::Result<()> {
    scale::run(scale::lambda_publish_reaches_other_nodes(KIND))
}

#[test]
fn resume_on_another_node() -> anyhow::Result<()> {
    scale::run(scale::resume_on_another_node(KIND))
}

#[test]
fn broker_restart() -> anyhow::Result<()> {
    scale::run(scale::broker_restart(KIND))
}

#[test]
fn node_cut_off_catches_up() -> anyhow::Result<()> {
    scale::run(scale::node_cut_off_catches_up(KIND))
}

#[test]
fn node_killed_clients_resume() -> anyhow::Result<()> {
    scale::run(scale::node_killed_clients_resume(KIND))
}

#[test]
fn store_lost() -> anyhow::Result<()> {
    scale::run(scale::store_lost(KIND))
}
