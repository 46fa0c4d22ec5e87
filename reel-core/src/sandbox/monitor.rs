//! The sandbox monitor: a small reel process (the `reel` binary run again with a hidden
//! subcommand, see [`MONITOR_ARG`]) that owns a sandbox from its first resource to its end.
//!
//! reel starts it in a session of its own (`setsid`), so neither Ctrl-C nor the terminal's
//! hangup reach it, with two pipes: one it reports on, one whose end of file tells it that
//! the reel that asked is gone. It makes itself a child subreaper and then builds the sandbox,
//! recording every resource in `state.json` as soon as it exists: the private copy of the
//! checkpoint, the cgroup, the network namespace, its own mount namespace with the overlay
//! rootfs and the stand-ins of the mounts. It is CRIU's client, with `rst_sibling`, so the
//! restored init becomes its child. If anything fails, or the reel that asked goes away before
//! the restore is complete, it removes everything it made and says why.
//!
//! Once the sandbox runs it reports, and from then on survives reel: it records the init's
//! exit status, keeps the other ends of the unix sockets it handed out (logging what the
//! restored processes send there), and on SIGTERM (`reel stop sandbox`) kills the sandbox's
//! cgroup, records the exit and ends. Its mount namespace, and so the overlay, go with it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::state::{
    read_json, write_json, ExitRecord, Phase, Record, Request, RestoredProcess, REQUEST_FILE,
    STATE_FILE,
};
use super::{cgroup, network, plan, rootfs, teardown, SandboxError};
use crate::archive::{self, ExtractLimits};
use crate::criu::{CgroupMode, Criu, CriuError, NotifyKind, Options};
use crate::host;

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// Whether an archive member is a memory pages image (copied alongside the sandbox's setup).
fn is_pages(name: &str) -> bool {
    name.strip_prefix(archive::CHECKPOINT_DIR)
        .is_some_and(|n| n.starts_with("pages-"))
}

/// The hidden subcommand that runs the monitor: `reel __sandbox-monitor <state dir> <report
/// fd> <owner fd>`. The binary calls [`monitor_main`] with the arguments after it.
pub const MONITOR_ARG: &str = "__sandbox-monitor";

/// What the monitor tells the reel that asked, as one JSON line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// The sandbox runs.
    Ok(Box<Record>),
    /// It could not be made; everything was removed.
    Error(ErrorReport),
}

/// A failure, carried across the process boundary.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorReport {
    /// `refused`, `invalid`, `criu` or `other`.
    pub kind: String,
    pub checkpoint: Option<String>,
    pub message: String,
    /// CRIU's own error lines.
    pub log: Vec<String>,
}

impl ErrorReport {
    fn of(e: &SandboxError, checkpoint: Option<String>) -> ErrorReport {
        let (kind, message, log) = match e {
            SandboxError::Refused { reason, .. } => ("refused", reason.clone(), Vec::new()),
            SandboxError::Invalid(m) => ("invalid", m.clone(), Vec::new()),
            SandboxError::Criu(c) => {
                let text = c.to_string();
                let first = text.lines().next().unwrap_or_default().to_string();
                ("criu", first, c.log().to_vec())
            }
            other => ("other", other.to_string(), Vec::new()),
        };
        ErrorReport {
            kind: kind.into(),
            checkpoint,
            message,
            log,
        }
    }

    /// Back into a [`SandboxError`].
    pub fn into_error(self) -> SandboxError {
        let checkpoint = self.checkpoint.unwrap_or_else(|| "the checkpoint".into());
        match self.kind.as_str() {
            "refused" => SandboxError::Refused {
                checkpoint,
                reason: self.message,
            },
            "invalid" => SandboxError::Invalid(self.message),
            "criu" => SandboxError::RestoreFailed {
                checkpoint,
                message: self.message,
                log: self.log,
                hint: None,
            },
            _ => SandboxError::step("building the sandbox", self.message),
        }
    }
}

