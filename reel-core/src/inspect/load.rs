//! Builds an [`Inspection`] from a [`CheckpointSource`]: CRIU's images are read with
//! [`crate::criu::image`] and decoded into criu-sys's types; nothing is extracted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};

use criu_sys::proto;
use serde_json::Value;

use super::model::*;
use super::names;
use super::source::CheckpointSource;
use super::{pages, InspectError};
use crate::archive::{
    CHECKPOINT_DIR, CONFIG_DUMP, DELETED_FILES, ROOTFS_DIFF_TAR, SPEC_DUMP, STATS_DUMP,
};
use crate::criu::image::vma::{VMA_FILE_PRIVATE, VMA_FILE_SHARED};
use crate::criu::image::{ImageMessage, ImageReader};

/// The largest image (other than pages) inspect reads into memory.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// The largest JSON metadata member (`config.dump`, `spec.dump`, `deleted.files`).
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectOptions {
    /// Read argv and the environment from memory.
    pub memory: bool,
    /// List the rootfs diff.
    pub rootfs: bool,
    /// Hash every regular file of the rootfs diff (reads the whole member, verified).
    pub rootfs_hashes: bool,
    /// Keep only this process (and its threads, files, sockets, timers).
    pub pid: Option<u32>,
}

impl InspectOptions {
    /// Everything.
    pub fn all() -> InspectOptions {
        InspectOptions {
            memory: true,
            rootfs: true,
            rootfs_hashes: true,
            pid: None,
        }
    }
}

/// Process names that suggest an interactive shell, a downloader or a scripting runtime.
pub const SUSPICIOUS_COMMANDS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "csh", "tcsh", "fish", "busybox", "nc", "ncat",
    "netcat", "socat", "curl", "wget", "python", "python2", "python3", "perl", "ruby", "php",
    "lua", "node", "telnet", "ssh", "scp", "sftp", "nmap", "tcpdump", "tftp", "ftp", "base64",
    "xmrig", "openssl",
];

/// Directories where a changed file deserves a look.
pub const SENSITIVE_PATHS: &[&str] = &[
    "/etc",
    "/root",
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/var/spool/cron",
    "/home",
    "/boot",
];

const PROT_EXEC: u32 = 4;

fn img(name: &str) -> String {
    format!("{CHECKPOINT_DIR}{name}")
}

/// All the entries of image `name` as `M` (an empty list when the image is absent).
pub(super) fn entries<M: ImageMessage>(
    src: &CheckpointSource,
    name: &str,
) -> Result<Vec<M>, InspectError> {
    let member = img(name);
    let Some(bytes) = src.read_optional(&member, MAX_IMAGE_BYTES)? else {
        return Ok(Vec::new());
    };
    Ok(ImageReader::from_bytes(&bytes, member.as_str())?.read_entries()?)
}

/// The first entry of image `name`, `None` when the image is absent.
pub(super) fn first<M: ImageMessage>(
    src: &CheckpointSource,
    name: &str,
) -> Result<Option<M>, InspectError> {
    let member = img(name);
    let Some(bytes) = src.read_optional(&member, MAX_IMAGE_BYTES)? else {
        return Ok(None);
    };
    let mut r = ImageReader::from_bytes(&bytes, member.as_str())?;
    let e = match r.next_entry()? {
        Some(e) => e.decode()?,
        None => return Ok(None),
    };
    Ok(Some(e))
}

struct Task {
    pst: proto::PstreeEntry,
    core: proto::CoreEntry,
    ids: Option<proto::TaskKobjIdsEntry>,
}

