//! One `criu swrk` process and its RPC socket.
//!
//! * The socketpair is `SOCK_SEQPACKET` and close-on-exec; CRIU's end becomes fd 3 of the
//!   child (and the descriptors CRIU must hold become fds 4, 5, ...). One protobuf message per
//!   datagram; receives are sized with `MSG_PEEK | MSG_TRUNC`.
//! * CRIU runs in its own process group, with stdout and stderr in an anonymous memory file
//!   (read back on failure: CRIU prints there until it has opened its log).
//! * Waiting for an answer polls the socket and a pidfd of CRIU, so its death is seen even
//!   when one of its children (a page server) still holds the socket, and the call timeout is
//!   honoured. A timeout kills CRIU's process group and reaps CRIU.
//! * Dropping a session never leaves CRIU behind: a session whose request is still in flight
//!   is killed; a finished one gets a short grace period to exit, then is killed; CRIU is
//!   always reaped.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::socket::{
    recv, recvmsg, sendmsg, shutdown, socketpair, AddressFamily, ControlMessageOwned, MsgFlags,
    Shutdown, SockFlag, SockType,
};
use nix::unistd::Pid;
use prost::Message;

use super::error::{error_lines, CriuError, ExitInfo, Request, LOG_LINES};
use super::notify::{self, Notification, NotifyFn};
use super::pb;

/// How long a finished CRIU gets to exit on its own before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Where the session's CRIU writes its log for the request in flight.
#[derive(Debug, Clone)]
pub(crate) struct LogFile {
    /// Path that reaches the log from this process (through `/proc/self/fd`).
    pub(crate) path: PathBuf,
}

/// A running `criu swrk`.
pub(crate) struct Session {
    child: Child,
    pid: Pid,
    sock: OwnedFd,
    pidfd: Option<OwnedFd>,
    output: File,
    log: Option<LogFile>,
    /// True while a request has been sent and its final answer not received.
    in_flight: bool,
    reaped: Option<ExitInfo>,
}

/// The final answer of a request, and a notification failure seen on the way.
pub(crate) struct Answer {
    pub(crate) resp: pb::Resp,
    pub(crate) notify_failure: Option<(String, String)>,
}

