//! The CRIU driver: CRIU's RPC protocol spoken to `criu swrk`.
//!
//! [`Criu`] is a located and version-checked CRIU binary. Each call starts its own
//! `criu swrk` (see `session.rs`), sends one request built from typed [`Options`], hands
//! CRIU's notifications to an optional callback, and maps every failure to a typed
//! [`CriuError`] carrying CRIU's `cr_errno`, `cr_errmsg` and the last error lines of its log.
//! Calls never leave a CRIU process or zombie behind: a call that times out, fails or is
//! abandoned kills and reaps CRIU.
//!
//! ```no_run
//! use reel_core::criu::{Criu, Options};
//! # fn main() -> Result<(), reel_core::criu::CriuError> {
//! let criu = Criu::locate()?;
//! let stats = criu.dump(
//!     &Options::new().pid(1234).images_dir("/tmp/ck/checkpoint").work_dir("/tmp/ck").leave_running(true),
//! )?;
//! println!("frozen for {:?}", stats.frozen_time);
//! # Ok(()) }
//! ```
//!
//! CRIU's RPC has no image-streaming mode: to send pages elsewhere, start a page server
//! ([`Criu::page_server`]) and point the dump at it ([`Options::page_server`]).
//!
//! Pre-dumps need the kernel's memory dirty tracking (soft-dirty bits); where it is missing
//! ([`Features::mem_track`] is false) [`Criu::pre_dump`] fails with a
//! [`CriuError::RequestFailed`] whose hint says memory tracking is unsupported.

mod error;
pub mod image;
mod notify;
mod options;
mod session;
mod stats;

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::{CriuError, ExitInfo, Known, Request, HOW_TO_FIX};
pub use notify::{Notification, NotifyFn, NotifyKind};
pub use options::{open_dir, CgroupMode, NetworkLock, Options, DEFAULT_LOG_LEVEL};
pub use stats::{decode_stats_image, read_dump_stats, DumpStats};

use options::Prepared;
use session::{LogFile, Session};

/// The generated (prost) types of CRIU's `rpc.proto` and `stats.proto`, under the names the
/// driver uses.
pub(crate) mod pb {
    pub use criu_sys::proto::{
        CgroupRoot as CgRoot, CriuCgMode as CgMode, CriuFeatures as Features,
        CriuNetworkLockMethod as NetLock, CriuOpts as Opts, CriuPageServerInfo as PsInfo,
        CriuReq as Req, CriuReqType as ReqType, CriuResp as Resp, ExtMountMap as ExtMnt, InheritFd,
        StatsEntry,
    };
}

/// The oldest CRIU the driver accepts (major, minor): 3.17 fails on kernels >= 6.13 and 4.1
/// cannot dump inet sockets on kernels >= 6.16.
pub const MIN_VERSION: (i32, i32) = (4, 2);

/// The environment variable naming the CRIU binary to use.
pub const ENV_CRIU: &str = "REEL_CRIU";

/// How long the version check of [`Criu::locate`] / [`Criu::with_binary`] may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A CRIU version, as answered to VERSION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major number.
    pub major: i32,
    /// Minor number.
    pub minor: i32,
    /// Sublevel, when CRIU has one (the `1` of 4.2.1).
    pub sublevel: Option<i32>,
    /// Extra number, when CRIU has one.
    pub extra: Option<i32>,
    /// The git id CRIU was built from, when known.
    pub gitid: Option<String>,
    /// The release name, when known.
    pub name: Option<String>,
}

impl Version {
    /// True when this version is at least `major.minor`.
    pub fn at_least(&self, major: i32, minor: i32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(s) = self.sublevel {
            write!(f, ".{s}")?;
        }
        if let Some(e) = self.extra {
            write!(f, ".{e}")?;
        }
        if let Some(g) = &self.gitid {
            write!(f, " ({g})")?;
        }
        Ok(())
    }
}

/// What CRIU and the kernel support, as answered to FEATURE_CHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Memory dirty tracking (soft-dirty): needed by pre-dump and `track_mem`.
    pub mem_track: bool,
    /// Lazy pages (userfaultfd).
    pub lazy_pages: bool,
    /// The pidfd store (`pidfd_getfd` and `pidfd_open`).
    pub pidfd_store: bool,
}

/// A CRIU binary, located and checked to be >= 4.2. Cheap to clone; every call starts its
/// own `criu swrk`, so a `Criu` can be used from several threads at once.
#[derive(Debug, Clone)]
pub struct Criu {
    binary: PathBuf,
    version: Version,
    timeout: Option<Duration>,
}

