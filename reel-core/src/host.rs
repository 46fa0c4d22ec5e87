//! What reel reads from the host kernel: the one `/proc` and mountinfo reader.
//!
//! Process files (`stat`, `status`, `statm`, `/proc/stat`) are parsed by the `procfs` crate;
//! mountinfo by [`parse_mountinfo`], which undoes the kernel's octal escapes byte by byte
//! (`procfs` leaves them in). Every function takes the `/proc` to read (`/proc` on a host, a
//! copy in tests) and answers `None` for a process that is gone or a file that cannot be
//! parsed: processes come and go while reel looks.
//!
//! Also the one lookup of programs on `PATH` ([`which`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procfs::FromRead;

/// The default `/proc`.
pub const PROC: &str = "/proc";

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// The fields of `/proc/<pid>/stat` reel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z`, `T`, `t`, `X`, `I`...
    pub state: char,
    pub ppid: i32,
    /// Start time after boot, in clock ticks (field 22).
    pub starttime: u64,
}

impl ProcStat {
    /// A zombie or dead task is not a running process.
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn pid_dir(proc_root: &Path, pid: i32) -> Option<PathBuf> {
    (pid > 0).then(|| proc_root.join(pid.to_string()))
}

/// `/proc/<pid>/stat`.
pub fn stat(proc_root: &Path, pid: i32) -> Option<ProcStat> {
    let s = procfs::process::Stat::from_file(pid_dir(proc_root, pid)?.join("stat")).ok()?;
    Some(ProcStat {
        state: s.state,
        ppid: s.ppid,
        starttime: s.starttime,
    })
}

/// The fields of `/proc/<pid>/status` reel uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    /// The pid of the process tracing this one (0: none).
    pub tracer_pid: i32,
    /// Real, effective, saved and file-system uids.
    pub uids: [u32; 4],
    /// Real, effective, saved and file-system gids.
    pub gids: [u32; 4],
}

/// `/proc/<pid>/status` (also `/proc/<pid>/task/<tid>/status` through `pid_or_task`).
pub fn status(proc_root: &Path, pid: i32) -> Option<ProcStatus> {
    let s = procfs::process::Status::from_file(pid_dir(proc_root, pid)?.join("status")).ok()?;
    Some(ProcStatus {
        tracer_pid: s.tracerpid,
        uids: [s.ruid, s.euid, s.suid, s.fuid],
        gids: [s.rgid, s.egid, s.sgid, s.fgid],
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clk_tck() -> u64 {
    procfs::ticks_per_second()
}

/// The boot time (`btime` of `/proc/stat`), seconds since the epoch.
pub fn boot_time(proc_root: &Path) -> Option<u64> {
    <procfs::KernelStats as procfs::FromReadSI>::from_file(
        proc_root.join("stat"),
        procfs::current_system_info(),
    )
    .ok()
    .map(|k| k.btime)
}

/// When a process started, as wall-clock time (precision: one clock tick).
pub fn process_start(proc_root: &Path, stat: &ProcStat) -> Option<SystemTime> {
    let boot = boot_time(proc_root)?;
    let tck = clk_tck().max(1);
    let since_boot = Duration::from_secs(stat.starttime / tck)
        + Duration::from_nanos((stat.starttime % tck) * 1_000_000_000 / tck);
    Some(UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// Resident memory of one process, bytes (`/proc/<pid>/statm`).
pub fn rss_bytes(proc_root: &Path, pid: i32) -> Option<u64> {
    let m = procfs::process::StatM::from_file(pid_dir(proc_root, pid)?.join("statm")).ok()?;
    Some(m.resident * procfs::page_size())
}

/// Every process with its parent: `(pid, ppid)`.
pub fn processes(proc_root: &Path) -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        Some((pid, stat(proc_root, pid)?.ppid))
    })
    .collect()
}

/// The children of `pid` (scanning `/proc`: `/proc/<pid>/task/<tid>/children` needs
/// CONFIG_PROC_CHILDREN).
pub fn children(proc_root: &Path, pid: i32) -> Vec<i32> {
    processes(proc_root)
        .into_iter()
        .filter(|(_, pp)| *pp == pid)
        .map(|(p, _)| p)
        .collect()
}

/// `pid` and all its descendants.
pub fn descendants(proc_root: &Path, pid: i32) -> Vec<i32> {
    let all = processes(proc_root);
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// The lines of `/proc/<pid>/cgroup`: controllers (`""` for v2) to path.
pub fn cgroups(proc_root: &Path, pid: i32) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(pid_dir(proc_root, pid)?.join("cgroup")).ok()?;
    Some(parse_cgroups(&text))
}

/// Parses the text of a `/proc/<pid>/cgroup` file: controllers (`""` for v2) to path.
pub fn parse_cgroups(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// The open file descriptors of `pid` and what they point to (`readlink` of
/// `/proc/<pid>/fd/<n>`: a path, `socket:[<inode>]`, `pipe:[<inode>]`, `/memfd:<name>
/// (deleted)`...), sorted by number. Empty when the process is gone.
pub fn fds(proc_root: &Path, pid: i32) -> Vec<(i32, PathBuf)> {
    let Some(dir) = pid_dir(proc_root, pid).map(|d| d.join("fd")) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(i32, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(e.path()).ok()?))
        })
        .collect();
    out.sort();
    out
}

