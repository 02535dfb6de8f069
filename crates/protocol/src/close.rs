//! Why a stream ended, and the WebSocket close code that goes with it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Client,
    Lambda,
    Shutdown,
    SlowConsumer,
    Timeout,
    Error,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Lambda => "lambda",
            Self::Shutdown => "shutdown",
            Self::SlowConsumer => "slow_consumer",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }

    /// The `closed` frame code for a close the lambda did not choose itself.
    pub fn code(self) -> u16 {
        match self {
            Self::Client => 1000,
            Self::Lambda => 4000,
            Self::Shutdown => 1012,
            Self::SlowConsumer => 1013,
            Self::Timeout => 1001,
            Self::Error => 1011,
        }
    }
}