/// Runs the monitor with its arguments (the state dir, the report fd, the owner fd); returns
/// the process's exit code.
pub fn monitor_main(args: &[OsString]) -> i32 {
    let parse = |i: usize| -> Option<RawFd> { args.get(i)?.to_str()?.parse().ok() };
    let (Some(dir), Some(report_fd), Some(owner_fd)) = (args.first(), parse(1), parse(2)) else {
        eprintln!("usage: reel {MONITOR_ARG} <state dir> <report fd> <owner fd>");
        return 2;
    };
    let state_dir = PathBuf::from(dir);
    // SAFETY: reel passed these descriptors open for this process alone; they are owned here
    // from now on (and made close-on-exec, so no child of the monitor holds them).
    let (report, owner) = unsafe {
        (
            OwnedFd::from_raw_fd(report_fd),
            OwnedFd::from_raw_fd(owner_fd),
        )
    };
    for fd in [&report, &owner] {
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let req: Request = match read_json(&state_dir.join(REQUEST_FILE)) {
        Ok(r) => r,
        Err(e) => {
            let _ = send(&report, &Report::Error(ErrorReport::of(&e, None)));
            let _ = fs::remove_dir_all(&state_dir);
            return 1;
        }
    };
    let mut m = Monitor {
        rec: Record::new(&req),
        req,
        state_dir,
        owner: Some(owner),
        sockets: Vec::new(),
    };
    m.rec.monitor = super::state::ProcRef::me();
    match m.build() {
        Ok(()) => {
            if let Err(e) = send(&report, &Report::Ok(Box::new(m.rec.clone()))) {
                // The reel that asked is gone: nobody knows the sandbox exists.
                tracing::warn!(error = %e, "cannot report; removing the sandbox");
                teardown::teardown(&m.rec, Some(&m.state_dir));
                return 1;
            }
            drop(report);
            m.owner = None;
            m.drop_scratch();
            m.watch()
        }
        Err(e) => {
            tracing::warn!(sandbox = %m.rec.name, error = %e, "the sandbox could not be made");
            let problems = teardown::teardown(&m.rec, Some(&m.state_dir));
            let mut r = ErrorReport::of(&e, m.rec.checkpoint_id.clone());
            for p in problems {
                r.message.push_str(&format!("; and cleaning up: {p}"));
            }
            let _ = send(&report, &Report::Error(r));
            1
        }
    }
}

fn send(report: &OwnedFd, r: &Report) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = File::from(report.try_clone()?);
    f.write_all(&line)
}

struct Monitor {
    req: Request,
    rec: Record,
    state_dir: PathBuf,
    /// Readable at end of file once the reel that asked is gone.
    owner: Option<OwnedFd>,
    /// Our ends of the socketpairs handed out for outside unix peers: (inode, socket).
    sockets: Vec<(u32, OwnedFd)>,
}

impl Monitor {
    fn save(&self) -> Result<(), SandboxError> {
        write_json(&self.state_dir.join(STATE_FILE), &self.rec)
    }

    /// Fails when the reel that asked for the sandbox went away.
    fn owner_here(&self) -> Result<(), SandboxError> {
        let Some(fd) = &self.owner else {
            return Ok(());
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 => Err(SandboxError::step(
                "building the sandbox",
                "the reel that asked for it went away; everything was removed",
            )),
            _ => Ok(()),
        }
    }

    /// Records how long the step that ends now took (from `since`), and restarts the clock.
    fn step(&mut self, name: &str, since: &mut std::time::Instant) {
        let ms = since.elapsed().as_millis() as u64;
        tracing::info!(sandbox = %self.rec.name, step = name, ms, "sandbox step done");
        self.rec.steps_ms.insert(name.to_string(), ms);
        *since = std::time::Instant::now();
    }

