//! Operations: configuration, metrics, the operator and publisher API, the
//! drain, and the command-line clients (`publish`, `lambda check`).

pub mod api;
pub mod config;
pub mod lambda_check;
pub mod metrics;
pub mod publish_cmd;
pub mod secret;
pub mod supervise;
