//! A container's cgroups and freezers seen from outside reel: which freezer holds it, freezing
//! and thawing by hand, a guard that always thaws, and a watch that sees every freeze.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{proc, wait_until};

/// A container's cgroup directories: its v1 freezer cgroup (when it has one that is not the
/// root) and its cgroup2 directory.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub v1: Option<PathBuf>,
    pub v2: PathBuf,
}

/// Mount points of the v1 freezer hierarchy and of cgroup2, from /proc/self/mountinfo.
fn cgroup_mounts() -> (Option<PathBuf>, PathBuf) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (mut v1, mut v2) = (None, None);
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mountpoint = left.split_whitespace().nth(4).unwrap_or_default();
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or_default();
        let superopts = r.nth(1).unwrap_or_default();
        if fstype == "cgroup" && superopts.split(',').any(|o| o == "freezer") {
            v1.get_or_insert_with(|| PathBuf::from(mountpoint));
        } else if fstype == "cgroup2" {
            v2.get_or_insert_with(|| PathBuf::from(mountpoint));
        }
    }
    (v1, v2.expect("cgroup2 is mounted"))
}

impl Cgroups {
    /// The cgroups of process `pid`, from /proc/<pid>/cgroup.
    pub fn of(pid: i32) -> Cgroups {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
        let (v1_mount, v2_mount) = cgroup_mounts();
        let mut v1 = None;
        let mut v2 = None;
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let rel = path.trim_start_matches('/');
            if ctrl.split(',').any(|c| c == "freezer") && path != "/" {
                v1 = v1_mount.as_ref().map(|m| m.join(rel));
            } else if ctrl.is_empty() && line.starts_with("0::") {
                v2 = Some(v2_mount.join(rel));
            }
        }
        Cgroups {
            v1,
            v2: v2.unwrap_or_else(|| panic!("process {pid} has no cgroup2 line: {text}")),
        }
    }

    /// The v1 freezer cgroup (panics when there is none).
    #[track_caller]
    pub fn v1(&self) -> &Path {
        self.v1
            .as_deref()
            .expect("the container has a v1 freezer cgroup")
    }

    /// `freezer.state` of the v1 cgroup (`THAWED`, `FREEZING`, `FROZEN`), if it has one.
    pub fn v1_state(&self) -> Option<String> {
        let dir = self.v1.as_ref()?;
        fs::read_to_string(dir.join("freezer.state"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// `frozen` of `cgroup.events` (true when frozen, itself or through an ancestor).
    pub fn v2_frozen(&self) -> bool {
        fs::read_to_string(self.v2.join("cgroup.events"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.trim() == "frozen 1")
    }

    /// `cgroup.freeze` asks for a freeze.
    pub fn v2_freeze_requested(&self) -> bool {
        fs::read_to_string(self.v2.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    }

    /// Frozen or freezing by either freezer.
    pub fn any_frozen(&self) -> bool {
        self.v1_state().is_some_and(|s| s != "THAWED")
            || self.v2_frozen()
            || self.v2_freeze_requested()
    }

    /// Freeze with the v1 freezer and wait for FROZEN.
    pub fn freeze_v1(&self) {
        let dir = self.v1();
        fs::write(dir.join("freezer.state"), "FROZEN").unwrap();
        wait_until(Duration::from_secs(10), "v1 FROZEN", || {
            self.v1_state().as_deref() == Some("FROZEN")
        });
    }

    /// Freeze with cgroup2 and wait for `frozen 1`.
    pub fn freeze_v2(&self) {
        fs::write(self.v2.join("cgroup.freeze"), "1").unwrap();
        wait_until(Duration::from_secs(10), "cgroup2 frozen", || {
            self.v2_frozen()
        });
    }

    /// Thaw both freezers (best effort) and wait until neither is frozen.
    pub fn thaw_all(&self) {
        if let Some(dir) = &self.v1 {
            let _ = fs::write(dir.join("freezer.state"), "THAWED");
        }
        let _ = fs::write(self.v2.join("cgroup.freeze"), "0");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.any_frozen() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A waiter for changes of this cgroup's `cgroup.events` (see [`EventsWaiter`]).
    pub fn events_waiter(&self) -> EventsWaiter {
        use std::io::Read;
        let path = self.v2.join("cgroup.events");
        let mut file =
            fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // Reading once arms the notification.
        file.read_to_string(&mut String::new()).unwrap();
        EventsWaiter { file }
    }

    /// The task ids in the cgroup (v2 `cgroup.threads`).
    pub fn tasks(&self) -> Vec<i32> {
        fs::read_to_string(self.v2.join("cgroup.threads"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect()
    }

    /// A task of the cgroup is traced (CRIU seizes what it dumps).
    pub fn any_traced(&self) -> bool {
        self.tasks().iter().any(|t| proc::tracer_of(*t).is_some())
    }
}

/// Thaws a container's cgroups (both freezers) when dropped: whatever a test does or however it
/// fails, it never leaves a container frozen. Declare it after the container, so that it is
/// dropped (thaws) before the container is deleted.
#[derive(Debug)]
pub struct ThawOnDrop(pub Cgroups);

impl Drop for ThawOnDrop {
    fn drop(&mut self) {
        if self.0.any_frozen() {
            eprintln!("thawing {} on the way out", self.0.v2.display());
        }
        self.0.thaw_all();
    }
}

/// Wakes when cgroup2's `cgroup.events` of a cgroup changes: kernfs notifies every change of
/// `populated` and `frozen` to poll(2), so even a freeze shorter than any sampling period is
/// seen, and the waiting process is woken at once (where a busy loop that used up its time slice
/// on a loaded machine may not run during a short freeze at all).
#[derive(Debug)]
pub struct EventsWaiter {
    file: fs::File,
}

impl EventsWaiter {
    /// Waits up to `timeout` for a change; true when one came (the notification is armed again).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        use std::io::{Read, Seek};
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            self.file.as_fd(),
            nix::poll::PollFlags::POLLPRI,
        )];
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let changed = nix::poll::poll(&mut fds, ms).is_ok_and(|n| n > 0);
        if changed {
            // Reading the file again arms the next notification.
            let mut buf = String::new();
            self.file.rewind().unwrap();
            self.file.read_to_string(&mut buf).unwrap();
        }
        changed
    }
}

/// Samples a container's freezer states in a thread until stopped, with cgroup2's
/// `cgroup.events` watched by poll(2) (kernfs notifies every change of `frozen`, so even a
/// freeze shorter than the sampling period is seen).
pub struct FreezeWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<FreezeSeen>>,
}

/// What a [`FreezeWatch`] saw.
#[derive(Debug, Default, Clone)]
pub struct FreezeSeen {
    /// Samples taken.
    pub samples: u64,
    /// Samples in which either freezer was frozen or freezing.
    pub frozen_samples: u64,
    /// Samples in which the v1 freezer was frozen or freezing.
    pub v1_frozen_samples: u64,
    /// Change notifications of `cgroup.events`.
    pub events_changes: u64,
}

impl FreezeWatch {
    pub fn start(cg: &Cgroups) -> FreezeWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let cg = cg.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = FreezeSeen::default();
            let mut events = cg.events_waiter();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                seen.samples += 1;
                if cg.any_frozen() {
                    seen.frozen_samples += 1;
                }
                if cg.v1_state().is_some_and(|s| s != "THAWED") {
                    seen.v1_frozen_samples += 1;
                }
                if events.wait(Duration::from_millis(1)) {
                    seen.events_changes += 1;
                }
            }
            seen
        });
        FreezeWatch {
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> FreezeSeen {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("freeze watch thread")
    }
}

impl Drop for FreezeWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The cgroups of process `pid` and a guard that thaws them when dropped. Declare the pair after
/// the container, so that it thaws before the container is deleted:
/// `let (cg, _thaw) = thaw_guard(c.pid());`.
pub fn thaw_guard(pid: i32) -> (Cgroups, ThawOnDrop) {
    let cg = Cgroups::of(pid);
    (cg.clone(), ThawOnDrop(cg))
}