/// The inode of a `socket:[<inode>]` fd target.
pub fn socket_inode(target: &Path) -> Option<u32> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The file an fd points to, for open-but-deleted regular files: the kernel appends
/// ` (deleted)` to its path. Memfds (`/memfd:<name> (deleted)`) are not files of a file
/// system and are not returned.
pub fn deleted_file(target: &Path) -> Option<&str> {
    let t = target.to_str()?;
    let path = t.strip_suffix(" (deleted)")?;
    (path.starts_with('/') && !path.starts_with("/memfd:")).then_some(path)
}

// ---------------------------------------------------------------------------------------------
// Unix sockets (sock_diag)
// ---------------------------------------------------------------------------------------------

/// A unix socket as the kernel's sock_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocket {
    pub inode: u32,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), `SOCK_SEQPACKET` (5).
    pub kind: u8,
    /// `TCP_ESTABLISHED` (1), `TCP_LISTEN` (10), ...
    pub state: u8,
    /// The bound name: a path, or `@name` for the abstract namespace.
    pub name: Option<String>,
    /// The peer's inode, for a connected socket.
    pub peer: Option<u32>,
}

/// Every unix socket of the network namespace `netns` (a `/proc/<pid>/ns/net` path, or `None`
/// for this thread's own), with names and peers, from the kernel's sock_diag.
pub fn unix_sockets(netns: Option<&Path>) -> std::io::Result<Vec<UnixSocket>> {
    match netns {
        None => unix_sockets_here(),
        Some(ns) => {
            // A network namespace is a per-thread attribute: a thread of our own joins it, so
            // the rest of the process stays where it is.
            let ns = std::fs::File::open(ns)?;
            std::thread::Builder::new()
                .name("reel-sock-diag".into())
                .spawn(move || {
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                    unix_sockets_here()
                })?
                .join()
                .map_err(|_| std::io::Error::other("the sock_diag thread panicked"))?
        }
    }
}

fn unix_sockets_here() -> std::io::Result<Vec<UnixSocket>> {
    use netlink_packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
    };
    use netlink_packet_sock_diag::unix::nlas::{Nla, UnixDiagName};
    use netlink_packet_sock_diag::unix::{ShowFlags, StateFlags, UnixRequest};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::UnixRequest(UnixRequest {
            state_flags: StateFlags::all(),
            inode: 0,
            show_flags: ShowFlags::NAME | ShowFlags::PEER,
            cookie: [0xff; 8],
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket.send(&buf[..], 0)?;

    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut out = Vec::new();
    let mut rx = vec![0u8; 1 << 16];
    loop {
        let size = socket.recv(&mut &mut rx[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&rx[offset..size])
                .map_err(|e| bad(format!("sock_diag answer: {e}")))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::UnixResponse(r)) => {
                    let name = r.nlas.iter().find_map(|n| match n {
                        Nla::Name(UnixDiagName::Pathname(p)) => {
                            Some(p.to_string_lossy().into_owned())
                        }
                        Nla::Name(UnixDiagName::Abstract(a)) => {
                            Some(format!("@{}", String::from_utf8_lossy(a)))
                        }
                        _ => None,
                    });
                    out.push(UnixSocket {
                        inode: r.header.inode,
                        kind: r.header.kind,
                        state: r.header.state,
                        name,
                        peer: r.peer(),
                    });
                }
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return Err(bad(format!("sock_diag refused the dump: {e:?}")))
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mountinfo
// ---------------------------------------------------------------------------------------------

/// One line of a mountinfo file, its paths unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount id (field 1).
    pub id: u32,
    /// Parent mount id (field 2).
    pub parent: u32,
    /// The root of the mount within its file system (field 4).
    pub root: String,
    /// Where it is mounted (field 5).
    pub mount_point: String,
    /// Per-mount options (field 6), split on commas.
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// The super block options (the last field), split on commas, unescaped, in order.
    pub super_options: Vec<String>,
}

impl Mount {
    /// The value of super option `key=`.
    pub fn super_option(&self, key: &str) -> Option<&str> {
        self.super_options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    }
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for a backslash...), byte by
/// byte; bytes that are not UTF-8 are replaced (U+FFFD), never a panic.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of a mountinfo file; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(Mount {
                id: pre.first()?.parse().ok()?,
                parent: pre.get(1)?.parse().ok()?,
                root: unescape(pre.get(3)?),
                mount_point: unescape(pre.get(4)?),
                options: pre
                    .get(5)
                    .map_or_else(Vec::new, |o| o.split(',').map(str::to_string).collect()),
                fstype: post.first()?.to_string(),
                source: unescape(post.get(1)?),
                super_options: post
                    .get(2)
                    .map_or_else(Vec::new, |o| o.split(',').map(unescape).collect()),
            })
        })
        .collect()
}

