//! The crate's error: one variant per module, each wrapping that module's typed error.

/// Any error reel-core returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Criu(#[from] crate::criu::CriuError),
    #[error(transparent)]
    Image(#[from] crate::criu::image::ImageError),
    #[error(transparent)]
    Freezer(#[from] crate::cgroups::FreezerError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Rpc(#[from] crate::rpc::RpcError),
    #[error(transparent)]
    Evidence(#[from] crate::evidence::EvidenceError),
}

/// `Result` with reel-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its sources on one line (transport libraries' own messages alone say little:
/// hyper's is "client error").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