/// Reads the checkpoint: see [`InspectOptions`].
pub fn inspect(src: &CheckpointSource, opts: &InspectOptions) -> Result<Inspection, InspectError> {
    let mut out = Inspection::default();
    let pstree: Vec<proto::PstreeEntry> = entries(src, "pstree.img")?;
    if pstree.is_empty() {
        return Err(InspectError::BadMember {
            member: img("pstree.img"),
            reason: "missing or empty: there is no process tree".into(),
        });
    }
    if let Some(pid) = opts.pid {
        if !pstree.iter().any(|p| p.pid == pid) {
            return Err(InspectError::NoProcess { pid });
        }
    }
    let mut tasks = Vec::new();
    for p in &pstree {
        let core: proto::CoreEntry =
            first(src, &format!("core-{}.img", p.pid))?.ok_or_else(|| {
                InspectError::MissingMember {
                    path: src.path().to_owned(),
                    member: img(&format!("core-{}.img", p.pid)),
                }
            })?;
        let ids = match core.ids {
            Some(ids) => Some(ids),
            None => first(src, &format!("ids-{}.img", p.pid))?,
        };
        tasks.push(Task {
            pst: p.clone(),
            core,
            ids,
        });
    }

    // Every open file object, by id.
    let files: HashMap<u32, proto::FileEntry> = entries::<proto::FileEntry>(src, "files.img")?
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    let remaps: HashMap<u32, proto::RemapFilePathEntry> =
        entries::<proto::RemapFilePathEntry>(src, "remap-fpath.img")?
            .into_iter()
            .map(|r| (r.orig_id, r))
            .collect();
    let memfds: HashMap<u64, proto::MemfdInodeEntry> =
        entries::<proto::MemfdInodeEntry>(src, "memfd.img")?
            .into_iter()
            .map(|m| (m.inode_id, m))
            .collect();
    let mut pipe_bytes: HashMap<u32, u64> = HashMap::new();
    for d in entries::<proto::PipeDataEntry>(src, "pipes-data.img")? {
        *pipe_bytes.entry(d.pipe_id).or_default() += u64::from(d.bytes);
    }

    // Processes and threads.
    for t in &tasks {
        let (proc_row, threads) = process(src, t, opts)?;
        out.processes.push(proc_row);
        out.threads.extend(threads);
    }

    // Descriptors, per process (processes sharing a table list it each).
    let mut unix_owners: HashMap<u32, Vec<String>> = HashMap::new();
    let mut deleted_ids = BTreeSet::new();
    for t in &tasks {
        if t.core.tc.as_ref().is_some_and(|tc| tc.task_state == 6) {
            continue;
        }
        let Some(ids) = &t.ids else { continue };
        let fdinfos: Vec<proto::FdinfoEntry> =
            entries(src, &format!("fdinfo-{}.img", ids.files_id))?;
        for fi in fdinfos {
            let pid = t.pst.pid;
            let f = files.get(&fi.id);
            let row = file_row(src, pid, &fi, f, &remaps, &memfds, &pipe_bytes)?;
            if row.deleted {
                deleted_ids.insert(fi.id);
            }
            if let Some(s) = f.and_then(|f| f.usk.as_ref()) {
                unix_owners
                    .entry(s.ino)
                    .or_default()
                    .push(format!("{pid}/{}", fi.fd));
            }
            if let Some(f) = f {
                if let Some(s) = socket_row(src, pid, &fi, f)? {
                    out.sockets.push(s);
                }
                if let Some(tfd) = &f.tfd {
                    out.timers.push(TimerRow {
                        pid,
                        kind: "timerfd".into(),
                        id: Some(fi.fd),
                        clock: Some(names::clock(tfd.clockid)),
                        signal: None,
                        next_s: secs(tfd.vsec, tfd.vnsec, 1e-9),
                        interval_s: secs(tfd.isec, tfd.insec, 1e-9),
                        ticks: Some(tfd.ticks),
                    });
                }
            }
            out.files.push(row);
        }
    }
    for s in &mut out.sockets {
        if let Some(peer) = s.peer_ino {
            s.peer = unix_owners.get(&peer).cloned().unwrap_or_default();
        }
    }

    // Timers kept in the task cores.
    for t in &tasks {
        let Some(timers) = t.core.tc.as_ref().and_then(|tc| tc.timers.as_ref()) else {
            continue;
        };
        let pid = t.pst.pid;
        for (kind, it) in [
            ("itimer-real", &timers.real),
            ("itimer-virtual", &timers.virt),
            ("itimer-prof", &timers.prof),
        ] {
            if it.vsec != 0 || it.vusec != 0 || it.isec != 0 || it.iusec != 0 {
                out.timers.push(TimerRow {
                    pid,
                    kind: kind.into(),
                    next_s: secs(it.vsec, it.vusec, 1e-6),
                    interval_s: secs(it.isec, it.iusec, 1e-6),
                    ..TimerRow::default()
                });
            }
        }
        for p in &timers.posix {
            out.timers.push(TimerRow {
                pid,
                kind: "posix".into(),
                id: Some(p.it_id),
                clock: Some(names::clock(p.clock_id)),
                signal: (p.si_signo != 0).then(|| names::signal_name(p.si_signo)),
                next_s: secs(p.vsec, p.vnsec, 1e-9),
                interval_s: secs(p.isec, p.insec, 1e-9),
                ticks: Some(u64::from(p.overrun)),
            });
        }
    }

    namespaces_and_mounts(src, &tasks, &mut out)?;
    if opts.rootfs {
        out.rootfs = rootfs(src, opts.rootfs_hashes)?;
    }
    findings(src, &tasks, &files, &deleted_ids, &mut out)?;
    let (maps, memory_findings) = super::search::maps(src, opts.pid)?;
    out.maps = maps;
    out.findings.extend(memory_findings);

    if let Some(pid) = opts.pid {
        out.processes.retain(|p| p.pid == pid);
        out.threads.retain(|t| t.pid == pid);
        out.files.retain(|f| f.pid == pid);
        out.sockets.retain(|s| s.pid == pid);
        out.timers.retain(|t| t.pid == pid);
        out.findings.retain(|f| f.pid.is_none_or(|p| p == pid));
        out.namespaces.retain(|n| n.pids.contains(&pid));
    }
    let row = checkpoint_row(src, &out)?;
    out.checkpoint.push(row);
    Ok(out)
}

