//! What `reel inspect` reports: flat rows, one list per view. The JSON form is documented in
//! `docs/inspect-json.md` and stable: fields are only ever added.

use serde::Serialize;

/// The checkpoint itself (one row).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CheckpointRow {
    /// The path read.
    pub path: String,
    /// `tar`, `tar-zst-seekable`, `tar-zst`, `directory`.
    pub layout: String,
    /// The store id, when the manifest names one.
    pub id: Option<String>,
    /// Container name.
    pub container: Option<String>,
    /// Container id.
    pub container_id: Option<String>,
    /// Pod.
    pub pod: Option<String>,
    /// Kubernetes namespace (or the runtime's, for containers no pod owns).
    pub namespace: Option<String>,
    /// The node it was taken on.
    pub node: Option<String>,
    /// The container's image.
    pub image: Option<String>,
    /// The OCI runtime.
    pub runtime: Option<String>,
    /// Who dumped it (`direct`, `containerd`, ...; `podman`/`cri-o` when no reel manifest).
    pub method: Option<String>,
    /// When it was taken (RFC 3339).
    pub created: Option<String>,
    /// How long CRIU kept the processes frozen, in milliseconds.
    pub frozen_ms: Option<f64>,
    /// CRIU's version.
    pub criu_version: Option<String>,
    /// Whether the checkpoint has a reel manifest.
    pub manifest: bool,
    /// `verified` (every member read matched the manifest), `unverified` (no manifest, or
    /// `--no-verify`), `MISMATCH` (`--no-verify` and a member differed).
    pub verdict: String,
    /// Members read whole and verified.
    pub members_verified: usize,
    /// Members read only in part (pages): not verifiable by their digest.
    pub members_read_in_part: usize,
    /// Members that did not match the manifest (only with `--no-verify`).
    pub members_mismatched: Vec<String>,
    /// Number of processes.
    pub processes: usize,
    /// Number of threads.
    pub threads: usize,
}

/// One process.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessRow {
    /// Pid (in the container's pid namespace).
    pub pid: u32,
    /// Parent pid (0 for the container's init).
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// Session.
    pub sid: u32,
    /// Number of threads.
    pub threads: usize,
    /// CRIU's task state: alive, stopped, zombie, dead.
    pub state: String,
    /// Exit code (zombies).
    pub exit_code: u32,
    /// Command name.
    pub comm: String,
    /// Path of the executable, when known.
    pub exe: Option<String>,
    /// argv, from the process's memory.
    pub argv: Vec<String>,
    /// Environment, from the process's memory.
    pub env: Vec<String>,
    /// Why argv/env could not be read, if so.
    pub memory_error: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Saved uid.
    pub suid: u32,
    /// Saved gid.
    pub sgid: u32,
    /// Filesystem uid.
    pub fsuid: u32,
    /// Filesystem gid.
    pub fsgid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities.
    pub cap_eff: Vec<String>,
    /// Permitted capabilities.
    pub cap_prm: Vec<String>,
    /// Inheritable capabilities.
    pub cap_inh: Vec<String>,
    /// Bounding set.
    pub cap_bnd: Vec<String>,
    /// Ambient capabilities.
    pub cap_amb: Vec<String>,
    /// Whether no_new_privs is set.
    pub no_new_privs: bool,
    /// Seccomp mode: disabled, strict, filter.
    pub seccomp: String,
    /// LSM label (AppArmor profile, SELinux context).
    pub lsm: Option<String>,
    /// Login uid.
    pub loginuid: Option<u32>,
    /// OOM score adjustment.
    pub oom_score_adj: Option<i32>,
    /// Signals pending for the whole process.
    pub pending_signals: Vec<String>,
    /// Soft limits that are not unlimited, `NAME=value`.
    pub rlimits: Vec<String>,
}