impl Session {
    /// Starts `binary swrk 3`, passing `pass_fds` as fds 4, 5, ...
    pub(crate) fn spawn(binary: &Path, pass_fds: &[Arc<OwnedFd>]) -> Result<Session, CriuError> {
        let spawn_err = |source: std::io::Error| CriuError::Spawn {
            path: binary.to_path_buf(),
            source,
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| spawn_err(e.into()))?;
        let output = File::from(
            nix::sys::memfd::memfd_create(
                c"criu-output",
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
            )
            .map_err(|e| spawn_err(e.into()))?,
        );
        let stdout = output.try_clone().map_err(spawn_err)?;
        let stderr = output.try_clone().map_err(spawn_err)?;

        // (source fd in this process, fd number in CRIU)
        let mut map: Vec<(RawFd, RawFd)> = vec![(theirs.as_raw_fd(), 3)];
        for (i, fd) in pass_fds.iter().enumerate() {
            map.push((fd.as_raw_fd(), super::options::FIRST_PASSED_FD + i as RawFd));
        }
        let first_free = 3 + map.len() as RawFd;
        // Allocated before fork: the hook below must not allocate.
        let mut parked: Vec<RawFd> = vec![-1; map.len()];

        let mut cmd = Command::new(binary);
        cmd.arg("swrk")
            .arg("3")
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        // (std's own exec-error pipe may sit on a target number and be replaced: then a
        // failed exec shows as CRIU dying at once instead of a spawn error; the binary was
        // checked to be an executable file before.)
        // SAFETY: the hook runs in the forked child before exec and only makes
        // async-signal-safe system calls (fcntl, dup2, setpgid, close_range) on descriptors
        // that are open in the parent (`theirs`, `pass_fds`, which outlive `spawn`), writing
        // into memory allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // Park every source above the target range first, so that placing one cannot
                // clobber another source that happens to sit on a target number.
                for (i, (src, _)) in map.iter().enumerate() {
                    let fd = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, first_free);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    parked[i] = fd;
                }
                // dup2 clears close-on-exec on the target: these are the fds CRIU keeps.
                for (i, (_, dst)) in map.iter().enumerate() {
                    if libc::dup2(parked[i], *dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Everything else this process had open is closed by exec.
                libc::syscall(
                    libc::SYS_close_range,
                    first_free as libc::c_uint,
                    libc::c_uint::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                // Own process group: CRIU and its workers can be killed together.
                if libc::setpgid(0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        drop(theirs);
        let pid = Pid::from_raw(child.id() as i32);
        let pidfd = pidfd_open(pid);
        tracing::debug!(pid = pid.as_raw(), binary = %binary.display(), "started criu swrk");
        Ok(Session {
            child,
            pid,
            sock: ours,
            pidfd,
            output,
            log: None,
            in_flight: false,
            reaped: None,
        })
    }

    /// CRIU's pid.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Sets where CRIU's log for the next request is.
    pub(crate) fn set_log(&mut self, log: Option<LogFile>) {
        self.log = log;
    }

    /// The last error lines of CRIU's log file and of its output.
    pub(crate) fn log_tail(&mut self) -> Vec<String> {
        let mut lines = error_lines(&tail(&mut self.output));
        if let Some(log) = &self.log {
            if let Ok(mut f) = File::open(&log.path) {
                lines.extend(error_lines(&tail(&mut f)));
            }
        }
        if lines.len() > LOG_LINES {
            lines.drain(..lines.len() - LOG_LINES);
        }
        lines
    }

    /// Sends one request and returns its final answer, handing notifications to `handler`
    /// (or answering them with success when there is none).
    pub(crate) fn call(
        &mut self,
        request: Request,
        req: &pb::Req,
        deadline: Option<(Instant, Duration)>,
        mut handler: Option<&mut NotifyFn<'_>>,
    ) -> Result<Answer, CriuError> {
        self.in_flight = true;
        self.send(request, req)?;
        let mut notify_failure = None;
        loop {
            let (resp, fds) = self.recv(request, deadline)?;
            if resp.r#type() != pb::ReqType::Notify {
                self.in_flight = false;
                return Ok(Answer {
                    resp,
                    notify_failure,
                });
            }
            let notify = resp.notify.unwrap_or_default();
            let script = notify.script().to_string();
            let pid = notify.pid;
            let mut n = Notification::new(script.clone(), pid, fds.into_iter().next());
            tracing::debug!(request = %request, script = %script, "CRIU notification");
            let outcome = match handler.as_deref_mut() {
                Some(h) => notify::run(h, &mut n),
                None => Ok(()),
            };
            if let Some((at, after)) = deadline {
                if Instant::now() >= at {
                    // Do not let CRIU go on with a step the caller took too long over.
                    return Err(self.timed_out(request, after));
                }
            }
            let answer = notify_answer(outcome.is_ok(), n.externals());
            drop(n);
            self.send(request, &answer)?;
            if let Err(message) = outcome {
                notify_failure.get_or_insert((script, message));
            }
        }
    }

    fn send(&mut self, request: Request, msg: &pb::Req) -> Result<(), CriuError> {
        let bytes = msg.encode_to_vec();
        loop {
            let iov = [IoSlice::new(&bytes)];
            match sendmsg::<()>(
                self.sock.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(self.lost(request, "sending", e.into())),
            }
        }
    }

    fn recv(
        &mut self,
        request: Request,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<(pb::Resp, Vec<OwnedFd>), CriuError> {
        loop {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some((at, after)) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self.timed_out(request, after));
                    }
                    // Round up so the poll does not wake just before the deadline.
                    let ms = left.as_millis().saturating_add(1);
                    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let (sock_ready, criu_exited) = {
                let mut fds = vec![PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
                if let Some(p) = &self.pidfd {
                    fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(self.lost(request, "waiting for an answer", e.into())),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), fds.get(1).is_some_and(ready))
            };
            if !sock_ready && !criu_exited {
                continue; // timeout: checked at the top of the loop
            }
            // Size the datagram without consuming it.
            let len = match recv(
                self.sock.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => return Err(self.lost(request, "receiving", eof())),
                Ok(n) => n,
                Err(Errno::EAGAIN) if criu_exited => {
                    return Err(self.lost(request, "waiting for an answer", eof()))
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(self.lost(request, "receiving", e.into())),
            };
            let mut buf = vec![0u8; len];
            let mut cmsg = nix::cmsg_space!([RawFd; 4]);
            let (got, fds, truncated) = {
                let mut iov = [IoSliceMut::new(&mut buf)];
                match recvmsg::<()>(
                    self.sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(msg) => {
                        let mut fds = Vec::new();
                        if let Ok(cmsgs) = msg.cmsgs() {
                            for c in cmsgs {
                                if let ControlMessageOwned::ScmRights(raw) = c {
                                    // SAFETY: SCM_RIGHTS gave this process new descriptors
                                    // that nothing else owns.
                                    fds.extend(
                                        raw.into_iter()
                                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                                    );
                                }
                            }
                        }
                        (msg.bytes, fds, msg.flags.contains(MsgFlags::MSG_TRUNC))
                    }
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
                    Err(e) => return Err(self.lost(request, "receiving", e.into())),
                }
            };
            if got == 0 {
                return Err(self.lost(request, "receiving", eof()));
            }
            if truncated {
                let log = self.log_tail();
                self.abort();
                return Err(CriuError::protocol(
                    request,
                    "receiving",
                    invalid("truncated datagram"),
                    log,
                ));
            }
            return match pb::Resp::decode(&buf[..got]) {
                Ok(resp) => Ok((resp, fds)),
                Err(e) => {
                    let log = self.log_tail();
                    self.abort();
                    Err(CriuError::protocol(
                        request,
                        "decoding the answer",
                        invalid(&e.to_string()),
                        log,
                    ))
                }
            };
        }
    }

    /// The socket failed or closed: if CRIU is gone (or goes within a moment), it died;
    /// otherwise it is a protocol error. Either way CRIU is killed and reaped.
    fn lost(
        &mut self,
        request: Request,
        context: &'static str,
        source: std::io::Error,
    ) -> CriuError {
        let exited = self.exited_within(Duration::from_secs(1));
        // Kill the group before reaping (the group id cannot be reused while CRIU is
        // unreaped): its workers and a page server go with it.
        self.abort();
        let log = self.log_tail();
        match (exited, self.reaped) {
            (true, Some(status)) => CriuError::died(request, status, log),
            _ => CriuError::protocol(request, context, source, log),
        }
    }

    fn timed_out(&mut self, request: Request, after: Duration) -> CriuError {
        self.abort();
        let log = self.log_tail();
        CriuError::timeout(request, after, log)
    }

    /// Kills CRIU's process group and reaps CRIU.
    pub(crate) fn abort(&mut self) {
        if self.reaped.is_none() {
            let _ = killpg(self.pid, Signal::SIGKILL);
            let _ = kill(self.pid, Signal::SIGKILL);
            self.reap();
        }
        self.in_flight = false;
    }

    /// Waits up to `grace` for CRIU to exit, without reaping it (when there is a pidfd).
    fn exited_within(&mut self, grace: Duration) -> bool {
        if self.reaped.is_some() {
            return true;
        }
        let end = Instant::now() + grace;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match &self.pidfd {
                Some(p) => {
                    let mut fds = [PollFd::new(p.as_fd(), PollFlags::POLLIN)];
                    let ms = left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1;
                    match poll(
                        &mut fds,
                        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                    ) {
                        Ok(n) if n > 0 => return true,
                        Err(Errno::EINTR) => continue,
                        Ok(_) => return false,
                        Err(_) => return matches!(self.child.try_wait(), Ok(Some(_))),
                    }
                }
                None => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        self.reaped = Some(ExitInfo::from_std(status));
                        return true;
                    }
                    if left.is_zero() {
                        return false;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                }
            }
        }
    }