fn secs(s: u64, frac: u64, unit: f64) -> f64 {
    s as f64 + frac as f64 * unit
}

fn process(
    src: &CheckpointSource,
    t: &Task,
    opts: &InspectOptions,
) -> Result<(ProcessRow, Vec<ThreadRow>), InspectError> {
    let pid = t.pst.pid;
    let tc = t.core.tc.clone().unwrap_or_default();
    let state = names::task_state(tc.task_state);
    let lead_thread = t.core.thread_core.clone().unwrap_or_default();
    let creds = lead_thread.creds.clone().unwrap_or_default();
    let seccomp = |m: Option<i32>| match m.unwrap_or(0) {
        0 => "disabled".to_string(),
        1 => "strict".to_string(),
        2 => "filter".to_string(),
        o => format!("mode-{o}"),
    };
    let mut row = ProcessRow {
        pid,
        ppid: t.pst.ppid,
        pgid: t.pst.pgid,
        sid: t.pst.sid,
        threads: t.pst.threads.len().max(1),
        state: state.clone(),
        exit_code: tc.exit_code,
        comm: tc.comm.clone(),
        uid: creds.uid,
        gid: creds.gid,
        euid: creds.euid,
        egid: creds.egid,
        suid: creds.suid,
        sgid: creds.sgid,
        fsuid: creds.fsuid,
        fsgid: creds.fsgid,
        groups: creds.groups.clone(),
        cap_eff: names::caps(&creds.cap_eff),
        cap_prm: names::caps(&creds.cap_prm),
        cap_inh: names::caps(&creds.cap_inh),
        cap_bnd: names::caps(&creds.cap_bnd),
        cap_amb: names::caps(&creds.cap_amb),
        no_new_privs: creds.no_new_privs.unwrap_or(0) != 0,
        seccomp: seccomp(lead_thread.seccomp_mode.or(tc.old_seccomp_mode)),
        lsm: creds.lsm_profile.clone().filter(|s| !s.is_empty()),
        loginuid: tc.loginuid,
        oom_score_adj: tc.oom_score_adj,
        pending_signals: siginfo_signals(tc.signals_s.as_ref()),
        rlimits: rlimits(&tc),
        ..ProcessRow::default()
    };
    if opts.memory && tc.task_state != 6 {
        match pages::args_env(src, pid) {
            Ok(a) => {
                row.argv = a.argv;
                row.env = a.env;
            }
            // A checksum mismatch must stop; memory that is simply not there is reported.
            Err(e @ (InspectError::NotDumped { .. } | InspectError::MissingMember { .. })) => {
                row.memory_error = Some(e.to_string())
            }
            Err(e) => return Err(e),
        }
    }
    let mut threads = Vec::new();
    let tids: Vec<u32> = if t.pst.threads.is_empty() {
        vec![pid]
    } else {
        t.pst.threads.clone()
    };
    for tid in tids {
        let core = if tid == pid {
            t.core.clone()
        } else {
            match first::<proto::CoreEntry>(src, &format!("core-{tid}.img"))? {
                Some(c) => c,
                None => continue,
            }
        };
        let th = core.thread_core.clone().unwrap_or_default();
        let regs = core.thread_info.as_ref().map(|ti| ti.gpregs);
        let orig_ax = regs.as_ref().map(|r| r.orig_ax);
        threads.push(ThreadRow {
            pid,
            tid,
            comm: th.comm.clone().unwrap_or_else(|| tc.comm.clone()),
            state: state.clone(),
            syscall: orig_ax.and_then(names::syscall_name),
            syscall_nr: orig_ax.filter(|&n| n as i64 != -1),
            blocked: names::sigset(th.blk_sigset.unwrap_or(tc.blk_sigset)),
            pending: siginfo_signals(th.signals_p.as_ref()),
            ip: regs
                .as_ref()
                .map(|r| format!("{:#x}", r.ip))
                .unwrap_or_default(),
            sp: regs
                .as_ref()
                .map(|r| format!("{:#x}", r.sp))
                .unwrap_or_default(),
            seccomp: seccomp(th.seccomp_mode.or(tc.old_seccomp_mode)),
        });
    }
    Ok((row, threads))
}

