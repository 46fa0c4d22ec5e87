//! SIGINT/SIGTERM while a cgroup is frozen: thaw, then die of the signal.
//!
//! A self-pipe: the handler (async-signal-safe: one `write(2)`) writes the signal number into a
//! pipe, and a thread (`reel-freeze-signals`) reads it and does the real work in normal
//! context (see `guard::on_signal`). The handlers are installed while at least one
//! [`FreezeGuard`](super::FreezeGuard) that asked for them is active, and the previous
//! dispositions are restored when the last one ends. A signal that was ignored (`SIG_IGN`)
//! when the first guard came stays ignored.

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The signals handled.
pub(crate) const SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

/// Write end of the self-pipe, for the handler (-1 until the thread runs).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

struct State {
    thread_started: bool,
    /// The dispositions replaced by ours, to restore.
    saved: Vec<(Signal, SigAction)>,
}

static STATE: Mutex<State> = Mutex::new(State {
    thread_started: false,
    saved: Vec::new(),
});

extern "C" fn on_signal(sig: libc::c_int) {
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

fn lock() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn start_thread(state: &mut State) -> io::Result<()> {
    if state.thread_started {
        return Ok(());
    }
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // The handler must never block.
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    let reader = std::fs::File::from(r);
    std::thread::Builder::new()
        .name("reel-freeze-signals".into())
        .spawn(move || {
            use std::io::Read;
            let mut reader = reader;
            let mut byte = [0u8; 1];
            loop {
                match reader.read(&mut byte) {
                    Ok(1) => super::guard::on_signal(i32::from(byte[0])),
                    Ok(_) => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::error!(error = %e, "signal pipe failed; SIGINT/SIGTERM will not thaw");
                        return;
                    }
                }
            }
        })?;
    // Lives as long as the process.
    WRITE_FD.store(w.into_raw_fd(), Ordering::Relaxed);
    state.thread_started = true;
    Ok(())
}

/// Install the handlers (called when the first guard that wants them starts).
pub(crate) fn install() -> io::Result<()> {
    let mut state = lock();
    start_thread(&mut state)?;
    let ours = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in SIGNALS {
        if state.saved.iter().any(|(s, _)| *s == sig) {
            continue;
        }
        // SAFETY: the handler only does async-signal-safe work.
        let old = unsafe { sigaction(sig, &ours) }.map_err(io::Error::from)?;
        if old.handler() == SigHandler::SigIgn {
            // SAFETY: restoring what was there.
            unsafe { sigaction(sig, &old) }.map_err(io::Error::from)?;
            continue;
        }
        state.saved.push((sig, old));
    }
    tracing::debug!("SIGINT/SIGTERM handlers installed for frozen cgroups");
    Ok(())
}

/// Restore the previous dispositions (called when the last such guard ends).
pub(crate) fn uninstall() {
    let mut state = lock();
    for (sig, old) in state.saved.drain(..) {
        // SAFETY: restoring what was there.
        if let Err(e) = unsafe { sigaction(sig, &old) } {
            tracing::warn!(signal = %sig, error = %e, "cannot restore the signal disposition");
        }
    }
}

/// Die of `sig`: default disposition, unblock, raise; `_exit(128 + sig)` if still alive.
pub(crate) fn die_of(sig: i32) -> ! {
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