impl Criu {
    /// Finds CRIU: `$REEL_CRIU`, else `<criu_sys::CRIU_PREFIX>/sbin/criu` (the pinned CRIU),
    /// else `criu` on `PATH`; then checks its version. When `$REEL_CRIU` is set, it is the
    /// only candidate.
    pub fn locate() -> Result<Criu, CriuError> {
        Criu::with_binary(Criu::find()?)
    }

    /// The binary [`Criu::locate`] would use, without running it.
    pub fn find() -> Result<PathBuf, CriuError> {
        if let Some(p) = std::env::var_os(ENV_CRIU).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let mut searched = Vec::new();
        let pinned = Path::new(criu_sys::CRIU_PREFIX).join("sbin/criu");
        if pinned.is_file() {
            return Ok(pinned);
        }
        searched.push(pinned);
        if let Some(found) = crate::host::which("criu") {
            return Ok(found);
        }
        searched.push(PathBuf::from("criu (on PATH)"));
        Err(CriuError::BinaryNotFound { searched })
    }

    /// Uses this CRIU binary; checks it exists, is executable and answers VERSION with
    /// >= 4.2. (A binary that does not speak CRIU's RPC fails this check.)
    pub fn with_binary(path: impl AsRef<Path>) -> Result<Criu, CriuError> {
        let path = path.as_ref().to_path_buf();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CriuError::BinaryNotFound {
                    searched: vec![path],
                })
            }
            Err(e) => {
                return Err(CriuError::Spawn { path, source: e });
            }
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(CriuError::NotExecutable { path });
        }
        let mut criu = Criu {
            binary: path,
            version: Version {
                major: 0,
                minor: 0,
                sublevel: None,
                extra: None,
                gitid: None,
                name: None,
            },
            timeout: None,
        };
        let version = match criu.query_version(Some(VERSION_TIMEOUT)) {
            Ok(v) => v,
            // CRIU before 3.0 answers VERSION with "Invalid req" (or not at all).
            Err(CriuError::RequestFailed { .. }) | Err(CriuError::Protocol { .. }) => {
                return Err(CriuError::VersionTooOld {
                    path: criu.binary,
                    found: "unknown (it cannot answer the VERSION request)".into(),
                    required: MIN_VERSION,
                })
            }
            Err(e) => return Err(e),
        };
        if !version.at_least(MIN_VERSION.0, MIN_VERSION.1) {
            tracing::warn!(binary = %criu.binary.display(), %version, "CRIU is too old");
            return Err(CriuError::VersionTooOld {
                path: criu.binary,
                found: version.to_string(),
                required: MIN_VERSION,
            });
        }
        criu.version = version;
        Ok(criu)
    }

    /// Sets the default timeout of every call (none by default): when CRIU has not answered
    /// in time it is killed and reaped, and the call fails with [`CriuError::Timeout`].
    /// [`Options::call_timeout`] overrides it for one call.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Criu {
        self.timeout = timeout;
        self
    }

    /// The binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The version found when this handle was made.
    pub fn known_version(&self) -> &Version {
        &self.version
    }

    /// Asks CRIU for its version (VERSION request).
    pub fn version(&self) -> Result<Version, CriuError> {
        self.query_version(self.timeout)
    }

    fn query_version(&self, timeout: Option<Duration>) -> Result<Version, CriuError> {
        let mut req = pb::Req::default();
        req.set_type(pb::ReqType::Version);
        let (resp, _) = self.simple(Request::Version, &req, timeout)?;
        let v = resp.version.as_ref().ok_or_else(|| {
            CriuError::protocol(
                Request::Version,
                "reading the answer",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "VERSION answer without a version",
                ),
                Vec::new(),
            )
        })?;
        Ok(Version {
            major: v.major_number,
            minor: v.minor_number,
            sublevel: v.sublevel,
            extra: v.extra,
            gitid: v.gitid.clone(),
            name: v.name.clone(),
        })
    }

    /// Runs CRIU's kernel checks (CHECK request).
    pub fn check(&self) -> Result<(), CriuError> {
        let mut req = pb::Req::default();
        req.set_type(pb::ReqType::Check);
        self.simple(Request::Check, &req, self.timeout).map(|_| ())
    }

    /// Asks which optional features CRIU and the kernel support (FEATURE_CHECK request).
    pub fn feature_check(&self) -> Result<Features, CriuError> {
        let mut req = pb::Req::default();
        req.set_type(pb::ReqType::FeatureCheck);
        // CRIU dereferences `features` unconditionally: it must be there.
        req.features = Some(pb::Features {
            mem_track: Some(true),
            lazy_pages: Some(true),
            pidfd_store: Some(true),
        });
        let (resp, _) = self.simple(Request::FeatureCheck, &req, self.timeout)?;
        let f = resp.features.unwrap_or_default();
        Ok(Features {
            mem_track: f.mem_track(),
            lazy_pages: f.lazy_pages(),
            pidfd_store: f.pidfd_store(),
        })
    }

    /// Dumps the tree rooted at [`Options::pid`] and returns CRIU's statistics
    /// (`stats-dump` in the work dir; `None` fields when it is unreadable). Without [`Options::leave_running`] the tree is killed.
    pub fn dump(&self, opts: &Options) -> Result<DumpStats, CriuError> {
        self.dump_inner(opts, None)
    }

    /// [`Criu::dump`], with each notification handed to `notify`; an `Err` (or a panic) fails
    /// the step and the dump with [`CriuError::NotifyFailed`].
    pub fn dump_with<F>(&self, opts: &Options, mut notify: F) -> Result<DumpStats, CriuError>
    where
        F: FnMut(&mut Notification) -> Result<(), String>,
    {
        self.dump_inner(opts, Some(&mut notify))
    }

    fn dump_inner(
        &self,
        opts: &Options,
        notify: Option<&mut NotifyFn<'_>>,
    ) -> Result<DumpStats, CriuError> {
        let p = opts.prepare(Request::Dump, notify.is_some())?;
        let mut s = Session::spawn(&self.binary, &p.pass_fds)?;
        let stats = exchange_dump(
            &mut s,
            Request::Dump,
            pb::ReqType::Dump,
            &p,
            self.deadline(&p),
            notify,
        )?;
        s.finish();
        Ok(stats)
    }

    /// Starts an iterative dump with a first pre-dump (the tree keeps running). Continue
    /// with [`PreDump::pre_dump`] and finish with [`PreDump::dump`], all on one CRIU.
    /// Needs memory tracking ([`Features::mem_track`]); options that pass descriptors to CRIU
    /// are only honoured here, not in later iterations.
    pub fn pre_dump(&self, opts: &Options) -> Result<PreDump, CriuError> {
        let p = opts.prepare(Request::PreDump, false)?;
        let mut session = Session::spawn(&self.binary, &p.pass_fds)?;
        let stats = exchange_dump(
            &mut session,
            Request::PreDump,
            pb::ReqType::PreDump,
            &p,
            self.deadline(&p),
            None,
        )?;
        Ok(PreDump {
            session,
            timeout: self.timeout,
            last: stats,
        })
    }

    /// Restores a tree and returns the pid of its root. The restored tree is detached from
    /// CRIU (with [`Options::rst_sibling`] it becomes a child of this process instead).
    pub fn restore(&self, opts: &Options) -> Result<i32, CriuError> {
        self.restore_inner(opts, None)
    }

    /// [`Criu::restore`], with each notification handed to `notify`.
    pub fn restore_with<F>(&self, opts: &Options, mut notify: F) -> Result<i32, CriuError>
    where
        F: FnMut(&mut Notification) -> Result<(), String>,
    {
        self.restore_inner(opts, Some(&mut notify))
    }

    fn restore_inner(
        &self,
        opts: &Options,
        notify: Option<&mut NotifyFn<'_>>,
    ) -> Result<i32, CriuError> {
        let request = Request::Restore;
        let p = opts.prepare(request, notify.is_some())?;
        let mut s = Session::spawn(&self.binary, &p.pass_fds)?;
        s.set_log(log_of(&p));
        let mut req = pb::Req::default();
        req.set_type(pb::ReqType::Restore);
        req.opts = Some(p.opts.clone());
        let answer = s.call(request, &req, self.deadline(&p), notify)?;
        let resp = check_answer(&mut s, request, pb::ReqType::Restore, answer)?;
        let pid = resp.restore.map(|r| r.pid).filter(|pid| *pid > 0);
        s.finish();
        pid.ok_or_else(|| {
            CriuError::protocol(
                request,
                "reading the answer",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "RESTORE answer without a pid",
                ),
                Vec::new(),
            )
        })
    }

    /// Starts a page server that writes the pages it receives into [`Options::images_dir`]
    /// and listens on [`Options::page_server`] (port 0, or no address, picks a free port on
    /// all addresses). It serves one dump and exits; [`PageServer::wait`] reaps it,
    /// [`PageServer::stop`] (or dropping it) kills and reaps it.
    pub fn page_server(&self, opts: &Options) -> Result<PageServer, CriuError> {
        let request = Request::PageServer;
        let p = opts.prepare(request, false)?;
        let mut session = Session::spawn(&self.binary, &p.pass_fds)?;
        session.set_log(log_of(&p));
        let mut req = pb::Req::default();
        // PAGE_SERVER_CHLD keeps the server a child of this `criu swrk` (PAGE_SERVER would
        // daemonize it out of reach); `keep_open` lets WAIT_PID reap it later.
        req.set_type(pb::ReqType::PageServerChld);
        req.keep_open = Some(true);
        req.opts = Some(p.opts.clone());
        let answer = session.call(request, &req, self.deadline(&p), None)?;
        let resp = check_answer(&mut session, request, pb::ReqType::PageServer, answer)?;
        let ps = resp.ps.as_ref();
        let pid = ps.and_then(|ps| ps.pid);
        let port = ps.and_then(|ps| ps.port);
        let (Some(pid), Some(port)) = (pid, port.and_then(|p| u16::try_from(p).ok())) else {
            session.abort();
            return Err(CriuError::protocol(
                request,
                "reading the answer",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "PAGE_SERVER answer without pid and port",
                ),
                Vec::new(),
            ));
        };
        tracing::debug!(pid, port, "CRIU page server started");
        Ok(PageServer {
            session: Some(session),
            pid,
            port,
            timeout: self.timeout,
            _dirs: p,
        })
    }

    fn deadline(&self, p: &Prepared) -> Option<(Instant, Duration)> {
        deadline(p.call_timeout.or(self.timeout))
    }

    /// One request on a fresh session, no notifications; fails unless `success`.
    fn simple(
        &self,
        request: Request,
        req: &pb::Req,
        timeout: Option<Duration>,
    ) -> Result<(pb::Resp, Option<ExitInfo>), CriuError> {
        let mut s = Session::spawn(&self.binary, &[])?;
        let answer = s.call(request, req, deadline(timeout), None)?;
        let resp = check_answer(&mut s, request, req.r#type(), answer)?;
        let exit = s.finish();
        Ok((resp, exit))
    }
}