    fn build(&mut self) -> Result<(), SandboxError> {
        let mut clock = std::time::Instant::now();
        self.save()?;
        let data = self.req.data_dir.clone();
        crate::durable::create_private_dirs(data.parent().unwrap_or(Path::new("/")))
            .map_err(|e| SandboxError::io("creating", &data, e))?;
        fs::create_dir(&data).map_err(|e| SandboxError::io("creating", &data, e))?;
        self.rec.resources.data_dir = Some(data.clone());
        self.save()?;
        self.owner_here()?;

        // The private copy of the checkpoint, checked against its manifest: on the scratch
        // tmpfs when it fits in memory beside the restored processes, else in the data dir.
        let copy_dir = match self.scratch_for_images() {
            Some(s) => {
                self.rec.resources.scratch_dir = Some(s.clone());
                self.save()?;
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&s)
                    .map_err(|e| SandboxError::io("creating", &s, e))?;
                s
            }
            None => data.clone(),
        };
        let room = crate::store::available_bytes(&copy_dir).unwrap_or(u64::MAX);
        let wanted = |n: &str| {
            n.starts_with(archive::CHECKPOINT_DIR)
                || [
                    archive::ROOTFS_DIFF_TAR,
                    archive::DELETED_FILES,
                    archive::SPEC_DUMP,
                ]
                .contains(&n)
        };
        let limits = ExtractLimits {
            max_bytes: room,
            ..ExtractLimits::default()
        };
        // A store's plain tar: everything but the memory pages is copied and checked now (the
        // plan needs it); the pages, most of the bytes, are copied and checked on other
        // threads while the cgroup, network and rootfs are made, and CRIU starts only once
        // they all match the manifest. A compressed export is read front to back.
        let (got, pages) =
            match archive::stage_members(&self.req.archive, &copy_dir, wanted, is_pages, limits)? {
                Some(mut staged) => {
                    let pages = staged.spawn_pending()?;
                    (staged.extracted, Some(pages))
                }
                None => (
                    archive::extract_members(&self.req.archive, &copy_dir, wanted, limits)?,
                    None,
                ),
            };
        self.rec.checkpoint_id = Some(got.manifest.fields.checkpoint_id.clone());
        self.step("extract", &mut clock);
        self.save()?;
        self.owner_here()?;
        let images = copy_dir.join("checkpoint");
        let spec = got
            .path_of(archive::SPEC_DUMP)
            .map(fs::read)
            .transpose()
            .map_err(|e| SandboxError::io("reading", &copy_dir.join(archive::SPEC_DUMP), e))?
            .unwrap_or_default();
        let plan = plan::plan(&got.manifest, &spec, &images, &self.req)?;

        // Its own cgroup.
        let mut dirs = Vec::new();
        let made = cgroup::create(&self.req.cgroup_parent, &self.req.name, &mut dirs);
        self.rec.resources.cgroups = dirs.clone();
        self.save()?;
        made?;
        cgroup::limit(&dirs, plan.memory_limit, plan.cpu)?;
        self.step("plan+cgroup", &mut clock);

        // Its own network.
        let netns = network::netns_name(&self.req.name);
        let mut inherit: Vec<(String, OwnedFd)> = Vec::new();
        if plan.external_netns {
            self.rec.resources.netns = Some(netns.clone());
            self.save()?;
            network::create(&netns)?;
            self.rec.network = network::configure(&netns, self.req.network, &plan.addresses, None)?;
            inherit.push(("extRootNetNS".into(), network::open(&netns)?.into()));
        }
        self.owner_here()?;

