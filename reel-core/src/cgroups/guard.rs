//! [`FreezeGuard`]: a frozen cgroup that is thawed again, whatever happens.
//!
//! Thawing is guaranteed at four levels:
//! 1. [`FreezeGuard::thaw`], explicit, with a `Result`;
//! 2. `Drop` (early return, `?`, panic unwinding), which logs failures;
//! 3. SIGINT/SIGTERM, when the program installed reel's handlers ([`crate::signals::install`]):
//!    the signal thread thaws every active guard, then the process dies of the signal;
//! 4. SIGKILL, `panic = "abort"`, OOM kill: the [`Watchdog`] process.
//!
//! All active guards are kept in a process-wide registry so that the signal thread can find
//! them. Locking order: the signal thread takes the registry, then each entry; every other
//! path takes at most one of the two at a time.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::error::{FreezerError, Result};
use super::watchdog::Watchdog;
use super::{Freezer, FreezerState};
use crate::{host, signals};

/// How [`Freezer::freeze_with`] freezes.
#[derive(Debug, Clone)]
pub struct FreezeOptions {
    timeout: Duration,
    thaw_timeout: Duration,
    watchdog: bool,
    resume_command: Vec<std::ffi::OsString>,
}

impl Default for FreezeOptions {
    fn default() -> Self {
        FreezeOptions {
            timeout: Duration::from_secs(10),
            thaw_timeout: Duration::from_secs(10),
            watchdog: true,
            resume_command: Vec::new(),
        }
    }
}

impl FreezeOptions {
    /// How long to wait for FROZEN (default 10 s). On timeout the cgroup is thawed again.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long to wait for THAWED when thawing (default 10 s).
    pub fn thaw_timeout(mut self, timeout: Duration) -> Self {
        self.thaw_timeout = timeout;
        self
    }

    /// Start a [`Watchdog`] process (default true). Without it a SIGKILLed reel leaves the
    /// cgroup frozen.
    pub fn watchdog(mut self, on: bool) -> Self {
        self.watchdog = on;
        self
    }

    /// A command the watchdog runs first when it fires, before it thaws the cgroup itself:
    /// for a cgroup a runtime froze on reel's request (containerd's `Pause`), the runtime's
    /// own resume (e.g. `ctr --address SOCK -n NS tasks resume ID`), so that the runtime
    /// hears of it.
    pub fn resume_command(mut self, argv: Vec<std::ffi::OsString>) -> Self {
        self.resume_command = argv;
        self
    }
}

/// A guard's entry in the registry.
#[derive(Debug)]
struct Entry {
    freezer: Freezer,
    state: Mutex<EntryState>,
}

#[derive(Debug)]
struct EntryState {
    /// reel froze (or is freezing) the cgroup and has not thawed it yet.
    active: bool,
    watchdog: Option<Watchdog>,
    thaw_timeout: Duration,
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EntryState {
    /// Thaw if still active, then disarm the watchdog (or fire it if our thaw failed, so it
    /// tries once more).
    fn thaw(&mut self, freezer: &Freezer) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let result = freezer.cgroup().thaw(self.thaw_timeout);
        if let Some(watchdog) = self.watchdog.take() {
            let pid = watchdog.pid();
            let done = if result.is_ok() {
                watchdog.disarm()
            } else {
                watchdog.fire()
            };
            if let Err(e) = done {
                tracing::warn!(pid, error = %e, "freeze watchdog did not end cleanly");
            }
        }
        result
    }

    /// Thaw if still active, for a process about to die: the watchdog is not told `done` but
    /// leaked, so it fires (and re-thaws after CRIU) when the process is gone.
    fn thaw_leaving_watchdog_armed(&mut self, freezer: &Freezer) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let result = freezer.cgroup().thaw(self.thaw_timeout);
        if let Some(watchdog) = self.watchdog.take() {
            std::mem::forget(watchdog);
        }
        result
    }
}

