//! Errors for people: the whole chain of what went wrong, a hint of what to do, and the exit
//! code (2 for bad usage, 3 for differences found by `reel diff`
//! or nothing found by `reel search`, 1 for everything else).

use std::fmt;

/// A mistake in how reel was called (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Not a failure: `reel diff` found differences (exit code 3, like `git diff --exit-code`).
/// Nothing is printed for it: the differences were.
#[derive(Debug)]
pub struct Differences;

impl fmt::Display for Differences {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the checkpoints differ")
    }
}

impl std::error::Error for Differences {}

/// Not a failure: `reel search` found nothing (exit code 3, like `grep`'s 1). Nothing is
/// printed for it: the empty result was.
#[derive(Debug)]
pub struct NothingFound;

impl fmt::Display for NothingFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing found")
    }
}

impl std::error::Error for NothingFound {}

/// Whether `err` is only an exit status (3), not a failure to report.
pub fn is_status(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Differences>().is_some() || err.downcast_ref::<NothingFound>().is_some()
}

/// An `anyhow::Error` for a usage mistake.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The error and its causes, outermost first.
pub fn describe(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// The exit code for this error.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<UsageError>().is_some() {
        2
    } else if is_status(err) {
        3
    } else {
        1
    }
}

/// What the user can do about it, when reel knows.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    for cause in err.chain() {
        if let Some(h) = crate::cmd::hint_for(cause) {
            return Some(h);
        }
    }
    None
}

/// What to do about a CRIU failure reel recognises, with reel's flags.
pub fn criu(known: reel_core::criu::Known) -> &'static str {
    use reel_core::criu::Known;
    match known {
        Known::NoMemoryTracking => {
            "this kernel cannot track memory changes: only plain checkpoints work here"
        }
        Known::TcpEstablished => {
            "checkpoint with --tcp-established (restore such images with `runc restore --tcp-established`)"
        }
        Known::ExternalUnixSocket => "checkpoint with --ext-unix-sk",
        Known::ShellJob => "checkpoint with --shell-job",
        Known::FileLocks => "checkpoint with --file-locks",
        Known::DeletedFile => {
            "checkpoint with --link-remap (it links the deleted file back into the container's filesystem)"
        }
        Known::UndeclaredMount => {
            "reel declares every mount of the container's spec; a mount made later inside the container cannot be dumped"
        }
        Known::PidNamespaceInit => "checkpoint the container (its init), not a process inside it",
        Known::NoIptables => "install iptables (apt-get install iptables)",
        Known::FreezeTimeout => "retry, or give reel more time with --timeout",
        Known::ReadOnly => "store checkpoints on a writable file system (--root DIR, --staging-dir DIR)",
        Known::PermissionDenied => "run reel as root",
        Known::NoSuchProcess => "the container's process is gone; see `reel get workloads -A`",
        Known::CannotSeize => {
            "another tracer (strace, gdb) holds a process of the container; detach it and retry"
        }
        Known::GhostTooLarge => "raise the limit with --ghost-limit SIZE (e.g. --ghost-limit 1G)",
        Known::OtherUser => OTHER_USER,
    }
}

/// When CRIU cannot dump another user's process.
pub const OTHER_USER: &str = "run reel with CAP_SYS_RESOURCE (a node's root has it; `reel get capabilities` shows whether this one does)";

/// What a restore of these images needs, said after a checkpoint.
pub fn restore(c: &reel_core::checkpoint::Captured) -> Vec<String> {
    let mut out = Vec::new();
    if c.tcp_connections > 0 {
        out.push(format!(
            "{} established TCP connection(s) kept: restore with `runc restore --tcp-established` \
             (or close them with CRIU's tcp-close)",
            c.tcp_connections
        ));
    }
    if c.external_unix_sockets > 0 {
        out.push(format!(
            "{} unix socket(s) connected outside the container were declared external: \
             `runc restore --ext-unix-sk` reconnects them to their peers",
            c.external_unix_sockets
        ));
    }
    if c.deleted_files > 0 {
        out.push(format!(
            "{} deleted file(s) still open were kept as ghost files",
            c.deleted_files
        ));
    }
    out
}