/// Reads a mountinfo file (`<proc>/self/mountinfo`, `<proc>/<pid>/mountinfo`); the file is
/// read as bytes, so a mount point that is not UTF-8 cannot fail the whole read.
pub fn mountinfo_file(path: &Path) -> std::io::Result<Vec<Mount>> {
    let bytes = std::fs::read(path)?;
    Ok(parse_mountinfo(&String::from_utf8_lossy(&bytes)))
}

/// The mounts `pid` sees (`None` when it is gone).
pub fn mountinfo(proc_root: &Path, pid: i32) -> Option<Vec<Mount>> {
    mountinfo_file(&pid_dir(proc_root, pid)?.join("mountinfo")).ok()
}

// ---------------------------------------------------------------------------------------------
// Programs
// ---------------------------------------------------------------------------------------------

/// Where the program `name` is: `name` itself when it holds a `/`, else the first regular
/// file of that name on `PATH`, then in the usual sbin and bin directories (root's `PATH` on
/// a node may lack them).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let usual = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    std::env::split_paths(&path_var)
        .filter(|d| !d.as_os_str().is_empty())
        .chain(usual.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescapes_and_keeps_order() {
        let text = "36 35 98:0 /mnt1 /mnt/my\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n\
                    garbage line\n\
                    90 41 0:39 / /merged rw - overlay overlay rw,lowerdir=/l,upperdir=/u\\054x,workdir=/w\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, "/mnt/my dir");
        assert_eq!(m[0].id, 36);
        assert_eq!(m[0].parent, 35);
        assert_eq!(m[0].super_options, vec!["rw", "errors=continue"]);
        assert_eq!(m[2].super_option("upperdir"), Some("/u,x"));
    }

    #[test]
    fn unescape_is_byte_safe() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("\\134"), "\\");
        assert_eq!(unescape("end\\04"), "end\\04");
        assert_eq!(unescape("\\377"), "\u{fffd}");
        assert_eq!(unescape("é\\040ü"), "é ü");
        // Never a panic, whatever follows a backslash.
        for s in ["\\", "\\9999", "x\\0", "\\777", "ü\\"] {
            let _ = unescape(s);
        }
    }

    #[test]
    fn this_process() {
        let me = std::process::id() as i32;
        let s = stat(Path::new(PROC), me).unwrap();
        assert!(s.alive());
        assert!(process_start(Path::new(PROC), &s).is_some());
        assert!(rss_bytes(Path::new(PROC), me).unwrap() > 0);
        assert!(mountinfo(Path::new(PROC), me)
            .unwrap()
            .iter()
            .any(|m| m.mount_point == "/"));
        assert_eq!(stat(Path::new(PROC), 0), None);
        assert!(which("sh").is_some());
        assert!(which("no-such-program-reel").is_none());
    }

    #[test]
    fn a_socketpair_is_found_with_its_peer() {
        use std::os::fd::AsRawFd;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = std::process::id() as i32;
        let fds = fds(Path::new(PROC), me);
        let ino = |fd: i32| {
            fds.iter()
                .find(|(n, _)| *n == fd)
                .and_then(|(_, t)| socket_inode(t))
                .unwrap()
        };
        let (ia, ib) = (ino(a.as_raw_fd()), ino(b.as_raw_fd()));
        for netns in [None, Some(Path::new("/proc/self/ns/net"))] {
            let all = unix_sockets(netns).unwrap();
            let sa = all.iter().find(|s| s.inode == ia).expect("socket a");
            assert_eq!(sa.peer, Some(ib));
            assert_eq!(sa.kind, 1);
        }
    }
}
