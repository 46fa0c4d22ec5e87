//! The typed options of a CRIU request, built into `criu_opts` in one place
//! ([`Options::prepare`]).
//!
//! Directories are given as paths (opened with `O_DIRECTORY` when the request is made, so an
//! error names the path) or as descriptors. Descriptors that CRIU itself must hold
//! ([`Options::inherit_fd`], [`Options::page_server_fd`]) are passed to `criu swrk` when it is
//! started, as fds 4, 5, ...

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{CriuError, Request};
use super::pb;

/// The default CRIU log level of the driver (runc's: everything but debug noise).
pub const DEFAULT_LOG_LEVEL: u32 = 4;

/// How CRIU handles the cgroups of the dumped tree (`manage_cgroups_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Leave cgroups alone.
    Ignore,
    /// Do not restore cgroup properties, only the membership (`CG_NONE`).
    None,
    /// Restore the properties of the cgroups CRIU creates.
    Props,
    /// Restore properties only of cgroups created by CRIU, use existing ones as they are
    /// (what runc uses).
    Soft,
    /// Restore all properties.
    Full,
    /// Fail if a cgroup already exists.
    Strict,
    /// CRIU's default.
    Default,
}

impl CgroupMode {
    fn to_pb(self) -> pb::CgMode {
        match self {
            CgroupMode::Ignore => pb::CgMode::Ignore,
            CgroupMode::None => pb::CgMode::CgNone,
            CgroupMode::Props => pb::CgMode::Props,
            CgroupMode::Soft => pb::CgMode::Soft,
            CgroupMode::Full => pb::CgMode::Full,
            CgroupMode::Strict => pb::CgMode::Strict,
            CgroupMode::Default => pb::CgMode::Default,
        }
    }
}

/// How CRIU locks the network of the dumped tree while it dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkLock {
    /// iptables (CRIU's default).
    Iptables,
    /// nftables.
    Nftables,
    /// Do not lock.
    Skip,
}

impl NetworkLock {
    fn to_pb(self) -> pb::NetLock {
        match self {
            NetworkLock::Iptables => pb::NetLock::Iptables,
            NetworkLock::Nftables => pb::NetLock::Nftables,
            NetworkLock::Skip => pb::NetLock::Skip,
        }
    }
}

/// A directory given to CRIU.
#[derive(Debug, Clone)]
enum DirSpec {
    Path(PathBuf),
    Fd(Arc<OwnedFd>),
}

/// An open directory of a request; CRIU opens `/proc/<our pid>/fd/<n>`, so it stays open
/// until the answer arrives.
#[derive(Debug)]
pub(crate) struct OpenDir {
    fd: Arc<OwnedFd>,
    /// The path it was opened from, for messages; `/proc/self/fd/<n>` for a given fd.
    pub(crate) path: PathBuf,
}

impl OpenDir {
    fn open(spec: &DirSpec, request: Request, what: &'static str) -> Result<OpenDir, CriuError> {
        match spec {
            DirSpec::Path(p) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(p)
                    .map_err(|e| CriuError::io(request, what, p, e))?;
                Ok(OpenDir {
                    fd: Arc::new(OwnedFd::from(file)),
                    path: p.clone(),
                })
            }
            DirSpec::Fd(fd) => Ok(OpenDir {
                path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
                fd: fd.clone(),
            }),
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A path that reaches a file inside this directory from this process.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd()))
    }

    /// The same, for messages.
    pub(crate) fn display_file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// The options of one CRIU request. Methods chain; unset options keep CRIU's defaults.
