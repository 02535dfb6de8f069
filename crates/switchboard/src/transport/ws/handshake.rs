//! The server half of the RFC 6455 opening handshake: checks an upgrade request's headers
//! and computes the `Sec-WebSocket-Accept` value for the 101 response.

use base64::Engine as _;
use hyper::header::{HeaderMap, CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::Method;
use sha1::{Digest as _, Sha1};

/// GUID every server appends to the client's key (RFC 6455 §1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a request is not a WebSocket upgrade. `BadVersion` should be answered with 426 and
/// `Sec-WebSocket-Version: 13` so the client can retry (§4.4); the rest with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("websocket upgrade must be a GET request")]
    NotGet,
    #[error("missing `Upgrade: websocket` header")]
    MissingUpgrade,
    #[error("missing `upgrade` token in the Connection header")]
    MissingConnectionUpgrade,
    #[error("Sec-WebSocket-Version must be 13")]
    BadVersion,
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
}

/// Validates an upgrade request's headers (`Upgrade: websocket`, `Connection` containing the
/// token `upgrade`, both case-insensitive; `Sec-WebSocket-Version: 13`; `Sec-WebSocket-Key`
/// present) and returns the `Sec-WebSocket-Accept` value.
pub fn accept(method: &Method, headers: &HeaderMap) -> Result<String, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    // Both headers are token lists and may be repeated, so look at every token of every line.
    if !has_token(headers, UPGRADE, "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let version = headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(|value| value.as_bytes().trim_ascii());
    if version != Some(b"13".as_slice()) {
        return Err(HandshakeError::BadVersion);
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|value| value.as_bytes().trim_ascii())
        .filter(|key| !key.is_empty())
        .ok_or(HandshakeError::MissingKey)?;
    Ok(accept_key(key))
}

/// `base64(sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))`, the value proving to the
/// client that this server speaks WebSocket.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

fn has_token(headers: &HeaderMap, name: hyper::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&byte| byte == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}
