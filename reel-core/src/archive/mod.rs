//! Checkpoint archive (stub; being written).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not yet implemented")]
    Todo,
}