/// The signal numbers of queued siginfos (`si_signo` is their first word).
fn siginfo_signals(q: Option<&proto::SignalQueueEntry>) -> Vec<String> {
    let Some(q) = q else { return Vec::new() };
    q.signals
        .iter()
        .filter_map(|s| s.siginfo.get(..4))
        .map(|b| names::signal_name(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect()
}

fn rlimits(tc: &proto::TaskCoreEntry) -> Vec<String> {
    const NAMES: [&str; 16] = [
        "CPU",
        "FSIZE",
        "DATA",
        "STACK",
        "CORE",
        "RSS",
        "NPROC",
        "NOFILE",
        "MEMLOCK",
        "AS",
        "LOCKS",
        "SIGPENDING",
        "MSGQUEUE",
        "NICE",
        "RTPRIO",
        "RTTIME",
    ];
    let Some(r) = &tc.rlimits else {
        return Vec::new();
    };
    r.rlimits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.cur != u64::MAX)
        .map(|(i, l)| {
            let n = NAMES.get(i).copied().unwrap_or("?");
            format!("{n}={}", l.cur)
        })
        .collect()
}

fn fd_type(t: i32) -> String {
    proto::FdTypes::try_from(t)
        .map(|t| t.as_str_name().to_ascii_lowercase())
        .unwrap_or_else(|_| format!("type-{t}"))
}

fn file_row(
    src: &CheckpointSource,
    pid: u32,
    fi: &proto::FdinfoEntry,
    f: Option<&proto::FileEntry>,
    remaps: &HashMap<u32, proto::RemapFilePathEntry>,
    memfds: &HashMap<u64, proto::MemfdInodeEntry>,
    pipe_bytes: &HashMap<u32, u64>,
) -> Result<FileRow, InspectError> {
    let mut row = FileRow {
        pid,
        fd: fi.fd,
        kind: fd_type(fi.r#type),
        flags: format!("{:#o}", fi.flags),
        file_id: fi.id,
        ..FileRow::default()
    };
    let Some(f) = f else {
        row.path = "(not in files.img)".into();
        return Ok(row);
    };
    if let Some(r) = &f.reg {
        row.path = r.name.clone();
        row.flags = format!("{:#o}", r.flags);
        row.pos = Some(r.pos);
        row.size = r.size;
        if let Some(remap) = remaps.get(&r.id) {
            match remap.remap_type.unwrap_or(0) {
                1 => {
                    row.deleted = true;
                    let member = img(&format!("ghost-file-{:x}.img", remap.remap_id));
                    row.size = ghost_size(src, &member)?.or(row.size);
                    row.contents_member = Some(member);
                }
                0 => row.deleted = true,
                _ => {}
            }
        }
    } else if let Some(m) = &f.memfd {
        let inode = memfds.get(&u64::from(m.inode_id));
        let name = inode.map(|i| i.name.clone()).unwrap_or_default();
        let name = name
            .strip_prefix("memfd:")
            .unwrap_or(&name)
            .trim_end_matches(" (deleted)")
            .to_string();
        row.path = format!("memfd:{name}");
        row.memfd_name = Some(name);
        row.size = inode.map(|i| i.size);
        row.pos = Some(m.pos);
        row.flags = format!("{:#o}", m.flags);
    } else if let Some(p) = &f.pipe {
        row.path = format!("pipe:[{}]", p.pipe_id);
        row.queued = Some(pipe_bytes.get(&p.pipe_id).copied().unwrap_or(0));
        row.flags = format!("{:#o}", p.flags);
    } else if let Some(p) = &f.fifo {
        row.path = format!("fifo:[{}]", p.pipe_id);
        row.queued = Some(pipe_bytes.get(&p.pipe_id).copied().unwrap_or(0));
    } else if let Some(s) = &f.isk {
        row.path = format!("socket:[{}]", s.ino);
    } else if let Some(s) = &f.usk {
        row.path = format!("socket:[{}]", s.ino);
    } else if let Some(s) = &f.nlsk {
        row.path = format!("socket:[{}]", s.ino);
    } else if f.psk.is_some() {
        row.path = "socket:[packet]".into();
    } else if f.tfd.is_some() {
        row.path = "anon_inode:[timerfd]".into();
    } else if let Some(e) = &f.efd {
        row.path = format!("anon_inode:[eventfd] count={}", e.counter);
    } else if f.epfd.is_some() {
        row.path = "anon_inode:[eventpoll]".into();
    } else if f.sgfd.is_some() {
        row.path = "anon_inode:[signalfd]".into();
    } else if f.ify.is_some() {
        row.path = "anon_inode:inotify".into();
    } else if let Some(t) = &f.tty {
        row.path = format!("tty:[{}]", t.tty_info_id);
    } else if let Some(n) = &f.nsf {
        row.path = format!("ns:[{}]", n.ns_id);
    } else if f.ext.is_some() {
        row.path = "external".into();
    }
    Ok(row)
}

/// A ghost file's size: from its entry, else its contents (read through to the end, which
/// verifies the member).
fn ghost_size(src: &CheckpointSource, member: &str) -> Result<Option<u64>, InspectError> {
    if src.member(member).is_none() {
        return Ok(None);
    }
    let reader = src.reader(member)?;
    let mut r = ImageReader::new(reader, member)?;
    let mut size = None;
    let mut counted = 0u64;
    let mut first = true;
    while let Some(mut e) = r.next_entry()? {
        if first {
            let g: proto::GhostFileEntry = e.decode()?;
            size = g.size;
            first = false;
        }
        counted += std::io::copy(&mut e.payload(), &mut std::io::sink())
            .map_err(|err| src.member_err(member, err))?;
    }
    Ok(size.or(Some(counted)))
}

fn inet_addr(family: u32, words: &[u32], port: u32) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match (family, bytes.len()) {
        (2, 4..) => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        (10, 16..) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes[..16]);
            format!("[{}]", Ipv6Addr::from(a))
        }
        _ => "?".into(),
    };
    format!("{ip}:{port}")
}