    fn reap(&mut self) -> Option<ExitInfo> {
        if self.reaped.is_none() {
            if let Ok(status) = self.child.wait() {
                self.reaped = Some(ExitInfo::from_std(status));
            }
        }
        self.reaped
    }

    /// Ends a session whose last request was answered: CRIU gets a moment to exit, then is
    /// killed; it is reaped either way. Returns how it ended.
    pub(crate) fn finish(&mut self) -> Option<ExitInfo> {
        // A CRIU waiting for another request (keep_open) sees the end of the connection.
        let _ = shutdown(self.sock.as_raw_fd(), Shutdown::Both);
        if self.reaped.is_none() && !self.exited_within(EXIT_GRACE) {
            tracing::debug!(
                pid = self.pid.as_raw(),
                "CRIU did not exit after its answer; killing it"
            );
            let _ = kill(self.pid, Signal::SIGKILL);
        }
        self.reap()
    }

    /// True when CRIU has not exited.
    pub(crate) fn alive(&mut self) -> bool {
        if self.reaped.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.reaped = Some(ExitInfo::from_std(status));
                false
            }
            Err(_) => false,
        }
    }
}

/// The answer to a notification: its outcome, and the externals the callback added.
pub(crate) fn notify_answer(success: bool, externals: &[String]) -> pb::Req {
    let mut answer = pb::Req::default();
    answer.set_type(pb::ReqType::Notify);
    answer.notify_success = Some(success);
    if success && !externals.is_empty() {
        answer.opts = Some(pb::Opts {
            images_dir_fd: -1,
            external: externals.to_vec(),
            ..pb::Opts::default()
        });
    }
    answer
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.in_flight {
            self.abort();
        } else {
            self.finish();
        }
    }
}

/// How much of the end of a log is searched for error lines.
const LOG_TAIL_BYTES: u64 = 1 << 20;

/// The last [`LOG_TAIL_BYTES`] of a file, as text.
fn tail(f: &mut File) -> String {
    let mut bytes = Vec::new();
    let len = f.seek(SeekFrom::End(0)).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
        .is_ok()
    {
        let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn eof() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "CRIU closed the connection",
    )
}

fn invalid(m: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string())
}

/// A pidfd of CRIU (readable once it exits), when the kernel has them.
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
