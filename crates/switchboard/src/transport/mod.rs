//! Transports: the HTTP listener (plain or TLS) and its routes, WebSocket and
//! SSE framing.
//! They know frames and sockets, not apps.

pub mod edge;
pub mod http;
pub mod idle;
pub mod origin;
pub mod proxy_protocol;
pub mod real_ip;
pub mod sse;
pub mod tls;
pub mod ws;
