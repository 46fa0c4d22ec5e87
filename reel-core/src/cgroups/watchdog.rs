//! The thaw watchdog: a tiny separate process that thaws a cgroup if reel dies while the
//! cgroup is frozen, even by SIGKILL, when no code of reel's can run any more.
//!
//! # Design
//!
//! Before reel freezes a cgroup it makes a pipe (both ends close-on-exec) and starts
//! `/bin/sh -c SCRIPT reel-freeze-watchdog <file> <value> [resume command...]` with the pipe's read end as its
//! stdin. Only reel holds the write end: close-on-exec keeps it out of CRIU and every other
//! program reel runs. The script ([`SCRIPT`]) is, in short:
//!
//! ```sh
//! trap '' HUP INT QUIT TERM PIPE
//! line=; IFS= read -r line
//! [ "$line" = done ] && exit 0
//! echo "$2" > "$1"
//! # then linger while CRIU still traces the cgroup's tasks, see below
//! ```
//!
//! * `read` returns when reel writes a line, or at end of file when the last copy of the
//!   write end is closed, which the kernel does when reel exits, however it exits.
//! * If the line is `done` the watchdog exits without touching anything. reel sends `done`
//!   after it thawed the cgroup itself (see [`Watchdog::disarm`]), and reaps the process, so no
//!   watchdog outlives a normal run.
//! * Otherwise (end of file: reel died; or [`Watchdog::fire`]) it first runs the resume
//!   command, when it was given one (the `containerd` method: containerd paused the task for
//!   reel, so `ctr tasks resume` tells containerd too), then writes the thaw value itself:
//!   `THAWED` into `freezer.state` (v1) or `0` into `cgroup.freeze` (v2).
//! * After thawing it stays (at most [`LINGER_LIMIT`]) while any task of the cgroup is traced,
//!   thawing again every 100 ms, and ends once none has been for half a second. The tracer is
//!   CRIU, still dumping when reel died: CRIU restores the freezer state it found when it lets
//!   the tasks go, and it found the cgroup FROZEN (reel froze it), so without this the
//!   container would be frozen again for good a moment after the watchdog thawed it. (Found by
//!   `tests/checkpoint_robust.rs`: SIGKILL of reel during a dump.)
//! * It runs in its own session (`setsid`), so Ctrl-C on reel's terminal (SIGINT to reel's
//!   process group) and the terminal's hangup do not reach it, and it ignores
//!   HUP/INT/QUIT/TERM so a `kill` aimed at reel's whole cgroup (systemd stop) does not
//!   defeat it; it still ends on its own as soon as reel is gone.
//! * A watchdog whose parent died is re-parented and reaped by init (or the nearest
//!   subreaper).

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

/// The shell used to run the watchdog script.
pub const SHELL: &str = "/bin/sh";

/// `argv[0]` of the watchdog: `ps` shows `reel-freeze-watchdog <file> <value>`.
pub const ARGV0: &str = "reel-freeze-watchdog";

/// The script; `$1` is the file to write, `$2` the value. After the thaw it lingers while a
/// task of the cgroup (`tasks` on v1, `cgroup.threads` on v2, beside `$1`) is traced, as
/// described in the module documentation; 36000 rounds of 100 ms is [`LINGER_LIMIT`].
pub const SCRIPT: &str = "trap '' HUP INT QUIT TERM PIPE
f=$1
v=$2
shift 2
line=
IFS= read -r line
[ \"$line\" = done ] && exit 0
if [ $# -gt 0 ] && ! \"$@\" >/dev/null 2>&1; then
  echo \"reel-freeze-watchdog: $1 could not resume; thawing $f itself\" >&2
fi
if ! echo \"$v\" > \"$f\"; then
  echo \"reel-freeze-watchdog: could not thaw $f\" >&2
  exit 1
fi
tasks=${f%/*}/tasks
[ -f \"$tasks\" ] || tasks=${f%/*}/cgroup.threads
traced() {
  while read -r t; do
    while read -r k w; do
      [ \"$k\" = TracerPid: ] || continue
      [ \"$w\" = 0 ] || return 0
      break
    done < \"/proc/$t/status\"
  done < \"$tasks\"
  return 1
} 2>/dev/null
quiet=0
n=0
while [ $quiet -lt 5 ] && [ $n -lt 36000 ]; do
  sleep 0.1
  n=$((n + 1))
  if traced; then quiet=0; else quiet=$((quiet + 1)); fi
  echo \"$v\" 2>/dev/null > \"$f\" || exit 0
done
exit 0
";

/// The longest a fired watchdog stays to re-thaw after CRIU (see the module documentation).
pub const LINGER_LIMIT: Duration = Duration::from_secs(3600);

/// How long to wait for the watchdog to exit after `done` (or after [`Watchdog::fire`]).
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running watchdog. Dropping it without [`disarm`](Self::disarm) fires it (the file is
/// written) and reaps it.
#[derive(Debug)]
pub struct Watchdog {
    child: Option<Child>,
    pipe: Option<std::fs::File>,
    file: PathBuf,
}

impl Watchdog {
    /// Start a watchdog that writes `value` to `file` unless told `done`.
    pub fn spawn(file: &Path, value: &str) -> io::Result<Self> {
        Self::spawn_with(file, value, &[])
    }

    /// [`spawn`](Self::spawn), and when it fires, run `resume` first (a runtime's own resume
    /// command, e.g. `ctr ... tasks resume ID`); the cgroup is thawed directly after it
    /// whether it worked or not.
    pub fn spawn_with(file: &Path, value: &str, resume: &[std::ffi::OsString]) -> io::Result<Self> {
        let (read_end, write_end): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let mut cmd = Command::new(SHELL);
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg(ARGV0)
            .arg(file)
            .arg(value)
            .args(resume)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            // dup2 onto fd 0 clears close-on-exec for the watchdog's copy only.
            .stdin(Stdio::from(read_end))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: setsid() is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        tracing::debug!(pid = child.id(), file = %file.display(), "freeze watchdog started");
        Ok(Watchdog {
            child: Some(child),
            pipe: Some(std::fs::File::from(write_end)),
            file: file.to_path_buf(),
        })
    }

    /// The watchdog's pid (0 once reaped).
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .unwrap_or_default()
    }

    /// Tell the watchdog `done` (it exits without writing anything) and reap it.
    pub fn disarm(mut self) -> io::Result<()> {
        let sent = match self.pipe.take() {
            Some(mut pipe) => pipe.write_all(b"done\n"),
            None => Ok(()),
        };
        if let Err(e) = &sent {
            tracing::warn!(pid = self.pid(), error = %e, "cannot tell the freeze watchdog `done`; it may thaw the cgroup");
        }
        let reaped = self.reap();
        sent.and(reaped)
    }

    /// Close the pipe without `done`: the watchdog writes the thaw value now. Waits for it.
    pub fn fire(mut self) -> io::Result<()> {
        self.pipe = None;
        self.reap()
    }

    fn reap(&mut self) -> io::Result<()> {
        self.pipe = None;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + REAP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        tracing::warn!(file = %self.file.display(), %status, "freeze watchdog failed");
                    }
                    return Ok(());
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => {
                    tracing::warn!(pid = child.id(), "freeze watchdog did not exit; killing it");
                    let _ = child.kill();
                    return child.wait().map(|_| ());
                }
                Err(e) => {
                    tracing::warn!(pid = child.id(), error = %e, "cannot wait for the freeze watchdog");
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Not disarmed: let it thaw (the safe default), and do not leave it running.
            let _ = self.reap();
        }
    }
}
