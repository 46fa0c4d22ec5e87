//! Container discovery (stub; being written).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("not yet implemented")]
    Todo,
}
