//! The driver's error type, and the one place where CRIU's failures are mapped to it.
//!
//! Every failure of a request carries the request type and the last error lines of CRIU's log
//! (the log file in the work dir, and whatever CRIU printed on its stderr before it opened
//! that log). A failed request also carries CRIU's `cr_errno` and `cr_errmsg`, and a hint when
//! the message is a known one (see [`Known`]).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// What to do when CRIU is missing or too old.
pub const HOW_TO_FIX: &str = "run `vendor/criu.sh` as root to build and install the pinned \
CRIU into /opt/reel/criu (or `scripts/setup.sh`), or point REEL_CRIU at a CRIU >= 4.2 binary";

/// A request of CRIU's RPC protocol (the `criu_req_type` the driver sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Request {
    /// `VERSION`.
    Version,
    /// `CHECK`.
    Check,
    /// `FEATURE_CHECK`.
    FeatureCheck,
    /// `DUMP`.
    Dump,
    /// `PRE_DUMP`.
    PreDump,
    /// `RESTORE`.
    Restore,
    /// `PAGE_SERVER_CHLD` (a page server kept as a child of CRIU, so it can be reaped).
    PageServer,
    /// `WAIT_PID` (reaping the page server).
    WaitPid,
}

impl Request {
    /// The name of the request in CRIU's protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Request::Version => "VERSION",
            Request::Check => "CHECK",
            Request::FeatureCheck => "FEATURE_CHECK",
            Request::Dump => "DUMP",
            Request::PreDump => "PRE_DUMP",
            Request::Restore => "RESTORE",
            Request::PageServer => "PAGE_SERVER",
            Request::WaitPid => "WAIT_PID",
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitInfo {
    /// Decodes a `wait(2)` status.
    pub fn from_wait_status(status: i32) -> ExitInfo {
        if libc::WIFSIGNALED(status) {
            ExitInfo::Signaled(libc::WTERMSIG(status))
        } else {
            ExitInfo::Exited(libc::WEXITSTATUS(status))
        }
    }

    pub(crate) fn from_std(status: std::process::ExitStatus) -> ExitInfo {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitInfo::Exited(code),
            (None, Some(sig)) => ExitInfo::Signaled(sig),
            (None, None) => ExitInfo::Exited(-1),
        }
    }

    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitInfo::Exited(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitInfo::Exited(code) => write!(f, "exit code {code}"),
            ExitInfo::Signaled(sig) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => write!(f, "killed by signal {sig} ({s})"),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
        }
    }
}

/// Everything the CRIU driver can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CriuError {
    /// No CRIU binary where it was looked for.
    #[error("CRIU binary not found (looked at: {}); {HOW_TO_FIX}", paths(.searched))]
    BinaryNotFound {
        /// Every place that was tried, in order.
        searched: Vec<PathBuf>,
    },

    /// The file exists but cannot be executed.
    #[error("CRIU binary {} is not an executable file; {HOW_TO_FIX}", .path.display())]
    NotExecutable {
        /// The file.
        path: PathBuf,
    },

    /// The binary answered VERSION with a version older than 4.2 (or could not answer it).
    #[error(
        "CRIU at {} is version {found}, but reel needs >= {}.{} (3.17 fails on kernels >= 6.13, \
         4.1 cannot dump inet sockets on kernels >= 6.16); {HOW_TO_FIX}",
        .path.display(), .required.0, .required.1
    )]
    VersionTooOld {
        /// The binary.
        path: PathBuf,
        /// What it reported.
        found: String,
        /// The minimum (major, minor).
        required: (i32, i32),
    },

    /// `criu swrk` could not be started.
    #[error("cannot start {} swrk: {source}", .path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// Sending to or receiving from CRIU failed, or CRIU sent something that is not a valid
    /// answer.
    #[error("CRIU {request}: protocol error while {context}: {source}{}", log_lines(.log))]
    Protocol {
        /// The request in flight.
        request: Request,
        /// What the driver was doing.
        context: &'static str,
        /// The error.
        #[source]
        source: io::Error,
        /// The last error lines of CRIU's log.
        log: Vec<String>,
    },

    /// A file or directory the driver needs could not be used.
    #[error("CRIU {request}: cannot {context} {}: {source}", .path.display())]
    Io {
        /// The request being prepared or read back.
        request: Request,
        /// What the driver was doing (e.g. "open the images dir").
        context: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },

    /// CRIU exited (or was killed) before answering.
    #[error("CRIU died during {request} ({status}){}", log_lines(.log))]
    Died {
        /// The request in flight.
        request: Request,
        /// How CRIU ended.
        status: ExitInfo,
        /// The last error lines of CRIU's log.
        log: Vec<String>,
    },

    /// CRIU did not answer in time; it was killed and reaped.
    #[error("CRIU {request} timed out after {after:?}; CRIU was killed{}", log_lines(.log))]
    Timeout {
        /// The request in flight.
        request: Request,
        /// The timeout of the call.
        after: Duration,
        /// The last error lines of CRIU's log.
        log: Vec<String>,
    },

    /// CRIU answered that the request failed.
    #[error(
        "CRIU {request} failed: {}{}{}{}",
        headline(.cr_errmsg.as_deref(), .log),
        errno_text(*.cr_errno),
        explanation(*.hint),
        log_lines(.log)
    )]
    RequestFailed {
        /// The request.
        request: Request,
        /// CRIU's `cr_errno`, when it set one.
        cr_errno: Option<i32>,
        /// CRIU's `cr_errmsg` (the first error line of its log), when it sent one.
        cr_errmsg: Option<String>,
        /// The last error lines of CRIU's log.
        log: Vec<String>,
        /// What the failure is, when CRIU's message is a known one.
        hint: Option<Known>,
    },

    /// A notification callback returned an error (or panicked): CRIU was told the step
    /// failed, and the request failed.
    #[error("CRIU {request}: the {script} notification failed: {message}{}", log_lines(.log))]
    NotifyFailed {
        /// The request in flight.
        request: Request,
        /// The notification (`post-dump`, ...).
        script: String,
        /// The callback's error.
        message: String,
        /// The last error lines of CRIU's log.
        log: Vec<String>,
    },

    /// The options cannot make a valid request.
    #[error("CRIU {request}: invalid options: {reason}")]
    InvalidOptions {
        /// The request.
        request: Request,
        /// What is wrong.
        reason: String,
    },
}