/// An iterative dump in progress: one `criu swrk` that has taken at least one pre-dump.
/// Dropping it without [`PreDump::dump`] kills and reaps CRIU; the tree keeps running.
pub struct PreDump {
    session: Session,
    timeout: Option<Duration>,
    last: DumpStats,
}

impl fmt::Debug for PreDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreDump")
            .field("criu_pid", &self.session.pid().as_raw())
            .finish()
    }
}

impl PreDump {
    /// The statistics of the last pre-dump.
    pub fn stats(&self) -> &DumpStats {
        &self.last
    }

    /// Takes another pre-dump (usually into a new images dir with [`Options::parent_img`]
    /// pointing at the previous one).
    pub fn pre_dump(&mut self, opts: &Options) -> Result<&DumpStats, CriuError> {
        let p = self.prepare(opts, Request::PreDump)?;
        let d = deadline(p.call_timeout.or(self.timeout));
        self.last = exchange_dump(
            &mut self.session,
            Request::PreDump,
            pb::ReqType::PreDump,
            &p,
            d,
            None,
        )?;
        Ok(&self.last)
    }

    /// Takes the final dump.
    pub fn dump(self, opts: &Options) -> Result<DumpStats, CriuError> {
        self.dump_inner(opts, None)
    }

    /// Takes the final dump, with notifications.
    pub fn dump_with<F>(self, opts: &Options, mut notify: F) -> Result<DumpStats, CriuError>
    where
        F: FnMut(&mut Notification) -> Result<(), String>,
    {
        self.dump_inner(opts, Some(&mut notify))
    }