        self.step("network", &mut clock);
        // Its own mounts, in the monitor's own mount namespace.
        let host_mnt = File::open("/proc/self/ns/mnt")
            .map_err(|e| SandboxError::io("opening", Path::new("/proc/self/ns/mnt"), e))?;
        rootfs::private_mount_ns()?;
        let upper = data.join("upper");
        rootfs::build_upper(
            &upper,
            got.path_of(archive::ROOTFS_DIFF_TAR),
            got.path_of(archive::DELETED_FILES),
        )?;
        let merged = data.join("rootfs");
        rootfs::mount_overlay(&plan.lowers, &upper, &data.join("work"), &merged)?;
        self.rec.upper_dir = Some(upper);
        let mapped = rootfs::map_mounts(&plan, &merged, &data, &dirs)?;
        let files = super::images::regular_files(&images)?;
        let resized = rootfs::fit_open_files(&files, &merged, &mapped.records)?;
        self.rec.mounts = mapped.records;
        self.rec.warnings.extend(resized);
        self.rec
            .warnings
            .push(format!("rootfs base: {}", plan.base_from));
        self.rec.warnings.extend(mapped.warnings);
        if plan.tcp_connections > 0 {
            self.rec.warnings.push(format!(
                "{} established TCP connection(s) were restored closed (tcp-close): nothing reaches the original peers",
                plan.tcp_connections
            ));
        }

