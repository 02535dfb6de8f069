//! Scale-out on Nats (issue 6): three gateway processes sharing a real
//! `nats-server -js` on free loopback ports. The scenarios live in
//! `scale/mod.rs`, shared with the other broker's tests.
#![cfg(feature = "nats")]

mod scale;

scale::broker_tests!(scale::Kind::Nats);