    fn dump_inner(
        mut self,
        opts: &Options,
        notify: Option<&mut NotifyFn<'_>>,
    ) -> Result<DumpStats, CriuError> {
        let p = self.prepare(opts, Request::Dump)?;
        let d = deadline(p.call_timeout.or(self.timeout));
        let stats = exchange_dump(
            &mut self.session,
            Request::Dump,
            pb::ReqType::Dump,
            &p,
            d,
            notify,
        )?;
        self.session.finish();
        Ok(stats)
    }

    fn prepare(&self, opts: &Options, request: Request) -> Result<Prepared, CriuError> {
        if opts.passes_fds() {
            return Err(CriuError::invalid(
                request,
                "descriptors for CRIU (inherit_fd, page_server_fd) can only be given to the first pre-dump",
            ));
        }
        opts.prepare(request, false)
    }
}

/// A page server started by [`Criu::page_server`], a child of its own `criu swrk`.
pub struct PageServer {
    session: Option<Session>,
    pid: i32,
    port: u16,
    timeout: Option<Duration>,
    /// Keeps the images and work dir open while the server runs.
    _dirs: Prepared,
}

impl fmt::Debug for PageServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageServer")
            .field("pid", &self.pid)
            .field("port", &self.port)
            .finish()
    }
}