        // Stand-ins for what the init's descriptors reached outside.
        for (ino, kind) in &plan.outside_unix_sockets {
            let kind = match kind.as_str() {
                "dgram" => SockType::Datagram,
                "seqpacket" => SockType::SeqPacket,
                _ => SockType::Stream,
            };
            let (ours, theirs) =
                socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC)
                    .map_err(|e| SandboxError::step("making a socketpair", e))?;
            inherit.push((format!("socket:[{ino}]"), theirs));
            self.sockets.push((*ino, ours));
        }
        for (fd, key) in &plan.stdio_pipes {
            let f = if *fd == 0 {
                File::open("/dev/null")
                    .map_err(|e| SandboxError::io("opening", Path::new("/dev/null"), e))?
            } else {
                let p = data.join(if *fd == 1 { "stdout.log" } else { "stderr.log" });
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&p)
                    .map_err(|e| SandboxError::io("creating", &p, e))?
            };
            inherit.push((key.clone(), f.into()));
        }
        self.save()?;
        self.owner_here()?;

        self.step("rootfs", &mut clock);
        if let Some(p) = pages {
            p.wait()?;
            self.step("pages", &mut clock);
        }
        self.owner_here()?;
        // CRIU, from inside the sandbox's cgroup, as our child; the restored init as well.
        let me = std::process::id() as i32;
        cgroup::join(&dirs, me)?;
        let criu = Criu::with_binary(&self.req.criu)?;
        let work = data.join("work-criu");
        fs::create_dir_all(&work).map_err(|e| SandboxError::io("creating", &work, e))?;
        let mut o = Options::new()
            .images_dir(&images)
            .work_dir(&work)
            .log_file("restore.log")
            .log_level(4)
            .root(&merged)
            .rst_sibling(true)
            .manage_cgroups(CgroupMode::Soft)
            .cgroup_root(
                None,
                format!("/{}/{}", self.req.cgroup_parent, self.req.name),
            )
            .tcp_close(true)
            .file_locks(plan.file_locks)
            .shell_job(plan.shell_job)
            .leave_stopped(self.req.paused)
            .call_timeout(Duration::from_secs(600));
        if !plan.external_netns {
            o = o.empty_ns(crate::checkpoint::plan::EMPTY_NS_NET);
        }
        for (k, v) in &mapped.ext_mnt {
            o = o.ext_mount(k.clone(), v.clone());
        }
        for (k, fd) in inherit {
            o = o.inherit_fd(k, fd);
        }
        let owner = self
            .owner
            .as_ref()
            .map(|f| f.try_clone())
            .transpose()
            .ok()
            .flatten();
        let mut net_done: Option<Result<super::state::NetworkRecord, SandboxError>> = None;
        // How long filling CRIU's network namespace took (part of the step `criu`).
        let mut net_ms = None;
        let (mode, addresses, ext) = (
            self.req.network,
            plan.addresses.clone(),
            plan.external_netns,
        );
        let restored = criu.restore_with(&o, |n| {
            if let Some(fd) = &owner {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                if matches!(poll(&mut fds, PollTimeout::ZERO), Ok(k) if k > 0) {
                    return Err("the reel that asked for the sandbox went away".into());
                }
            }
            if *n.kind() == NotifyKind::SetupNamespaces && !ext {
                // CRIU made an empty network namespace for the tree: fill it before the
                // sockets are restored.
                let Some(pid) = n.pid() else {
                    return Err("setup-namespaces without a pid".into());
                };
                let t = std::time::Instant::now();
                let r = network::attach(&netns, pid, Some(&host_mnt))
                    .and_then(|()| network::configure(&netns, mode, &addresses, Some(&host_mnt)));
                net_ms = Some(t.elapsed().as_millis() as u64);
                let failed = r.as_ref().err().map(|e| e.to_string());
                net_done = Some(r);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Ok(())
        });
        if !ext {
            // Named (and so recorded for removal) as soon as CRIU made it.
            if network::netns_path(&netns).exists() {
                self.rec.resources.netns = Some(netns.clone());
            }
            if let Some(Ok(r)) = net_done {
                self.rec.network = r;
            }
        }
        let left = cgroup::leave(&dirs, me);
        let root = match restored {
            Ok(pid) => pid,
            Err(CriuError::NotifyFailed { message, .. }) if self.owner_here().is_err() => {
                return Err(SandboxError::step("building the sandbox", message))
            }
            Err(e) => return Err(e.into()),
        };
        self.rec.root_pid = Some(root);
        self.step("criu", &mut clock);
        if let Some(ms) = net_ms {
            self.rec.steps_ms.insert("criu.network".into(), ms);
        }
        left?;
        self.rec.processes = restored_tree(root);
        self.rec.phase = Phase::Running;
        self.save()?;
        self.owner_here()?;
        Ok(())
    }

    /// Removes the private images and CRIU's work dir: they did their job (the archive keeps
    /// the evidence). Called once the report is sent, so the asker does not wait for it.
    fn drop_scratch(&mut self) {
        let data = &self.req.data_dir;
        for d in ["checkpoint", "work-criu"] {
            let _ = fs::remove_dir_all(data.join(d));
        }
        for f in [archive::ROOTFS_DIFF_TAR, archive::SPEC_DUMP] {
            let _ = fs::remove_file(data.join(f));
        }
        if let Some(s) = &self.rec.resources.scratch_dir {
            if fs::remove_dir_all(s).is_ok() {
                self.rec.resources.scratch_dir = None;
                if let Err(e) = self.save() {
                    tracing::warn!(error = %e, "cannot record the scratch copy's removal");
                }
            }
        }
    }

    /// The scratch directory for the images when the archive is a plain tar that fits in
    /// memory twice over (the copy, and the restored processes' own memory) with room to
    /// spare, and on the tmpfs.
    /// Its parent must be root's own directory (not a symlink, no one else may write): the
    /// tmpfs is usually `/dev/shm`, where anyone may create names.
    fn scratch_for_images(&self) -> Option<PathBuf> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = self.req.scratch_dir.clone()?;
        let root = dir.parent()?;
        // A plain tar's size bounds what is copied; a compressed export's does not.
        let mut file = File::open(&self.req.archive).ok()?;
        let (compression, _) = archive::detect_compression(&mut file).ok()?;
        if compression != archive::Compression::None {
            return None;
        }
        let size = file.metadata().ok()?.len();
        let spare: u64 = 512 << 20;
        let memory = mem_available()?;
        let _ = crate::durable::create_private_dirs(root);
        let meta = fs::symlink_metadata(root).ok()?;
        let private = meta.is_dir()
            && meta.uid() == nix::unistd::geteuid().as_raw()
            && meta.permissions().mode() & 0o077 == 0;
        if !private {
            tracing::warn!(path = %root.display(), "not a private directory of root's: the images are copied to the data directory");
            return None;
        }
        let tmpfs = crate::store::available_bytes(root).ok()?;
        let fits = size.saturating_mul(2).saturating_add(spare) <= memory
            && size.saturating_add(spare) <= tmpfs;
        tracing::debug!(size, memory, tmpfs, fits, "scratch copy of the images");
        fits.then_some(dir)
    }

    /// After the report: reap, log, record, until the sandbox ends.
    fn watch(mut self) -> i32 {
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            mask.add(s);
        }
        if let Err(e) = mask.thread_block() {
            tracing::error!(error = %e, "cannot block signals");
        }
        let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch signals");
                return 1;
            }
        };
        let root = self.rec.root_pid.unwrap_or(0);
        let mut stopping = false;
        let mut logs: Vec<(u32, OwnedFd, Option<File>)> = self
            .sockets
            .drain(..)
            .map(|(ino, fd)| (ino, fd, None))
            .collect();
        let data = self.req.data_dir.clone();
        loop {
            // The init may have ended before the mask was set.
            if let Some(code) = self.reap(root, stopping) {
                return code;
            }
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            for (_, fd, _) in &logs {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            if poll(&mut fds, PollTimeout::from(1000u16)).is_err() {
                continue;
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready[0] {
                while let Ok(Some(info)) = sfd.read_signal() {
                    let sig = info.ssi_signo as i32;
                    if sig != libc::SIGCHLD && !stopping {
                        stopping = true;
                        self.rec.phase = Phase::Stopped;
                        let _ =
                            cgroup::kill_all(&self.rec.resources.cgroups, Duration::from_secs(10));
                    }
                }
            }
            let mut closed = Vec::new();
            for (i, (ino, fd, log)) in logs.iter_mut().enumerate() {
                if !ready[i + 1] {
                    continue;
                }
                let mut buf = [0u8; 65536];
                // SAFETY: reading into a buffer we own from a descriptor we own.
                let n = unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n <= 0 {
                    if n == 0 {
                        closed.push(i);
                    }
                    continue;
                }
                if log.is_none() {
                    let p = data.join(format!("unix-{ino}.log"));
                    *log = OpenOptions::new()
                        .append(true)
                        .create(true)
                        .mode(0o600)
                        .open(&p)
                        .ok();
                }
                if let Some(f) = log {
                    let _ = f.write_all(&buf[..n as usize]);
                }
            }
            for i in closed.into_iter().rev() {
                logs.remove(i);
            }
        }
    }

    /// Reaps every ended child; when the init ended, records it and returns the exit code.
    fn reap(&mut self, root: i32, stopping: bool) -> Option<i32> {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == root => {
                    return Some(self.ended(Some(code), None, stopping))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == root => {
                    return Some(self.ended(None, Some(sig as i32), stopping))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    fn ended(&mut self, code: Option<i32>, signal: Option<i32>, stopping: bool) -> i32 {
        self.rec.exit = Some(ExitRecord {
            code,
            signal,
            at: Utc::now(),
        });
        self.rec.phase = if stopping {
            Phase::Stopped
        } else {
            Phase::Exited
        };
        // The rest of the tree went with its pid namespace's init; make sure.
        let _ = cgroup::kill_all(&self.rec.resources.cgroups, Duration::from_secs(10));
        if let Err(e) = self.save() {
            tracing::error!(error = %e, "cannot record the sandbox's end");
        }
        0
    }
}

/// The restored tree under `root`: host pids and the pids they were checkpointed with (the
/// innermost of `NSpid`: CRIU restores every pid as it was in the container's namespace).
pub fn restored_tree(root: i32) -> Vec<RestoredProcess> {
    let proc_root = Path::new(host::PROC);
    host::descendants(proc_root, root)
        .into_iter()
        .map(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let ns = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last()?.parse().ok())
                .unwrap_or(pid);
            let mut command = String::new();
            if let Ok(mut f) = File::open(format!("/proc/{pid}/cmdline")) {
                let mut b = Vec::new();
                let _ = Read::by_ref(&mut f).take(4096).read_to_end(&mut b);
                command = b
                    .split(|c| *c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            RestoredProcess {
                pid,
                checkpointed_pid: ns,
                command,
            }
        })
        .collect()
}