/// One thread.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ThreadRow {
    /// The process.
    pub pid: u32,
    /// The thread.
    pub tid: u32,
    /// Thread name.
    pub comm: String,
    /// CRIU's task state (of its process).
    pub state: String,
    /// The system call it was in (from `orig_ax`), `null` when in none.
    pub syscall: Option<String>,
    /// The system call's number.
    pub syscall_nr: Option<u64>,
    /// Blocked signals.
    pub blocked: Vec<String>,
    /// Signals pending for this thread.
    pub pending: Vec<String>,
    /// Instruction pointer.
    pub ip: String,
    /// Stack pointer.
    pub sp: String,
    /// Seccomp mode of the thread.
    pub seccomp: String,
}

/// One open file descriptor.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileRow {
    /// The process.
    pub pid: u32,
    /// The descriptor.
    pub fd: u32,
    /// reg, pipe, fifo, inetsk, unixsk, eventfd, eventpoll, inotify, signalfd, packetsk, tty,
    /// fanotify, netlinksk, ns, tunf, ext, timerfd, memfd, bpfmap, pidfd.
    #[serde(rename = "type")]
    pub kind: String,
    /// Path (regular files, FIFOs), `memfd:NAME`, `pipe:[id]`, `socket:[ino]`, ...
    pub path: String,
    /// open(2) flags, in octal.
    pub flags: String,
    /// File position.
    pub pos: Option<u64>,
    /// Size (regular files when CRIU recorded it, deleted files, memfds).
    pub size: Option<u64>,
    /// Whether the file was deleted while open (its contents are in the checkpoint).
    pub deleted: bool,
    /// The member holding a deleted file's contents.
    pub contents_member: Option<String>,
    /// The memfd's name.
    pub memfd_name: Option<String>,
    /// Bytes queued in a pipe.
    pub queued: Option<u64>,
    /// CRIU's file id (joins with sockets).
    pub file_id: u32,
}

/// One socket descriptor.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SocketRow {
    /// The process.
    pub pid: u32,
    /// The descriptor.
    pub fd: u32,
    /// unix, inet, inet6, netlink, packet.
    pub family: String,
    /// stream, dgram, seqpacket, raw.
    #[serde(rename = "type")]
    pub kind: String,
    /// tcp, udp, ... (inet); the netlink or ethernet protocol number otherwise.
    pub proto: String,
    /// LISTEN, ESTABLISHED, ...
    pub state: String,
    /// Local address (`ip:port`, a unix path, `@abstract`).
    pub local: String,
    /// Remote address (inet), or the unix peer's name.
    pub remote: String,
    /// The socket's inode.
    pub ino: u32,
    /// unix: the peer socket's inode.
    pub peer_ino: Option<u32>,
    /// unix: the peer's process and descriptor(s), `pid/fd`.
    pub peer: Vec<String>,
    /// TCP: bytes received and not read by the process.
    pub recv_queue: Option<u32>,
    /// TCP: bytes sent and not acknowledged (or not sent).
    pub send_queue: Option<u32>,
    /// Listen backlog.
    pub backlog: Option<u32>,
}

/// One mount.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MountRow {
    /// The mount namespace's CRIU id.
    pub mnt_ns: u32,
    /// Mount id.
    pub mnt_id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// Source.
    pub source: String,
    /// Root of the mount inside its filesystem.
    pub root: String,
    /// Mount point.
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount options.
    pub options: String,
    /// Whether it is an external (bind) mount.
    pub external: bool,
    /// The key or source CRIU was given for an external mount.
    pub external_source: Option<String>,
}

/// One namespace and what CRIU saved of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NamespaceRow {
    /// uts, ipc, net, mnt, pid, user, cgroup, time.
    pub kind: String,
    /// CRIU's namespace id.
    pub id: u32,
    /// Processes in it.
    pub pids: Vec<u32>,
    /// uts: host name.
    pub hostname: Option<String>,
    /// uts: domain name.
    pub domainname: Option<String>,
    /// ipc: SysV shared memory segments.
    pub shm_segments: Option<usize>,
    /// ipc: SysV message queues.
    pub msg_queues: Option<usize>,
    /// ipc: SysV semaphore sets.
    pub sem_sets: Option<usize>,
    /// net: interfaces.
    pub interfaces: Vec<String>,
}