///
/// ```no_run
/// # use reel_core::criu::{Options, CgroupMode};
/// let opts = Options::new()
///     .pid(1234)
///     .images_dir("/var/lib/reel/stage/checkpoint")
///     .work_dir("/var/lib/reel/stage")
///     .log_file("dump.log")
///     .leave_running(true)
///     .manage_cgroups(CgroupMode::Soft)
///     .external("net[4026531993]:extRootNetNS");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    pid: Option<i32>,
    images_dir: Option<DirSpec>,
    work_dir: Option<DirSpec>,
    log_file: Option<String>,
    log_level: Option<u32>,
    leave_running: Option<bool>,
    shell_job: Option<bool>,
    ext_unix_sk: Option<bool>,
    tcp_established: Option<bool>,
    tcp_close: Option<bool>,
    file_locks: Option<bool>,
    link_remap: Option<bool>,
    ghost_limit: Option<u32>,
    root: Option<PathBuf>,
    external: Vec<String>,
    ext_mnt: Vec<(String, String)>,
    empty_ns: Option<u32>,
    manage_cgroups: Option<CgroupMode>,
    freeze_cgroup: Option<PathBuf>,
    orphan_pts_master: Option<bool>,
    criu_timeout: Option<u32>,
    network_lock: Option<NetworkLock>,
    ps_address: Option<String>,
    ps_port: Option<u16>,
    ps_fd: Option<Arc<OwnedFd>>,
    track_mem: Option<bool>,
    parent_img: Option<String>,
    inherit_fd: Vec<(String, Arc<OwnedFd>)>,
    rst_sibling: Option<bool>,
    leave_stopped: Option<bool>,
    cg_root: Vec<(Option<String>, String)>,
    lsm_profile: Option<String>,
    notify_scripts: Option<bool>,
    config_file: Option<PathBuf>,
    call_timeout: Option<Duration>,
}

/// A request's options made ready: the `criu_opts`, and what must live until the answer.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) opts: pb::Opts,
    pub(crate) images: Option<OpenDir>,
    pub(crate) work: Option<OpenDir>,
    /// Where CRIU writes its log, when it writes one.
    pub(crate) log_name: Option<String>,
    /// Descriptors CRIU must hold, in order: they become fds 4, 5, ... of `criu swrk`.
    pub(crate) pass_fds: Vec<Arc<OwnedFd>>,
    pub(crate) call_timeout: Option<Duration>,
}

impl Prepared {
    /// The directory CRIU uses as its work dir (the work dir, else the images dir).
    pub(crate) fn work_dir(&self) -> Option<&OpenDir> {
        self.work.as_ref().or(self.images.as_ref())
    }
}

/// The first fd number of `criu swrk` that receives passed descriptors (3 is the socket).
pub(crate) const FIRST_PASSED_FD: i32 = 4;

impl Options {
    /// No options set.
    pub fn new() -> Options {
        Options::default()
    }

    /// The root of the tree to dump (host pid). Required for dump and pre-dump.
    pub fn pid(mut self, pid: i32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// The images directory, opened (`O_DIRECTORY`) when the request is made.
    pub fn images_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.images_dir = Some(DirSpec::Path(path.into()));
        self
    }

    /// The images directory as an open descriptor (kept open by the options).
    pub fn images_dir_fd(mut self, fd: OwnedFd) -> Self {
        self.images_dir = Some(DirSpec::Fd(Arc::new(fd)));
        self
    }

