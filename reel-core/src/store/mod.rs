//! Checkpoint store (stub; being written).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not yet implemented")]
    Todo,
}
