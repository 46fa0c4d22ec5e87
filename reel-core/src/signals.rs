//! SIGINT and SIGTERM: the one signal mechanism of reel.
//!
//! Signal handling is process-wide, so it belongs to the program, not to the library: a binary
//! calls [`install`] once at start (the `reel` binary does). Without it, SIGINT and SIGTERM
//! keep their default disposition and kill the process; a frozen cgroup is then thawed by its
//! [watchdog](crate::cgroups::Watchdog), and temp files are removed by the next run.
//!
//! Once installed, a signal is handled in normal context by a thread of its own (a self-pipe:
//! the handler itself only `write(2)`s the signal number), in this order:
//! 1. [`interrupted`] becomes true.
//! 2. The hooks registered with [`on_signal`] run. The freezer's hook thaws every cgroup
//!    reel holds frozen and ends the process ([`die_of`]): nothing reel does is worth keeping a
//!    workload frozen.
//! 3. If a [`Cancellable`] scope is open (an export or a checkpoint being written), the
//!    operation notices [`interrupted`] at its next step, undoes what it wrote and returns an
//!    error. Otherwise, or at the second signal, the process dies of the signal.

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The signals handled.
pub const SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

/// Write end of the self-pipe, for the handler (-1 until installed).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static CANCELLABLE: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// A hook run by the signal thread; it may end the process.
pub type Hook = fn(i32);
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

extern "C" fn handler(sig: libc::c_int) {
    // SAFETY: only async-signal-safe calls; errno is preserved for the interrupted code.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = WRITE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = sig as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// Installs the handlers of SIGINT and SIGTERM for the whole process (idempotent). A signal
/// that is ignored (`SIG_IGN`, as under `nohup`) stays ignored.
pub fn install() -> io::Result<()> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return Ok(());
    }
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // The handler must never block.
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    let reader = std::fs::File::from(r);
    std::thread::Builder::new()
        .name("reel-signals".into())
        .spawn(move || {
            use std::io::Read;
            let mut reader = reader;
            let mut byte = [0u8; 1];
            loop {
                match reader.read(&mut byte) {
                    Ok(1) => handle(i32::from(byte[0])),
                    Ok(_) => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::error!(error = %e, "signal pipe failed; SIGINT/SIGTERM now kill reel");
                        restore_defaults();
                        return;
                    }
                }
            }
        })?;
    // Lives as long as the process.
    WRITE_FD.store(w.into_raw_fd(), Ordering::Relaxed);
    let ours = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in SIGNALS {
        // SAFETY: the handler only does async-signal-safe work.
        let old = unsafe { sigaction(sig, &ours) }.map_err(io::Error::from)?;
        if old.handler() == SigHandler::SigIgn {
            // SAFETY: restoring what was there.
            unsafe { sigaction(sig, &old) }.map_err(io::Error::from)?;
        }
    }
    *installed = true;
    Ok(())
}

/// Whether [`install`] ran in this process.
pub fn installed() -> bool {
    *INSTALLED.lock().unwrap_or_else(|e| e.into_inner())
}

fn restore_defaults() {
    for sig in SIGNALS {
        // SAFETY: plain signal(2) to the default disposition.
        unsafe { libc::signal(sig as libc::c_int, libc::SIG_DFL) };
    }
}

/// Whether SIGINT or SIGTERM arrived (after [`install`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Registers a hook the signal thread runs on every signal, before deciding whether the
/// process dies (once per hook: registering the same function again does nothing).
pub fn on_signal(hook: Hook) {
    let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    if !hooks.iter().any(|h| *h as usize == hook as usize) {
        hooks.push(hook);
    }
}

/// While alive, SIGINT and SIGTERM do not kill the process: [`interrupted`] turns true and the
/// operation that opened the scope stops at its next step. A second signal kills anyway.
#[derive(Debug)]
#[must_use = "the scope ends when this is dropped"]
pub struct Cancellable(());

/// Opens a [`Cancellable`] scope.
pub fn cancellable() -> Cancellable {
    CANCELLABLE.fetch_add(1, Ordering::SeqCst);
    Cancellable(())
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        CANCELLABLE.fetch_sub(1, Ordering::SeqCst);
    }
}

fn handle(sig: i32) {
    let again = INTERRUPTED.swap(true, Ordering::SeqCst);
    let hooks: Vec<Hook> = HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for hook in hooks {
        hook(sig);
    }
    if again || CANCELLABLE.load(Ordering::SeqCst) == 0 {
        die_of(sig);
    }
    tracing::warn!(
        signal = sig,
        "interrupted: stopping at the next step (a second signal ends reel at once)"
    );
}

/// Dies of `sig`: default disposition, unblock, raise; `_exit(128 + sig)` if still alive.
pub fn die_of(sig: i32) -> ! {
    // SAFETY: plain libc calls, the process is ending.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
        libc::_exit(128 + sig)
    }
}