impl CriuError {
    /// The request this error belongs to, if any.
    pub fn request(&self) -> Option<Request> {
        match self {
            CriuError::Protocol { request, .. }
            | CriuError::Io { request, .. }
            | CriuError::Died { request, .. }
            | CriuError::Timeout { request, .. }
            | CriuError::RequestFailed { request, .. }
            | CriuError::NotifyFailed { request, .. }
            | CriuError::InvalidOptions { request, .. } => Some(*request),
            _ => None,
        }
    }

    /// The error lines of CRIU's log carried by this error (empty when there are none).
    pub fn log(&self) -> &[String] {
        match self {
            CriuError::Protocol { log, .. }
            | CriuError::Died { log, .. }
            | CriuError::Timeout { log, .. }
            | CriuError::RequestFailed { log, .. }
            | CriuError::NotifyFailed { log, .. } => log,
            _ => &[],
        }
    }

    /// Maps a `success=false` answer. Logged here.
    pub(crate) fn request_failed(
        request: Request,
        cr_errno: Option<i32>,
        cr_errmsg: Option<String>,
        log: Vec<String>,
    ) -> CriuError {
        let cr_errmsg = cr_errmsg
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
        let hint = cr_errmsg
            .as_deref()
            .and_then(Known::recognise)
            .or_else(|| log.iter().rev().find_map(|l| Known::recognise(l)));
        tracing::warn!(
            request = %request,
            cr_errno = cr_errno.unwrap_or(0),
            cr_errmsg = cr_errmsg.as_deref().unwrap_or(""),
            known = ?hint,
            last_log_line = log.last().map(String::as_str).unwrap_or(""),
            "CRIU request failed"
        );
        CriuError::RequestFailed {
            request,
            cr_errno,
            cr_errmsg,
            log,
            hint,
        }
    }

    pub(crate) fn died(request: Request, status: ExitInfo, log: Vec<String>) -> CriuError {
        tracing::warn!(request = %request, %status, "CRIU died before answering");
        CriuError::Died {
            request,
            status,
            log,
        }
    }

    pub(crate) fn timeout(request: Request, after: Duration, log: Vec<String>) -> CriuError {
        tracing::warn!(request = %request, ?after, "CRIU timed out; killed it");
        CriuError::Timeout {
            request,
            after,
            log,
        }
    }

    pub(crate) fn protocol(
        request: Request,
        context: &'static str,
        source: io::Error,
        log: Vec<String>,
    ) -> CriuError {
        tracing::warn!(request = %request, context, error = %source, "CRIU protocol error");
        CriuError::Protocol {
            request,
            context,
            source,
            log,
        }
    }

    pub(crate) fn notify_failed(
        request: Request,
        script: String,
        message: String,
        log: Vec<String>,
    ) -> CriuError {
        tracing::warn!(request = %request, script = %script, message = %message,
            "CRIU notification callback failed");
        CriuError::NotifyFailed {
            request,
            script,
            message,
            log,
        }
    }