/// One timer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimerRow {
    /// The process.
    pub pid: u32,
    /// posix, itimer-real, itimer-virtual, itimer-prof, timerfd.
    pub kind: String,
    /// The posix timer id or the timerfd's descriptor.
    pub id: Option<u32>,
    /// The clock.
    pub clock: Option<String>,
    /// The signal it sends (posix timers).
    pub signal: Option<String>,
    /// Time to the next expiry at the dump, in seconds.
    pub next_s: f64,
    /// Interval, in seconds (0: one-shot).
    pub interval_s: f64,
    /// Expirations not read yet (timerfd) or overruns (posix).
    pub ticks: Option<u64>,
}

/// One entry of the rootfs diff.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RootfsRow {
    /// Absolute path in the container.
    pub path: String,
    /// `added` or `changed` (in `rootfs-diff.tar`, told apart by the container's base layers
    /// when they are still on this host), `added-or-changed` (in `rootfs-diff.tar`, base not
    /// here: the writable layer does not tell which), `deleted` (in `deleted.files`).
    pub status: String,
    /// file, dir, symlink, hardlink, char, block, fifo.
    #[serde(rename = "type")]
    pub kind: String,
    /// Mode in octal, e.g. `4755`.
    pub mode: Option<String>,
    /// Whether setuid or setgid is set.
    pub setuid: bool,
    /// Owner uid.
    pub uid: Option<u64>,
    /// Owner gid.
    pub gid: Option<u64>,
    /// Size.
    pub size: Option<u64>,
    /// Modification time (RFC 3339).
    pub mtime: Option<String>,
    /// SHA-256 of a regular file's contents (with `--rootfs`).
    pub sha256: Option<String>,
    /// A symbolic link's target.
    pub link: Option<String>,
}

/// Something a responder should look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FindingRow {
    /// shell-or-downloader, deleted-file-open, deleted-executable-mapped, memfd-open,
    /// sensitive-path-changed, setuid-file-changed, listening-socket, writable-executable-memory,
    /// anonymous-executable-memory, modified-code.
    pub kind: String,
    /// The process, when it is about one.
    pub pid: Option<u32>,
    /// The object: a command name, a path, an address range.
    pub what: String,
    /// The address it is about (memory findings), `0x…`.
    pub address: Option<String>,
    /// One line for people.
    pub detail: String,
}

/// A memory region (VMA) of a process, as `/proc/PID/maps` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MapRow {
    /// The process.
    pub pid: u32,
    /// Start address, `0x…`.
    pub start: String,
    /// End address (exclusive), `0x…`.
    pub end: String,
    /// `rwxp`/`rwxs`.
    pub perms: String,
    /// File offset (file mappings).
    pub offset: u64,
    /// `[heap]`, `[stack]`, `[vdso]`, a file path, or empty (anonymous).
    pub path: String,
    /// heap, stack, thread-stack, vdso, vvar, vsyscall, file, anon.
    pub kind: String,
    /// Its size in pages.
    pub pages: u64,
    /// How many of its pages the checkpoint holds.
    pub pages_dumped: u64,
}

/// Everything `reel inspect` found (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Inspection {
    /// The checkpoint (one row).
    pub checkpoint: Vec<CheckpointRow>,
    /// Processes.
    pub processes: Vec<ProcessRow>,
    /// Threads.
    pub threads: Vec<ThreadRow>,
    /// Open descriptors.
    pub files: Vec<FileRow>,
    /// Sockets.
    pub sockets: Vec<SocketRow>,
    /// Mounts.
    pub mounts: Vec<MountRow>,
    /// Namespaces.
    pub namespaces: Vec<NamespaceRow>,
    /// Timers.
    pub timers: Vec<TimerRow>,
    /// The rootfs diff.
    pub rootfs: Vec<RootfsRow>,
    /// Findings.
    pub findings: Vec<FindingRow>,
    /// Every process's memory regions.
    pub maps: Vec<MapRow>,
}