fn unix_name(name: &[u8]) -> String {
    match name.split_first() {
        None => String::new(),
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        // A path ends at its NUL (bind(2) with sizeof(struct sockaddr_un) keeps the padding).
        Some(_) => {
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        }
    }
}

fn socket_row(
    src: &CheckpointSource,
    pid: u32,
    fi: &proto::FdinfoEntry,
    f: &proto::FileEntry,
) -> Result<Option<SocketRow>, InspectError> {
    let base = SocketRow {
        pid,
        fd: fi.fd,
        ..SocketRow::default()
    };
    if let Some(s) = &f.isk {
        let mut row = SocketRow {
            family: names::family(s.family).into(),
            kind: names::sock_type(s.r#type),
            proto: names::ip_proto(s.proto),
            state: names::sock_state(s.state),
            local: inet_addr(s.family, &s.src_addr, s.src_port),
            remote: if s.dst_port == 0 && s.state != 1 {
                String::new()
            } else {
                inet_addr(s.family, &s.dst_addr, s.dst_port)
            },
            ino: s.ino,
            backlog: (s.state == 10).then_some(s.backlog),
            ..base
        };
        if s.proto == 6 && s.state != 10 {
            if let Some(t) =
                first::<proto::TcpStreamEntry>(src, &format!("tcp-stream-{:x}.img", s.ino))?
            {
                row.recv_queue = Some(t.inq_len);
                row.send_queue = Some(t.outq_len);
            }
        }
        return Ok(Some(row));
    }
    if let Some(s) = &f.usk {
        return Ok(Some(SocketRow {
            family: "unix".into(),
            kind: names::sock_type(s.r#type),
            state: names::sock_state(s.state),
            local: unix_name(&s.name),
            ino: s.ino,
            peer_ino: (s.peer != 0).then_some(s.peer),
            ..base
        }));
    }
    if let Some(s) = &f.nlsk {
        return Ok(Some(SocketRow {
            family: "netlink".into(),
            kind: "raw".into(),
            proto: s.protocol.to_string(),
            state: names::sock_state(s.state),
            local: format!("portid {}", s.portid),
            remote: format!("portid {}", s.dst_portid),
            ino: s.ino,
            ..base
        }));
    }
    if let Some(s) = &f.psk {
        return Ok(Some(SocketRow {
            family: "packet".into(),
            kind: "raw".into(),
            proto: format!("{:#06x}", u16::from_be(s.protocol as u16)),
            local: format!("ifindex {}", s.ifindex),
            ..base
        }));
    }
    Ok(None)
}

fn namespaces_and_mounts(
    src: &CheckpointSource,
    tasks: &[Task],
    out: &mut Inspection,
) -> Result<(), InspectError> {
    let mut ns: BTreeMap<(&'static str, u32), Vec<u32>> = BTreeMap::new();
    for t in tasks {
        let Some(ids) = &t.ids else { continue };
        for (kind, id) in [
            ("uts", ids.uts_ns_id),
            ("ipc", ids.ipc_ns_id),
            ("net", ids.net_ns_id),
            ("mnt", ids.mnt_ns_id),
            ("pid", ids.pid_ns_id),
            ("user", ids.user_ns_id),
            ("cgroup", ids.cgroup_ns_id),
            ("time", ids.time_ns_id),
        ] {
            if let Some(id) = id {
                ns.entry((kind, id)).or_default().push(t.pst.pid);
            }
        }
    }
    for ((kind, id), pids) in ns {
        let mut row = NamespaceRow {
            kind: kind.into(),
            id,
            pids,
            ..NamespaceRow::default()
        };
        match kind {
            "uts" => {
                if let Some(u) = first::<proto::UtsnsEntry>(src, &format!("utsns-{id}.img"))? {
                    row.hostname = Some(u.nodename);
                    row.domainname = Some(u.domainname);
                }
            }
            "ipc" if src.member(&img(&format!("ipcns-var-{id}.img"))).is_some() => {
                row.shm_segments =
                    Some(entries::<proto::IpcShmEntry>(src, &format!("ipcns-shm-{id}.img"))?.len());
                row.sem_sets =
                    Some(entries::<proto::IpcSemEntry>(src, &format!("ipcns-sem-{id}.img"))?.len());
                row.msg_queues = Some(count_msg_queues(src, id)?);
            }
            "net" => {
                row.interfaces =
                    entries::<proto::NetDeviceEntry>(src, &format!("netdev-{id}.img"))?
                        .into_iter()
                        .map(|d| d.name)
                        .collect();
            }
            "mnt" => {
                for m in entries::<proto::MntEntry>(src, &format!("mountpoints-{id}.img"))? {
                    let fstype = proto::Fstype::try_from(m.fstype as i32)
                        .map(|f| f.as_str_name().to_ascii_lowercase())
                        .unwrap_or_else(|_| format!("fstype-{}", m.fstype));
                    let fstype = match (&m.fsname, fstype.as_str()) {
                        (Some(n), "auto" | "unsupported") if !n.is_empty() => n.clone(),
                        _ => fstype,
                    };
                    let external = m.ext_mount.unwrap_or(false) || m.ext_key.is_some();
                    out.mounts.push(MountRow {
                        mnt_ns: id,
                        mnt_id: m.mnt_id,
                        parent: m.parent_mnt_id,
                        source: m.source.clone(),
                        root: m.root.clone(),
                        target: m.mountpoint.clone(),
                        fstype,
                        options: m.options.clone(),
                        external,
                        external_source: m.ext_key.clone().or(external.then(|| m.root.clone())),
                    });
                }
            }
            _ => {}
        }
        out.namespaces.push(row);
    }
    Ok(())
}

fn count_msg_queues(src: &CheckpointSource, id: u32) -> Result<usize, InspectError> {
    let member = img(&format!("ipcns-msg-{id}.img"));
    let Some(bytes) = src.read_optional(&member, MAX_IMAGE_BYTES)? else {
        return Ok(0);
    };
    let mut r = ImageReader::from_bytes(&bytes, member.as_str())?;
    let mut n = 0;
    while let Some(e) = r.next_entry()? {
        if e.message_type() == <proto::IpcMsgEntry as ImageMessage>::TYPE {
            n += 1;
        }
    }
    Ok(n)
}

/// The rootfs diff: every entry of `rootfs-diff.tar` (hashed when `hashes`), and
/// `deleted.files`.
pub fn rootfs(src: &CheckpointSource, hashes: bool) -> Result<Vec<RootfsRow>, InspectError> {
    let mut out = Vec::new();
    if src.member(ROOTFS_DIFF_TAR).is_some() {
        let err = |e: std::io::Error| src.member_err(ROOTFS_DIFF_TAR, e);
        if hashes {
            let mut a = tar::Archive::new(src.reader(ROOTFS_DIFF_TAR)?);
            for e in a.entries().map_err(err)? {
                let mut e = e.map_err(err)?;
                let mut row = rootfs_row(&e);
                if e.header().entry_type().is_file() {
                    let mut h = crate::archive::HashingWriter::new(std::io::sink());
                    std::io::copy(&mut e, &mut h).map_err(err)?;
                    row.sha256 = Some(h.finish().0);
                }
                out.push(row);
            }
            // Read to the end, so the member is verified.
            let mut rest = a.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink()).map_err(err)?;
        } else {
            let mut a = tar::Archive::new(src.seekable(ROOTFS_DIFF_TAR)?);
            for e in a.entries_with_seek().map_err(err)? {
                out.push(rootfs_row(&e.map_err(err)?));
            }
        }
    }
    classify_against_base(src, &mut out);
    if let Some(bytes) = src.read_optional(DELETED_FILES, MAX_JSON_BYTES)? {
        let list: Vec<String> = if bytes.iter().all(u8::is_ascii_whitespace) {
            Vec::new()
        } else {
            serde_json::from_slice(&bytes).map_err(|e| InspectError::BadMember {
                member: DELETED_FILES.into(),
                reason: format!("not a JSON list of paths: {e}"),
            })?
        };
        for p in list {
            out.push(RootfsRow {
                path: if p.starts_with('/') {
                    p
                } else {
                    format!("/{p}")
                },
                status: "deleted".into(),
                kind: "unknown".into(),
                ..RootfsRow::default()
            });
        }
    }
    Ok(out)
}

/// Tells `added` from `changed` in the diff's rows when the container's base layers (the
/// manifest's overlay lower dirs) are still on this host; else they stay `added-or-changed`.
fn classify_against_base(src: &CheckpointSource, rows: &mut [RootfsRow]) {
    let Some(layers) = src
        .manifest()
        .and_then(|m| m.fields.rootfs_layers.as_ref())
        .filter(|l| l.kind == "overlay" && !l.lower_dirs.is_empty())
    else {
        return;
    };
    if !layers.lower_dirs.iter().all(|d| d.is_dir()) {
        tracing::debug!(
            "the base layers are not on this host: added and changed files are not told apart"
        );
        return;
    }
    for row in rows.iter_mut().filter(|r| r.status == ADDED_OR_CHANGED) {
        match crate::archive::base_has(&layers.lower_dirs, &row.path) {
            Some(true) => row.status = "changed".into(),
            Some(false) => row.status = "added".into(),
            None => {}
        }
    }
}

/// The status of a diff entry when the base cannot say whether it was added or changed.
const ADDED_OR_CHANGED: &str = "added-or-changed";

fn rootfs_row<R: Read>(e: &tar::Entry<'_, R>) -> RootfsRow {
    use tar::EntryType as T;
    let h = e.header();
    let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
    let path = format!("/{}", path.trim_start_matches("./").trim_start_matches('/'));
    let path = if path.len() > 1 {
        path.trim_end_matches('/').to_string()
    } else {
        path
    };
    let kind = match h.entry_type() {
        T::Regular | T::Continuous => "file",
        T::Directory => "dir",
        T::Symlink => "symlink",
        T::Link => "hardlink",
        T::Char => "char",
        T::Block => "block",
        T::Fifo => "fifo",
        _ => "other",
    };
    let mode = h.mode().ok();
    RootfsRow {
        path,
        status: ADDED_OR_CHANGED.into(),
        kind: kind.into(),
        mode: mode.map(|m| format!("{:04o}", m & 0o7777)),
        setuid: mode.is_some_and(|m| m & 0o6000 != 0),
        uid: h.uid().ok(),
        gid: h.gid().ok(),
        size: h.entry_size().ok(),
        mtime: h
            .mtime()
            .ok()
            .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
            .map(|t| t.to_rfc3339()),
        sha256: None,
        link: e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned()),
    }
}

fn findings(
    src: &CheckpointSource,
    tasks: &[Task],
    files: &HashMap<u32, proto::FileEntry>,
    deleted_ids: &BTreeSet<u32>,
    out: &mut Inspection,
) -> Result<(), InspectError> {
    let mut found = Vec::new();
    for p in &out.processes {
        let base = p.comm.rsplit('/').next().unwrap_or(&p.comm);
        let argv0 = p
            .argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
            .unwrap_or_default();
        let hit = SUSPICIOUS_COMMANDS
            .iter()
            .find(|c| base == **c || argv0 == **c || base.starts_with(&format!("{c}3")));
        if let Some(c) = hit {
            found.push(FindingRow {
                address: None,
                kind: "shell-or-downloader".into(),
                pid: Some(p.pid),
                what: p.comm.clone(),
                detail: format!(
                    "process {} ({}) looks like {c}: {}",
                    p.pid,
                    p.comm,
                    p.argv.join(" ")
                ),
            });
        }
    }
    for f in &out.files {
        if f.deleted {
            found.push(FindingRow {
                address: None,
                kind: "deleted-file-open".into(),
                pid: Some(f.pid),
                what: f.path.clone(),
                detail: format!(
                    "process {} fd {} holds deleted file {} ({} bytes{})",
                    f.pid,
                    f.fd,
                    f.path,
                    f.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                    f.contents_member
                        .as_ref()
                        .map(|m| format!(", contents in {m}"))
                        .unwrap_or_default()
                ),
            });
        }
        if f.kind == "memfd" {
            found.push(FindingRow {
                address: None,
                kind: "memfd-open".into(),
                pid: Some(f.pid),
                what: f.path.clone(),
                detail: format!(
                    "process {} fd {} holds {} ({} bytes): memory-only file",
                    f.pid,
                    f.fd,
                    f.path,
                    f.size.unwrap_or(0)
                ),
            });
        }
    }
    // Executables and libraries mapped from deleted files.
    for t in tasks {
        if t.core.tc.as_ref().is_some_and(|tc| tc.task_state == 6) {
            continue;
        }
        let Some(mm) = first::<proto::MmEntry>(src, &format!("mm-{}.img", t.pst.pid))? else {
            continue;
        };
        let mut ids: BTreeSet<u32> = mm
            .vmas
            .iter()
            .filter(|v| {
                v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 && v.prot & PROT_EXEC != 0
            })
            .filter_map(|v| u32::try_from(v.shmid).ok())
            .collect();
        ids.insert(mm.exe_file_id);
        for id in ids {
            let Some(reg) = files.get(&id).and_then(|f| f.reg.as_ref()) else {
                continue;
            };
            let remapped = deleted_ids.contains(&id)
                || src.member(&img("remap-fpath.img")).is_some()
                    && entries::<proto::RemapFilePathEntry>(src, "remap-fpath.img")?
                        .iter()
                        .any(|r| r.orig_id == id && r.remap_type.unwrap_or(0) != 2);
            if remapped {
                found.push(FindingRow {
                    address: None,
                    kind: "deleted-executable-mapped".into(),
                    pid: Some(t.pst.pid),
                    what: reg.name.clone(),
                    detail: format!(
                        "process {} runs code mapped from deleted file {}",
                        t.pst.pid, reg.name
                    ),
                });
            }
        }
        if let Some(p) = out.processes.iter_mut().find(|p| p.pid == t.pst.pid) {
            p.exe = files
                .get(&mm.exe_file_id)
                .and_then(|f| f.reg.as_ref())
                .map(|r| r.name.clone());
        }
    }
    for r in &out.rootfs {
        let sensitive = SENSITIVE_PATHS
            .iter()
            .any(|p| r.path == *p || r.path.starts_with(&format!("{p}/")));
        if sensitive && r.kind != "dir" {
            found.push(FindingRow {
                address: None,
                kind: "sensitive-path-changed".into(),
                pid: None,
                what: r.path.clone(),
                detail: format!("{} {} ({})", r.path, r.status, r.kind),
            });
        }
        if r.setuid && r.kind == "file" {
            found.push(FindingRow {
                address: None,
                kind: "setuid-file-changed".into(),
                pid: None,
                what: r.path.clone(),
                detail: format!(
                    "{} is setuid/setgid (mode {})",
                    r.path,
                    r.mode.clone().unwrap_or_default()
                ),
            });
        }
    }
    out.findings = found;
    Ok(())
}

fn json_member(src: &CheckpointSource, name: &str) -> Result<Option<Value>, InspectError> {
    let Some(b) = src.read_optional(name, MAX_JSON_BYTES)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&b).ok())
}