    /// The work directory (log file, `stats-dump`); CRIU uses the images dir when unset.
    pub fn work_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(DirSpec::Path(path.into()));
        self
    }

    /// The work directory as an open descriptor.
    pub fn work_dir_fd(mut self, fd: OwnedFd) -> Self {
        self.work_dir = Some(DirSpec::Fd(Arc::new(fd)));
        self
    }

    /// The log file: a bare name, created in the work dir. Defaults to `<request>.log`
    /// (`dump.log`, `restore.log`, `pre-dump.log`, `page-server.log`).
    pub fn log_file(mut self, name: impl Into<String>) -> Self {
        self.log_file = Some(name.into());
        self
    }

    /// CRIU's log level, 0 (nothing) to 4 (debug). Defaults to [`DEFAULT_LOG_LEVEL`].
    pub fn log_level(mut self, level: u32) -> Self {
        self.log_level = Some(level);
        self
    }

    /// Keep the tree running after the dump (without it, the dumped tree is killed).
    pub fn leave_running(mut self, on: bool) -> Self {
        self.leave_running = Some(on);
        self
    }

    /// The tree is a shell job: its session and terminal are outside it.
    pub fn shell_job(mut self, on: bool) -> Self {
        self.shell_job = Some(on);
        self
    }

    /// Allow unix sockets connected to peers outside the tree.
    pub fn ext_unix_sk(mut self, on: bool) -> Self {
        self.ext_unix_sk = Some(on);
        self
    }

    /// Dump and restore established TCP connections.
    pub fn tcp_established(mut self, on: bool) -> Self {
        self.tcp_established = Some(on);
        self
    }

    /// Close established TCP connections on restore instead of restoring them.
    pub fn tcp_close(mut self, on: bool) -> Self {
        self.tcp_close = Some(on);
        self
    }

    /// Dump and restore file locks.
    pub fn file_locks(mut self, on: bool) -> Self {
        self.file_locks = Some(on);
        self
    }

    /// Allow link remaps for open but deleted files.
    pub fn link_remap(mut self, on: bool) -> Self {
        self.link_remap = Some(on);
        self
    }

    /// The largest open-but-deleted file CRIU dumps as a ghost file, in bytes (CRIU's default
    /// is 1 MiB; a larger one fails the dump).
    pub fn ghost_limit(mut self, bytes: u32) -> Self {
        self.ghost_limit = Some(bytes);
        self
    }

    /// The root of the tree's mount namespace (the container's rootfs).
    pub fn root(mut self, path: impl Into<PathBuf>) -> Self {
        self.root = Some(path.into());
        self
    }

    /// Declares an external resource, e.g. `net[4026531993]:extRootNetNS` or
    /// `mnt[/data]:/data`. May be repeated.
    pub fn external(mut self, spec: impl Into<String>) -> Self {
        self.external.push(spec.into());
        self
    }

    /// An external mount mapping (`ext_mnt`): key and value (runc uses the destination in the
    /// container for both). May be repeated.
    pub fn ext_mount(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.ext_mnt.push((key.into(), value.into()));
        self
    }

    /// Namespaces CRIU creates empty on restore instead of restoring (`CLONE_NEWNET` is the
    /// only one CRIU accepts).
    pub fn empty_ns(mut self, clone_flags: u32) -> Self {
        self.empty_ns = Some(clone_flags);
        self
    }

    /// Let CRIU manage the tree's cgroups in this mode (`manage_cgroups` and its mode).
    pub fn manage_cgroups(mut self, mode: CgroupMode) -> Self {
        self.manage_cgroups = Some(mode);
        self
    }

    /// Freeze the tree with this cgroup (v1 freezer dir or v2 unified dir) instead of ptrace
    /// alone.
    pub fn freeze_cgroup(mut self, path: impl Into<PathBuf>) -> Self {
        self.freeze_cgroup = Some(path.into());
        self
    }

    /// Dump and restore ptys whose master is outside the tree (the master comes back through
    /// the `orphan-pts-master` notification).
    pub fn orphan_pts_master(mut self, on: bool) -> Self {
        self.orphan_pts_master = Some(on);
        self
    }

    /// CRIU's own timeout (whole seconds, e.g. for freezing). Not the driver's call timeout:
    /// see [`Options::call_timeout`].
    pub fn criu_timeout(mut self, timeout: Duration) -> Self {
        self.criu_timeout = Some(u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX));
        self
    }

    /// How the network is locked during the dump.
    pub fn network_lock(mut self, method: NetworkLock) -> Self {
        self.network_lock = Some(method);
        self
    }

    /// Send pages to (dump) or serve pages on (page server) this address and port. Port 0
    /// lets the page server pick one.
    pub fn page_server(mut self, address: impl Into<String>, port: u16) -> Self {
        self.ps_address = Some(address.into());
        self.ps_port = Some(port);
        self
    }

    /// Use this connected socket for the page server traffic instead of an address.
    pub fn page_server_fd(mut self, fd: OwnedFd) -> Self {
        self.ps_fd = Some(Arc::new(fd));
        self
    }

    /// Track memory changes (needs the kernel's soft-dirty bits). Pre-dumps always do.
    pub fn track_mem(mut self, on: bool) -> Self {
        self.track_mem = Some(on);
        self
    }

    /// The previous pre-dump's images, relative to the images dir (e.g. `../1`).
    pub fn parent_img(mut self, path: impl Into<String>) -> Self {
        self.parent_img = Some(path.into());
        self
    }

    /// On restore, give the restored tree this descriptor in place of the resource `key`
    /// (e.g. `pipe:[12345]`). May be repeated.
    pub fn inherit_fd(mut self, key: impl Into<String>, fd: OwnedFd) -> Self {
        self.inherit_fd.push((key.into(), Arc::new(fd)));
        self
    }

    /// Restore the tree as a sibling of CRIU, i.e. as a child of the caller (which then has
    /// to reap it). Without it the restored tree is detached.
    pub fn rst_sibling(mut self, on: bool) -> Self {
        self.rst_sibling = Some(on);
        self
    }

    /// On restore, leave the restored tasks stopped (SIGSTOP'd) instead of letting them run:
    /// a debugger or tracer can attach before anything runs; SIGCONT lets them go.
    pub fn leave_stopped(mut self, on: bool) -> Self {
        self.leave_stopped = Some(on);
        self
    }

    /// On restore, the cgroup the tree's root cgroup becomes (`cg_root`): `controller` is a v1
    /// controller as `/proc/<pid>/cgroup` names it (`memory`, `cpu,cpuacct`, `name=systemd`)
    /// or `None` for every controller not named otherwise (and cgroup v2); `path` is relative
    /// to the hierarchy's root (`/reel-sandboxes/x`). May be repeated.
    pub fn cgroup_root(mut self, controller: Option<&str>, path: impl Into<String>) -> Self {
        self.cg_root
            .push((controller.map(str::to_string), path.into()));
        self
    }

    /// The LSM profile the restored tasks get (`apparmor:<name>`, `selinux:<context>`);
    /// unset, they keep the one they were dumped with.
    pub fn lsm_profile(mut self, profile: impl Into<String>) -> Self {
        self.lsm_profile = Some(profile.into());
        self
    }

    /// Send notifications (`pre-dump`, `post-dump`, ...). Turned on by the `*_with` calls.
    pub fn notify_scripts(mut self, on: bool) -> Self {
        self.notify_scripts = Some(on);
        self
    }

    /// A CRIU configuration file read after these options (it overrides them).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// The driver's timeout for this call: when CRIU has not answered in time, it is killed
    /// and reaped and the call fails with [`CriuError::Timeout`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// True when the options pass descriptors to CRIU itself.
    pub(crate) fn passes_fds(&self) -> bool {
        self.ps_fd.is_some() || !self.inherit_fd.is_empty()
    }

    /// Opens the directories and builds `criu_opts`: the one place where options become the
    /// protocol's message.
    pub(crate) fn prepare(&self, request: Request, notify: bool) -> Result<Prepared, CriuError> {
        let mut o = pb::Opts {
            images_dir_fd: -1,
            ..pb::Opts::default()
        };

        if matches!(request, Request::Dump | Request::PreDump) && self.pid.is_none() {
            // Without a pid CRIU dumps its client: this process.
            return Err(CriuError::invalid(
                request,
                "the pid of the tree to dump is required",
            ));
        }
        if self.images_dir.is_none() {
            return Err(CriuError::invalid(request, "an images dir is required"));
        }
        let images = self
            .images_dir
            .as_ref()
            .map(|d| OpenDir::open(d, request, "open the images dir"))
            .transpose()?;
        let work = self
            .work_dir
            .as_ref()
            .map(|d| OpenDir::open(d, request, "open the work dir"))
            .transpose()?;
        if let Some(d) = &images {
            o.images_dir_fd = d.raw();
        }
        if let Some(d) = &work {
            o.work_dir_fd = Some(d.raw());
        }

        let log_name = self
            .log_file
            .clone()
            .unwrap_or_else(|| default_log_name(request).into());
        if log_name.is_empty() || log_name.contains('/') || log_name == "." || log_name == ".." {
            return Err(CriuError::invalid(
                request,
                format!("log file {log_name:?} must be a bare file name (it is created in the work dir)"),
            ));
        }
        o.log_file = Some(log_name.clone());
        let level = self.log_level.unwrap_or(DEFAULT_LOG_LEVEL);
        o.log_level = Some(i32::try_from(level).unwrap_or(i32::MAX));

        if let Some(pid) = self.pid {
            o.pid = Some(pid);
        }
        set(&mut o.leave_running, self.leave_running);
        set(&mut o.shell_job, self.shell_job);
        set(&mut o.ext_unix_sk, self.ext_unix_sk);
        set(&mut o.tcp_established, self.tcp_established);
        set(&mut o.tcp_close, self.tcp_close);
        set(&mut o.file_locks, self.file_locks);
        set(&mut o.link_remap, self.link_remap);
        set(&mut o.ghost_limit, self.ghost_limit);
        set(&mut o.orphan_pts_master, self.orphan_pts_master);
        set(&mut o.rst_sibling, self.rst_sibling);
        set(&mut o.leave_stopped, self.leave_stopped);
        set(&mut o.lsm_profile, self.lsm_profile.clone());
        for (ctrl, path) in &self.cg_root {
            o.cg_root.push(pb::CgRoot {
                ctrl: ctrl.clone(),
                path: path.clone(),
            });
        }
        set(&mut o.timeout, self.criu_timeout);
        set(&mut o.empty_ns, self.empty_ns);
        if let Some(root) = &self.root {
            o.root = Some(path_string(request, "root", root)?);
        }
        o.external = self.external.clone();
        for (key, val) in &self.ext_mnt {
            o.ext_mnt.push(pb::ExtMnt {
                key: key.clone(),
                val: val.clone(),
            });
        }
        if let Some(mode) = self.manage_cgroups {
            o.manage_cgroups = Some(mode != CgroupMode::Ignore);
            o.set_manage_cgroups_mode(mode.to_pb());
        }
        if let Some(cg) = &self.freeze_cgroup {
            o.freeze_cgroup = Some(path_string(request, "freeze_cgroup", cg)?);
        }
        if let Some(m) = self.network_lock {
            o.set_network_lock(m.to_pb());
        }

        // Descriptors for CRIU itself: fds 4, 5, ... of `criu swrk`, in this order.
        let mut pass_fds = Vec::new();
        for (key, fd) in &self.inherit_fd {
            o.inherit_fd.push(pb::InheritFd {
                key: key.clone(),
                fd: FIRST_PASSED_FD + pass_fds.len() as i32,
            });
            pass_fds.push(fd.clone());
        }
        let mut ps = None;
        if self.ps_address.is_some() || self.ps_port.is_some() || self.ps_fd.is_some() {
            let mut info = pb::PsInfo {
                address: self.ps_address.clone(),
                port: Some(i32::from(self.ps_port.unwrap_or(0))),
                ..pb::PsInfo::default()
            };
            if let Some(fd) = &self.ps_fd {
                info.fd = Some(FIRST_PASSED_FD + pass_fds.len() as i32);
                pass_fds.push(fd.clone());
            }
            ps = Some(info);
        } else if request == Request::PageServer {
            // A page server needs `ps` to know it must listen; port 0 picks a free one.
            ps = Some(pb::PsInfo {
                port: Some(0),
                ..pb::PsInfo::default()
            });
        }
        o.ps = ps;

        set(&mut o.track_mem, self.track_mem);
        if request == Request::PreDump {
            // A pre-dump always tracks memory. Saying so makes CRIU fail cleanly ("Tracking
            // memory is not available") on kernels without soft-dirty bits, instead of
            // crashing in its pre-dump worker.
            o.track_mem = Some(true);
        }
        if let Some(p) = &self.parent_img {
            o.parent_img = Some(p.clone());
        }
        o.notify_scripts = Some(notify || self.notify_scripts.unwrap_or(false));
        if let Some(c) = &self.config_file {
            o.config_file = Some(path_string(request, "config_file", c)?);
        }

        Ok(Prepared {
            opts: o,
            images,
            work,
            log_name: Some(log_name),
            pass_fds,
            call_timeout: self.call_timeout,
        })
    }
}