    pub(crate) fn io(
        request: Request,
        context: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> CriuError {
        let path = path.into();
        tracing::warn!(request = %request, context, path = %path.display(), error = %source,
            "CRIU driver I/O error");
        CriuError::Io {
            request,
            context,
            path,
            source,
        }
    }

    pub(crate) fn invalid(request: Request, reason: impl Into<String>) -> CriuError {
        CriuError::InvalidOptions {
            request,
            reason: reason.into(),
        }
    }
}

/// A CRIU failure reel recognises in CRIU's message or log, so that a program can tell its
/// user what to do in its own terms (the `reel` CLI names its flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// The kernel has no memory dirty tracking (pre-dump, `track_mem`).
    NoMemoryTracking,
    /// An established TCP connection, and `tcp_established` is off.
    TcpEstablished,
    /// A unix socket connected outside the dumped tree, and `ext_unix_sk` is off.
    ExternalUnixSocket,
    /// The root task is not a session leader, and `shell_job` is off.
    ShellJob,
    /// File locks are held, and `file_locks` is off.
    FileLocks,
    /// An open file was deleted and cannot be dumped as a ghost file.
    DeletedFile,
    /// A mount is neither part of the container nor declared external.
    UndeclaredMount,
    /// The pid namespace's init is not dumped and the namespace is not external.
    PidNamespaceInit,
    /// CRIU's network lock needs iptables.
    NoIptables,
    /// The cgroup freezer timed out.
    FreezeTimeout,
    /// The images or work directory is read-only.
    ReadOnly,
    /// CRIU lacks a permission.
    PermissionDenied,
    /// The process does not exist.
    NoSuchProcess,
    /// The process could not be seized.
    CannotSeize,
    /// An open-but-deleted file is larger than the ghost-file limit.
    GhostTooLarge,
    /// A task of another uid or gid, and CRIU lacks CAP_SYS_RESOURCE to read its rlimits.
    OtherUser,
}

/// CRIU's messages (a part of the line) and what they mean.
const KNOWN: &[(&str, Known)] = &[
    ("Tracking memory is not available", Known::NoMemoryTracking),
    ("Dirty tracking support is OFF", Known::NoMemoryTracking),
    ("Connected TCP socket", Known::TcpEstablished),
    ("External socket is used", Known::ExternalUnixSocket),
    ("is not a session leader", Known::ShellJob),
    ("Some file locks are hold", Known::FileLocks),
    ("Use --link-remap", Known::DeletedFile),
    ("doesn't have a proper root mount", Known::UndeclaredMount),
    (
        "Can't dump a pid namespace without the process init",
        Known::PidNamespaceInit,
    ),
    ("iptables-restore", Known::NoIptables),
    ("Unable to freeze cgroup", Known::FreezeTimeout),
    ("Read-only file system", Known::ReadOnly),
    ("Permission denied", Known::PermissionDenied),
    ("No such process", Known::NoSuchProcess),
    ("Can't stop", Known::CannotSeize),
    ("Can't dump ghost file", Known::GhostTooLarge),
    ("Can't get rlimit", Known::OtherUser),
];

impl Known {
    /// The failure a CRIU message (or log line) shows, if reel knows it.
    pub fn recognise(message: &str) -> Option<Known> {
        KNOWN
            .iter()
            .find(|(needle, _)| message.contains(needle))
            .map(|(_, k)| *k)
    }

    /// What it means, in CRIU's and this library's terms.
    pub fn explanation(self) -> &'static str {
        match self {
            Known::NoMemoryTracking => {
                "this kernel has no memory dirty tracking (soft-dirty, CONFIG_MEM_SOFT_DIRTY): \
                 memory tracking is unsupported here, so pre-dump and track_mem cannot work; \
                 only a plain dump can"
            }
            Known::TcpEstablished => {
                "the tree holds an established TCP connection, which is dumped only with \
                 tcp_established"
            }
            Known::ExternalUnixSocket => {
                "a unix socket is connected outside the dumped tree, which is dumped only with \
                 ext_unix_sk or when declared external"
            }
            Known::ShellJob => "the root task is not a session leader (a shell job)",
            Known::FileLocks => "the tree holds file locks, which are dumped only with file_locks",
            Known::DeletedFile => "an open file was deleted and could not be dumped",
            Known::UndeclaredMount => {
                "a mount is not part of the container and not declared external (every bind \
                 mount and masked path must be)"
            }
            Known::PidNamespaceInit => {
                "the pid namespace's init is not dumped and the namespace is not external"
            }
            Known::NoIptables => "CRIU locks the network with iptables, which is not installed",
            Known::FreezeTimeout => "the cgroup freezer timed out",
            Known::ReadOnly => "the images or work directory is on a read-only file system",
            Known::PermissionDenied => "CRIU lacks a permission (it must run as root)",
            Known::NoSuchProcess => "the process does not exist",
            Known::CannotSeize => "the process could not be seized (is it traced?)",
            Known::GhostTooLarge => {
                "an open-but-deleted file is larger than the ghost-file limit (ghost_limit)"
            }
            Known::OtherUser => {
                "a task runs as another user, and CRIU needs CAP_SYS_RESOURCE to read its rlimits"
            }
        }
    }
}