impl PageServer {
    /// The page server's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the page server to exit (it exits after serving one dump, once all pages
    /// are written) and reaps it; `timeout` (else the handle's default) bounds the wait, after
    /// which it is killed. Returns how it ended.
    pub fn wait(mut self, timeout: Option<Duration>) -> Result<ExitInfo, CriuError> {
        let t = timeout.or(self.timeout);
        self.reap(t)
    }

    /// Kills the page server and reaps it.
    pub fn stop(mut self) -> Result<ExitInfo, CriuError> {
        self.kill_server();
        self.reap(Some(Duration::from_secs(10)))
    }

    fn kill_server(&mut self) {
        if let Some(s) = self.session.as_mut() {
            // The server is CRIU's unreaped child while CRIU lives, so its pid cannot have
            // been reused.
            if s.alive() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn reap(&mut self, timeout: Option<Duration>) -> Result<ExitInfo, CriuError> {
        let Some(mut s) = self.session.take() else {
            return Err(CriuError::invalid(
                Request::WaitPid,
                "the page server was already reaped",
            ));
        };
        let mut req = pb::Req::default();
        req.set_type(pb::ReqType::WaitPid);
        req.pid = Some(u32::try_from(self.pid).unwrap_or(0));
        let answer = s.call(Request::WaitPid, &req, deadline(timeout), None)?;
        let resp = check_answer(&mut s, Request::WaitPid, pb::ReqType::WaitPid, answer)?;
        s.finish();
        Ok(ExitInfo::from_wait_status(resp.status()))
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        if self.session.is_some() {
            self.kill_server();
            if let Err(e) = self.reap(Some(Duration::from_secs(10))) {
                tracing::warn!(pid = self.pid, error = %e, "could not reap the CRIU page server");
            }
        }
    }
}

fn deadline(timeout: Option<Duration>) -> Option<(Instant, Duration)> {
    timeout.map(|t| (Instant::now() + t, t))
}

fn log_of(p: &Prepared) -> Option<LogFile> {
    let dir = p.work_dir()?;
    let name = p.log_name.as_deref()?;
    Some(LogFile {
        path: dir.file(name),
    })
}

/// A DUMP or PRE_DUMP on `s`, then its statistics.
fn exchange_dump(
    s: &mut Session,
    request: Request,
    ty: pb::ReqType,
    p: &Prepared,
    deadline: Option<(Instant, Duration)>,
    notify: Option<&mut NotifyFn<'_>>,
) -> Result<DumpStats, CriuError> {
    s.set_log(log_of(p));
    let mut req = pb::Req::default();
    req.set_type(ty);
    req.opts = Some(p.opts.clone());
    let answer = s.call(request, &req, deadline, notify)?;
    check_answer(s, request, ty, answer)?;
    // The dump stands even when its statistics cannot be read.
    let Some(dir) = p.work_dir() else {
        return Ok(DumpStats::default());
    };
    let path = dir.file("stats-dump");
    match stats::read_dump_stats_as(request, &path, &dir.display_file("stats-dump")) {
        Ok(stats) => Ok(stats),
        Err(e) => {
            tracing::warn!(error = %e, "CRIU succeeded but its statistics are unreadable");
            Ok(DumpStats::default())
        }
    }
}

/// Maps a final answer: success of the expected type, or the right error.
fn check_answer(
    s: &mut Session,
    request: Request,
    expected: pb::ReqType,
    answer: session::Answer,
) -> Result<pb::Resp, CriuError> {
    let resp = answer.resp;
    if let Some((script, message)) = answer.notify_failure {
        let log = s.log_tail();
        s.finish();
        return Err(CriuError::notify_failed(request, script, message, log));
    }
    if !resp.success {
        let log = s.log_tail();
        s.finish();
        return Err(CriuError::request_failed(
            request,
            resp.cr_errno,
            resp.cr_errmsg.clone(),
            log,
        ));
    }
    if resp.r#type() != expected {
        let log = s.log_tail();
        s.abort();
        return Err(CriuError::protocol(
            request,
            "reading the answer",
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "expected a {} answer, got {}",
                    expected.as_str_name(),
                    resp.r#type().as_str_name()
                ),
            ),
            log,
        ));
    }
    Ok(resp)
}
