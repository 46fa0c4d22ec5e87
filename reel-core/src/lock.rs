//! Per-container lock (stub; being written).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("not yet implemented")]
    Todo,
}
