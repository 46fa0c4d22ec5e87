//! The CRIU driver (stub; being written).
#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error("not yet implemented")]
    Todo,
}
