//! Why a store call failed: the store is slow, gone or full, never "the answer is no".

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the in-memory store is full ({0} entries)")]
    Full(usize),
}

impl StoreError {
    /// The metrics label of the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Redis(_) => "redis",
            StoreError::Timeout(_) => "timeout",
            StoreError::Full(_) => "full",
        }
    }
}
