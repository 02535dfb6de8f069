//! Transports: the HTTP listener and its routes, WebSocket and SSE framing.
//! They know frames and sockets, not apps.

pub mod http;
pub mod sse;
pub mod ws;
