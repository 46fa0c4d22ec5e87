//! cgroup freezers (stub; being written).
#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    #[error("not yet implemented")]
    Todo,
}