/// How many error lines of CRIU's log an error keeps.
pub(crate) const LOG_LINES: usize = 10;

/// Error lines CRIU logs on its way to success: they explain nothing about a failure.
const BENIGN: &[&str] = &[
    // CRIU tries to raise its own RLIMIT_NOFILE to fs.nr_open and goes on when it cannot
    // (without CAP_SYS_RESOURCE).
    "Can't setup RLIMIT_NOFILE for self",
];

/// Generic last words ("Dumping FAILED.") that say less than the lines before them.
const GENERIC: &[&str] = &["FAILED.", "One of more action scripts failed"];

/// The last error lines of a CRIU log: lines with "Error", and `(`-prefixed timestamped lines
/// mentioning an error, without the known benign ones.
pub(crate) fn error_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("Error") || (l.starts_with('(') && l.contains("rror")))
        .filter(|l| !BENIGN.iter().any(|b| l.contains(b)))
        .map(|l| l.trim_end().to_string())
        .collect();
    if lines.len() > LOG_LINES {
        lines.drain(..lines.len() - LOG_LINES);
    }
    lines
}

/// The most telling line of a failure: CRIU's `cr_errmsg` (its first error), unless that is
/// a benign line, else the first specific error line of the log.
fn headline<'a>(cr_errmsg: Option<&'a str>, log: &'a [String]) -> &'a str {
    let specific = |l: &&str| !BENIGN.iter().chain(GENERIC).any(|b| l.contains(b));
    cr_errmsg
        .filter(|m| !m.is_empty() && !BENIGN.iter().any(|b| m.contains(b)))
        .or_else(|| log.iter().map(|l| strip_stamp(l)).find(specific))
        .or_else(|| log.last().map(|l| strip_stamp(l)))
        .unwrap_or("no error message")
}

/// `(00.012345) Error (...)` -> `Error (...)`.
fn strip_stamp(line: &str) -> &str {
    match line.strip_prefix('(').and_then(|r| r.split_once(") ")) {
        Some((stamp, rest)) if stamp.chars().all(|c| c.is_ascii_digit() || c == '.') => rest,
        _ => line,
    }
}

fn paths(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn log_lines(log: &[String]) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("; CRIU's log says:\n  {}", log.join("\n  "))
    }
}

fn errno_text(errno: Option<i32>) -> String {
    match errno {
        Some(e) if e != 0 => format!(" (cr_errno {e}: {})", nix::errno::Errno::from_raw(e).desc()),
        _ => String::new(),
    }
}

fn explanation(known: Option<Known>) -> String {
    known
        .map(|k| format!(" ({})", k.explanation()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_error_lines() {
        let log = "(00.001) Version: 4.2.1\n(00.002) Error (criu/cr-dump.c:1): boom\n\
                   Warn: nothing\nError (criu/x.c:2): bang\n";
        assert_eq!(
            error_lines(log),
            vec![
                "(00.002) Error (criu/cr-dump.c:1): boom",
                "Error (criu/x.c:2): bang"
            ]
        );
    }

    #[test]
    fn headline_skips_benign_lines() {
        let log = vec![
            "(00.01) Error (criu/cr-dump.c:1): Unable to open seccomp.img: Read-only file system"
                .to_string(),
            "(00.02) Error (criu/cr-dump.c:1975): Dumping FAILED.".to_string(),
        ];
        let rl = "Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n";
        let e = CriuError::request_failed(Request::Dump, None, Some(rl.into()), log);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "CRIU DUMP failed: Error (criu/cr-dump.c:1): Unable to open seccomp.img"
            ),
            "{text}"
        );
        assert!(text.contains("read-only file system"), "{text}");
        assert!(error_lines(rl).is_empty());
    }

    #[test]
    fn hints_memory_tracking() {
        let e = CriuError::request_failed(
            Request::PreDump,
            Some(95),
            Some("Tracking memory is not available. Consider omitting --track-mem option.".into()),
            vec![],
        );
        let text = e.to_string();
        assert!(text.contains("memory tracking is unsupported"), "{text}");
        assert!(text.contains("PRE_DUMP"), "{text}");
    }

    #[test]
    fn exit_info_text() {
        assert_eq!(
            ExitInfo::Signaled(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(ExitInfo::from_wait_status(0), ExitInfo::Exited(0));
    }
}