fn set<T>(field: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *field = value;
    }
}

fn path_string(request: Request, what: &str, p: &Path) -> Result<String, CriuError> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| CriuError::invalid(request, format!("{what} {} is not UTF-8", p.display())))
}

fn default_log_name(request: Request) -> &'static str {
    match request {
        Request::Dump => "dump.log",
        Request::PreDump => "pre-dump.log",
        Request::Restore => "restore.log",
        Request::PageServer | Request::WaitPid => "page-server.log",
        Request::Check => "check.log",
        Request::FeatureCheck | Request::Version => "criu.log",
    }
}

/// Opens a directory for [`Options::images_dir_fd`]-style use (`O_DIRECTORY | O_CLOEXEC`).
pub fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    let f: File = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(OwnedFd::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_criu_opts() {
        let dir = std::env::temp_dir();
        let p = Options::new()
            .pid(42)
            .images_dir(&dir)
            .leave_running(true)
            .tcp_established(true)
            .external("net[4026531993]:extRootNetNS")
            .external("mnt[/x]:/x")
            .ext_mount("/data", "/data")
            .manage_cgroups(CgroupMode::Soft)
            .network_lock(NetworkLock::Nftables)
            .empty_ns(libc::CLONE_NEWNET as u32)
            .prepare(Request::Dump, true)
            .unwrap();
        let o = &p.opts;
        assert_eq!(o.pid(), 42);
        assert!(o.images_dir_fd >= 0);
        assert!(o.work_dir_fd.is_none());
        assert_eq!(o.log_file(), "dump.log");
        assert_eq!(o.log_level(), 4);
        assert!(o.leave_running() && o.tcp_established() && o.notify_scripts());
        assert!(o.shell_job.is_none());
        assert_eq!(o.external.len(), 2);
        assert_eq!(o.ext_mnt[0].key, "/data");
        assert!(o.manage_cgroups());
        assert_eq!(o.manage_cgroups_mode(), pb::CgMode::Soft);
        assert_eq!(o.network_lock(), pb::NetLock::Nftables);
        assert_eq!(o.empty_ns(), libc::CLONE_NEWNET as u32);
        assert!(p.pass_fds.is_empty());
    }

    /// The requests encode to the bytes the rust-protobuf implementation sent before the move
    /// to prost (captured from it with the same options).
    #[test]
    fn wire_encoding_is_unchanged() {
        use prost::Message;
        let dir = std::env::temp_dir();
        let mut p = Options::new()
            .pid(4242)
            .images_dir(&dir)
            .work_dir(&dir)
            .leave_running(true)
            .tcp_established(true)
            .ext_unix_sk(false)
            .shell_job(true)
            .file_locks(true)
            .orphan_pts_master(true)
            .external("net[4026531993]:extRootNetNS")
            .ext_mount("/data", "/data")
            .ext_mount("/etc/hosts", "/dev/null")
            .manage_cgroups(CgroupMode::Soft)
            .freeze_cgroup("/sys/fs/cgroup/unified/x")
            .network_lock(NetworkLock::Nftables)
            .empty_ns(libc::CLONE_NEWNET as u32)
            .root("/run/rootfs")
            .inherit_fd("pipe:[1]", open_dir(&dir).unwrap())
            .page_server("127.0.0.1", 1234)
            .parent_img("../parent")
            .log_level(4)
            .prepare(Request::Dump, true)
            .unwrap();
        // The descriptors' numbers vary from run to run.
        (p.opts.images_dir_fd, p.opts.work_dir_fd) = (7, Some(8));
        let mut req = pb::Req {
            opts: Some(p.opts.clone()),
            ..pb::Req::default()
        };
        req.set_type(pb::ReqType::Dump);
        assert_eq!(
            hex::encode(req.encode_to_vec()),
            "080112cf010807109221180120002801380140014804520864756d702e6c6f675a0e0a093132372e30\
             2e302e3110d20960016a0b2f72756e2f726f6f74667372092e2e2f706172656e74880108ba010e0a05\
             2f6461746112052f64617461ba01170a0a2f6574632f686f73747312092f6465762f6e756c6cc00101\
             da010c0a08706970653a5b315d1004900203aa021c6e65745b343032363533313939335d3a65787452\
             6f6f744e65744e53b0028080808004e202182f7379732f66732f6367726f75702f756e69666965642f\
             78900301800402"
        );
        let answer = super::super::session::notify_answer(true, &["file[1:2]".to_string()]);
        assert_eq!(
            hex::encode(answer.encode_to_vec()),
            "0806121708ffffffffffffffffff01aa020966696c655b313a325d1801"
        );
    }

    #[test]
    fn rejects_bad_input() {
        let dir = std::env::temp_dir();
        assert!(Options::new()
            .images_dir(&dir)
            .prepare(Request::Dump, false)
            .is_err());
        assert!(Options::new().pid(1).prepare(Request::Dump, false).is_err());
        let e = Options::new()
            .pid(1)
            .images_dir(&dir)
            .log_file("a/b.log")
            .prepare(Request::Dump, false)
            .unwrap_err();
        assert!(matches!(e, CriuError::InvalidOptions { .. }), "{e}");
        let e = Options::new()
            .pid(1)
            .images_dir("/nonexistent/reel-test")
            .prepare(Request::Dump, false)
            .unwrap_err();
        assert!(
            matches!(&e, CriuError::Io { path, .. } if path == Path::new("/nonexistent/reel-test")),
            "{e}"
        );
    }

    #[test]
    fn passes_fds_in_order() {
        let dir = std::env::temp_dir();
        let a = open_dir(&dir).unwrap();
        let b = open_dir(&dir).unwrap();
        let p = Options::new()
            .images_dir(&dir)
            .inherit_fd("pipe:[1]", a)
            .page_server_fd(b)
            .prepare(Request::Restore, false)
            .unwrap();
        assert_eq!(p.pass_fds.len(), 2);
        assert_eq!(p.opts.inherit_fd[0].fd, 4);
        assert_eq!(p.opts.ps.as_ref().and_then(|ps| ps.fd), Some(5));
        assert_eq!(p.opts.log_file(), "restore.log");
    }

    #[test]
    fn restore_options() {
        let dir = std::env::temp_dir();
        let p = Options::new()
            .images_dir(&dir)
            .leave_stopped(true)
            .rst_sibling(true)
            .tcp_close(true)
            .cgroup_root(None, "/reel-sandboxes/a")
            .cgroup_root(Some("memory"), "/reel-sandboxes/a")
            .lsm_profile("apparmor:unconfined")
            .prepare(Request::Restore, false)
            .unwrap();
        let o = &p.opts;
        assert!(o.leave_stopped() && o.rst_sibling() && o.tcp_close());
        assert_eq!(o.cg_root.len(), 2);
        assert!(o.cg_root[0].ctrl.is_none());
        assert_eq!(o.cg_root[1].ctrl.as_deref(), Some("memory"));
        assert_eq!(o.cg_root[1].path, "/reel-sandboxes/a");
        assert_eq!(o.lsm_profile(), "apparmor:unconfined");
    }
}