/// Freezes by `action` (a runtime's pause) and waits for FROZEN; on failure thaws again
/// (best effort), like [`CgroupFreezer::freeze`](super::CgroupFreezer::freeze).
fn freeze_by(
    cgroup: &dyn super::CgroupFreezer,
    action: &mut dyn FnMut() -> std::result::Result<(), String>,
    timeout: Duration,
) -> Result<()> {
    let started = std::time::Instant::now();
    let result = match action() {
        Err(reason) => Err(FreezerError::FreezeAction {
            path: cgroup.path().to_path_buf(),
            reason,
        }),
        Ok(()) => loop {
            match cgroup.state()? {
                FreezerState::Frozen => break Ok(()),
                state if started.elapsed() >= timeout => {
                    break Err(FreezerError::FreezeTimeout {
                        path: cgroup.path().to_path_buf(),
                        state,
                        attempts: 1,
                        elapsed: started.elapsed(),
                    })
                }
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        },
    };
    if result.is_err() {
        if let Err(e) = cgroup.thaw(timeout) {
            tracing::error!(cgroup = %cgroup.path().display(), error = %e, "cannot thaw after a failed pause");
        }
    }
    result
}

/// Whether this process has a child that is not one of `watchdogs` (that is, a CRIU).
fn child_other_than(watchdogs: &[i32]) -> bool {
    let me = std::process::id() as i32;
    host::children(Path::new(host::PROC), me)
        .iter()
        .any(|pid| !watchdogs.contains(pid))
}

/// Whether a task of the freezer's cgroup is traced (CRIU seizes the tasks it dumps).
fn any_task_traced(freezer: &Freezer) -> bool {
    let list = match freezer.kind() {
        super::CgroupKind::V1 => "tasks",
        super::CgroupKind::V2 => "cgroup.threads",
    };
    let tasks = std::fs::read_to_string(freezer.path().join(list)).unwrap_or_default();
    tasks.split_whitespace().any(|tid| {
        tid.parse()
            .ok()
            .and_then(|tid| host::status(Path::new(host::PROC), tid))
            .is_some_and(|s| s.tracer_pid != 0)
    })
}

struct Registry {
    entries: Vec<Arc<Entry>>,
    /// A signal is being handled: the process is about to die.
    shutting_down: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    entries: Vec::new(),
    shutting_down: false,
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn register(entry: &Arc<Entry>) -> Result<()> {
    signals::on_signal(on_signal);
    let mut reg = registry();
    if reg.shutting_down {
        return Err(FreezerError::Interrupted {
            path: entry.freezer.path().to_path_buf(),
        });
    }
    reg.entries.push(Arc::clone(entry));
    Ok(())
}

fn unregister(entry: &Arc<Entry>) {
    registry().entries.retain(|e| !Arc::ptr_eq(e, entry));
}

/// The signal thread's hook ([`crate::signals`]): with cgroups frozen, thaw them all and end
/// the process; otherwise nothing.
fn on_signal(sig: i32) {
    let mut reg = registry();
    if reg.entries.is_empty() {
        return;
    }
    reg.shutting_down = true;
    tracing::warn!(
        signal = sig,
        guards = reg.entries.len(),
        "signal received while cgroups are frozen: thawing them, then exiting"
    );
    let watchdogs: Vec<i32> = reg
        .entries
        .iter()
        .filter_map(|e| e.lock().watchdog.as_ref().map(Watchdog::pid))
        .collect();
    for entry in &reg.entries {
        let mut state = entry.lock();
        // A CRIU still working on the cgroup would freeze it again when it lets the tasks go
        // (it restores the state it found, FROZEN): then leave the watchdog armed, so that it
        // fires when this process is gone and thaws again after CRIU (see `watchdog`).
        let criu_busy = child_other_than(&watchdogs) || any_task_traced(&entry.freezer);
        let result = if criu_busy {
            state.thaw_leaving_watchdog_armed(&entry.freezer)
        } else {
            state.thaw(&entry.freezer)
        };
        if let Err(e) = result {
            tracing::error!(cgroup = %entry.freezer.path().display(), error = %e, "cannot thaw on signal");
            eprintln!("reel: cannot thaw {}: {e}", entry.freezer.path().display());
        }
    }
    // Keep the registry locked: nothing may freeze any more.
    signals::die_of(sig)
}

/// A cgroup frozen by [`Freezer::freeze`]. Thaws it on [`thaw`](Self::thaw), on drop, on
/// SIGINT/SIGTERM, and (through its [`Watchdog`]) if the process is killed; unless the cgroup
/// was already frozen (or freezing) before: then it is left frozen and
/// [`was_frozen`](Self::was_frozen) is true.
#[derive(Debug)]
#[must_use = "dropping the guard thaws the cgroup"]
pub struct FreezeGuard {
    freezer: Freezer,
    was_frozen: bool,
    watchdog_pid: Option<i32>,
    entry: Option<Arc<Entry>>,
}

impl FreezeGuard {
    pub(crate) fn freeze(
        freezer: &Freezer,
        opts: &FreezeOptions,
        action: Option<&mut dyn FnMut() -> std::result::Result<(), String>>,
    ) -> Result<FreezeGuard> {
        let cgroup = freezer.cgroup();
        let before = cgroup.state()?;
        if before != FreezerState::Thawed {
            tracing::info!(cgroup = %freezer.path().display(), state = %before,
                "cgroup already frozen by someone else: leaving it frozen afterwards");
            if before == FreezerState::Freezing {
                // Someone else's freeze: help it finish, but do not undo it on failure.
                cgroup.freeze_no_rollback(opts.timeout)?;
            }
            return Ok(FreezeGuard {
                freezer: freezer.clone(),
                was_frozen: true,
                watchdog_pid: None,
                entry: None,
            });
        }

        let watchdog = if opts.watchdog {
            let (file, value) = cgroup.thaw_instruction();
            let w = Watchdog::spawn_with(&file, value, &opts.resume_command).map_err(|source| {
                tracing::error!(cgroup = %freezer.path().display(), error = %source, "cannot start the freeze watchdog");
                FreezerError::Watchdog {
                    path: freezer.path().to_path_buf(),
                    source,
                }
            })?;
            Some(w)
        } else {
            None
        };
        let watchdog_pid = watchdog.as_ref().map(Watchdog::pid);
        let entry = Arc::new(Entry {
            freezer: freezer.clone(),
            state: Mutex::new(EntryState {
                active: true,
                watchdog,
                thaw_timeout: opts.thaw_timeout,
            }),
        });
        if let Err(e) = register(&entry) {
            if let Some(w) = entry.lock().watchdog.take() {
                let _ = w.disarm();
            }
            return Err(e);
        }
        // From here on, dropping `guard` thaws and unregisters.
        let guard = FreezeGuard {
            freezer: freezer.clone(),
            was_frozen: false,
            watchdog_pid,
            entry: Some(Arc::clone(&entry)),
        };
        let mut state = entry.lock();
        if !state.active {
            // The signal thread got here first.
            drop(state);
            return Err(FreezerError::Interrupted {
                path: freezer.path().to_path_buf(),
            });
        }
        let frozen = match action {
            None => cgroup.freeze(opts.timeout),
            Some(act) => freeze_by(cgroup, act, opts.timeout),
        };
        if let Err(e) = frozen {
            // freeze() already thawed; finish the watchdog according to the outcome.
            let thawed = matches!(cgroup.state(), Ok(FreezerState::Thawed));
            state.active = false;
            if let Some(w) = state.watchdog.take() {
                let _ = if thawed { w.disarm() } else { w.fire() };
            }
            drop(state);
            drop(guard);
            return Err(e);
        }
        drop(state);
        Ok(guard)
    }

    /// The cgroup was frozen (or freezing) before: this guard will not thaw it.
    pub fn was_frozen(&self) -> bool {
        self.was_frozen
    }

    /// The freezer of the frozen cgroup.
    pub fn freezer(&self) -> &Freezer {
        &self.freezer
    }

    /// The cgroup directory (for CRIU's `freeze_cgroup`).
    pub fn path(&self) -> &Path {
        self.freezer.path()
    }

    /// The pid of the watchdog process, while there is one.
    pub fn watchdog_pid(&self) -> Option<i32> {
        self.entry.as_ref()?;
        self.watchdog_pid
    }

    /// Thaw now (unless [`was_frozen`](Self::was_frozen)), stop the watchdog, and report.
    pub fn thaw(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        let Some(entry) = self.entry.take() else {
            return Ok(());
        };
        let result = entry.lock().thaw(&entry.freezer);
        unregister(&entry);
        result
    }
}

impl Drop for FreezeGuard {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::error!(cgroup = %self.freezer.path().display(), error = %e, "cannot thaw the cgroup");
        }
    }
}