fn checkpoint_row(src: &CheckpointSource, out: &Inspection) -> Result<CheckpointRow, InspectError> {
    let mut row = CheckpointRow {
        path: src.path().display().to_string(),
        layout: serde_json::to_value(src.layout())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        processes: out.processes.len(),
        threads: out.threads.len(),
        ..CheckpointRow::default()
    };
    if let Some(m) = src.manifest() {
        let f = &m.fields;
        row.manifest = true;
        row.id = Some(f.checkpoint_id.clone());
        row.container = Some(f.container.name.clone());
        row.container_id = Some(f.container.id.clone());
        row.pod = f.container.pod.clone();
        row.namespace = f.container.namespace.clone();
        row.node = Some(f.node.clone());
        row.image = f.container.image.clone();
        row.runtime = Some(f.container.runtime.clone());
        row.method = Some(
            f.method
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| "direct".into()),
        );
        row.created = Some(f.created.to_rfc3339());
        row.frozen_ms = f.criu_frozen_time_us.map(|us| us as f64 / 1000.0);
        row.criu_version = Some(f.criu_version.clone());
    } else {
        // Another tool's archive: what its config.dump and spec.dump say.
        if let Some(c) = json_member(src, CONFIG_DUMP)? {
            let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_string);
            row.container = s("name");
            row.container_id = s("id");
            row.image = s("rootfsImageName").or(s("rootfsImage"));
            row.runtime = s("runtime");
            row.created = s("checkpointedTime").or(s("createdTime"));
        }
        if let Some(spec) = json_member(src, SPEC_DUMP)? {
            let a = |k: &str| {
                spec.pointer("/annotations")
                    .and_then(|x| x.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            row.pod = a("io.kubernetes.pod.name").or(a("io.kubernetes.cri.sandbox-name"));
            row.namespace =
                a("io.kubernetes.pod.namespace").or(a("io.kubernetes.cri.sandbox-namespace"));
            if row.container.is_none() {
                row.container = a("io.kubernetes.container.name");
            }
            if row.image.is_none() {
                row.image = a("io.kubernetes.cri.image-name");
            }
        }
        if let Some(b) = src.read_optional(STATS_DUMP, MAX_IMAGE_BYTES)? {
            if let Ok(mut r) = ImageReader::from_bytes(&b, STATS_DUMP) {
                if let Ok(Some(e)) = r.next_entry() {
                    if let Ok(s) = e.decode::<proto::StatsEntry>() {
                        row.frozen_ms = s.dump.map(|d| f64::from(d.frozen_time) / 1000.0);
                    }
                }
            }
        }
        row.method = Some("unknown (no reel manifest)".into());
    }
    let v = src.verification();
    row.verdict = v.verdict().into();
    row.members_verified = v.verified.len();
    row.members_read_in_part = v.read_in_part.len();
    row.members_mismatched = v
        .mismatched
        .iter()
        .chain(&v.not_in_manifest)
        .cloned()
        .collect();
    Ok(row)
}
