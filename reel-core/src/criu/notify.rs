//! CRIU's notifications ("action scripts" sent over RPC) and the caller's callback.
//!
//! With `notify_scripts`, CRIU stops at each step of a dump or restore, sends
//! `criu_resp{type=NOTIFY, notify{script, pid}}` (with a descriptor for `orphan-pts-master`)
//! and waits for `criu_req{type=NOTIFY, notify_success}`. The driver hands each one to a
//! closure; an `Err` (or a panic, which is caught) answers `notify_success=false`, which fails
//! the step and the request.

use std::any::Any;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Which step CRIU is at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotifyKind {
    /// Before the tree is frozen and seized.
    PreDump,
    /// After the dump, before the tree is resumed or killed. Failing here keeps the tree
    /// running and fails the dump.
    PostDump,
    /// Before the restore starts.
    PreRestore,
    /// After the tree is restored, before it resumes (carries the root pid).
    PostRestore,
    /// The tree's network is to be locked (only when its netns is not CRIU's).
    NetworkLock,
    /// The tree's network is to be unlocked.
    NetworkUnlock,
    /// The restored tree's namespaces exist (carries the root pid).
    SetupNamespaces,
    /// After the namespaces are set up.
    PostSetupNamespaces,
    /// Before the restored tree resumes.
    PreResume,
    /// After the restored tree resumed.
    PostResume,
    /// The master side of an orphan pty (the descriptor comes with the notification).
    OrphanPtsMaster,
    /// CRIU is ready (a page server or lazy pages).
    StatusReady,
    /// CRIU asks for external files to add ([`Notification::add_external`]).
    QueryExtFiles,
    /// Before image streaming.
    PreStream,
    /// A notification this driver does not know.
    Other(String),
}

impl NotifyKind {
    /// The kind for a script name sent by CRIU.
    pub fn from_script(script: &str) -> NotifyKind {
        match script {
            "pre-dump" => NotifyKind::PreDump,
            "post-dump" => NotifyKind::PostDump,
            "pre-restore" => NotifyKind::PreRestore,
            "post-restore" => NotifyKind::PostRestore,
            "network-lock" => NotifyKind::NetworkLock,
            "network-unlock" => NotifyKind::NetworkUnlock,
            "setup-namespaces" => NotifyKind::SetupNamespaces,
            "post-setup-namespaces" => NotifyKind::PostSetupNamespaces,
            "pre-resume" => NotifyKind::PreResume,
            "post-resume" => NotifyKind::PostResume,
            "orphan-pts-master" => NotifyKind::OrphanPtsMaster,
            "status-ready" => NotifyKind::StatusReady,
            "query-ext-files" => NotifyKind::QueryExtFiles,
            "pre-stream" => NotifyKind::PreStream,
            other => NotifyKind::Other(other.to_string()),
        }
    }
}

/// One notification from CRIU.
pub struct Notification {
    kind: NotifyKind,
    script: String,
    pid: Option<i32>,
    fd: Option<OwnedFd>,
    externals: Vec<String>,
}

impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("script", &self.script)
            .field("pid", &self.pid)
            .field("fd", &self.fd.is_some())
            .field("externals", &self.externals)
            .finish()
    }
}

impl Notification {
    pub(crate) fn new(script: String, pid: Option<i32>, fd: Option<OwnedFd>) -> Notification {
        Notification {
            kind: NotifyKind::from_script(&script),
            script,
            pid,
            fd,
            externals: Vec::new(),
        }
    }

    /// The step.
    pub fn kind(&self) -> &NotifyKind {
        &self.kind
    }

    /// The script name CRIU sent (`post-dump`, ...).
    pub fn script(&self) -> &str {
        &self.script
    }

    /// The root pid of the restored tree (`setup-namespaces`, `post-restore`).
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// The descriptor sent with the notification (`orphan-pts-master`).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Takes the descriptor sent with the notification; otherwise it is closed after the
    /// callback returns.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// For `query-ext-files`: declares an external resource (same syntax as
    /// [`super::Options::external`]). Ignored for other notifications.
    pub fn add_external(&mut self, spec: impl Into<String>) {
        self.externals.push(spec.into());
    }

    pub(crate) fn externals(&self) -> &[String] {
        &self.externals
    }
}

/// The callback type the driver calls for each notification.
pub type NotifyFn<'a> = dyn FnMut(&mut Notification) -> Result<(), String> + 'a;

/// Calls the callback; a panic becomes an error (it never unwinds into the protocol loop).
pub(crate) fn run(handler: &mut NotifyFn<'_>, n: &mut Notification) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| handler(n))) {
        Ok(r) => r,
        Err(payload) => Err(format!("the callback panicked: {}", panic_text(&*payload))),
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(NotifyKind::from_script("post-dump"), NotifyKind::PostDump);
        assert_eq!(NotifyKind::from_script("x"), NotifyKind::Other("x".into()));
    }

    #[test]
    fn panics_become_errors() {
        let mut n = Notification::new("pre-dump".into(), None, None);
        let mut h = |_: &mut Notification| -> Result<(), String> { panic!("boom") };
        let e = run(&mut h, &mut n).unwrap_err();
        assert!(e.contains("boom"), "{e}");
    }
}
