//! `reel diff`: what changed between two checkpoints of the same container, as flat
//! [`Change`] records (`kind`, `pid`, `what`, `before`, `after`), built on [`inspect`]
//! (processes, threads, files, sockets, timers, namespaces, mounts, rootfs) plus each
//! process's VMAs (`mm-<pid>.img`) and a SHA-256 of every dumped page, hashed while the pages
//! member is streamed.
//!
//! Processes match by pid and command name (CRIU keeps pids). Files, sockets, VMAs and pages
//! are compared only for processes in both checkpoints: a process that started or ended is
//! one record, not one per descriptor.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use criu_sys::proto;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::load::{inspect, InspectOptions};
use super::model::{
    CheckpointRow, Inspection, NamespaceRow, ProcessRow, SocketRow, ThreadRow, TimerRow,
};
use super::pages::{PageIndex, MAX_MM_BYTES};
use super::source::CheckpointSource;
use super::InspectError;
use crate::archive::CHECKPOINT_DIR;
use crate::criu::image::ImageReader;

/// What to compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// One `page-differs` record per differing page address, besides the count.
    pub pages: bool,
}

/// One difference. `kind` is one of the kinds listed in `docs/inspect-json.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What kind of change, e.g. `process-started`, `vma-protection-changed`.
    pub kind: String,
    /// The process it is about, if any.
    pub pid: Option<u32>,
    /// The object: a command name, `fd 3`, an address range, a path.
    pub what: String,
    /// Its value in the first checkpoint (`null` when it was not there).
    pub before: Option<String>,
    /// Its value in the second checkpoint (`null` when it is not there).
    pub after: Option<String>,
}

/// The two checkpoints and what changed between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diff {
    /// The first checkpoint (`A`).
    pub before: CheckpointRow,
    /// The second checkpoint (`B`).
    pub after: CheckpointRow,
    /// The changes, in a stable order (by section, then pid, then object).
    pub changes: Vec<Change>,
}

impl Diff {
    /// Whether the checkpoints differ.
    pub fn differs(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// Compares checkpoint `a` (before) with `b` (after).
pub fn diff(
    a: &CheckpointSource,
    b: &CheckpointSource,
    opts: &DiffOptions,
) -> Result<Diff, InspectError> {
    let io = InspectOptions {
        memory: true,
        rootfs: true,
        rootfs_hashes: true,
        pid: None,
    };
    let ia = inspect(a, &io)?;
    let ib = inspect(b, &io)?;
    let mut out = Vec::new();
    let common = processes(&ia, &ib, &mut out);
    threads(&ia, &ib, &common, &mut out);
    files(&ia, &ib, &common, &mut out);
    sockets(&ia, &ib, &common, &mut out);
    timers(&ia, &ib, &common, &mut out);
    namespaces(&ia, &ib, &mut out);
    mounts(&ia, &ib, &mut out);
    rootfs(&ia, &ib, &mut out);
    for &pid in &common {
        memory(a, b, pid, opts, &mut out)?;
    }
    Ok(Diff {
        before: ia.checkpoint.into_iter().next().unwrap_or_default(),
        after: ib.checkpoint.into_iter().next().unwrap_or_default(),
        changes: out,
    })
}

fn change(
    kind: &str,
    pid: Option<u32>,
    what: impl Into<String>,
    before: Option<String>,
    after: Option<String>,
) -> Change {
    Change {
        kind: kind.into(),
        pid,
        what: what.into(),
        before,
        after,
    }
}

fn creds(p: &ProcessRow) -> String {
    format!(
        "uid={}/{}/{}/{} gid={}/{}/{}/{} groups={:?} cap_eff={} cap_prm={} cap_bnd={} nnp={} seccomp={} lsm={}",
        p.uid,
        p.euid,
        p.suid,
        p.fsuid,
        p.gid,
        p.egid,
        p.sgid,
        p.fsgid,
        p.groups,
        p.cap_eff.join(","),
        p.cap_prm.join(","),
        p.cap_bnd.join(","),
        p.no_new_privs,
        p.seccomp,
        p.lsm.as_deref().unwrap_or("-")
    )
}

fn env_map(p: &ProcessRow) -> BTreeMap<&str, &str> {
    p.env
        .iter()
        .map(|e| e.split_once('=').unwrap_or((e.as_str(), "")))
        .collect()
}

/// Process records; returns the pids in both checkpoints (same pid and comm).
fn processes(a: &Inspection, b: &Inspection, out: &mut Vec<Change>) -> BTreeSet<u32> {
    let key = |p: &ProcessRow| (p.pid, p.comm.clone());
    let pa: BTreeMap<_, &ProcessRow> = a.processes.iter().map(|p| (key(p), p)).collect();
    let pb: BTreeMap<_, &ProcessRow> = b.processes.iter().map(|p| (key(p), p)).collect();
    let mut common = BTreeSet::new();
    for (k, p) in &pa {
        if !pb.contains_key(k) {
            out.push(change(
                "process-ended",
                Some(p.pid),
                &p.comm,
                Some(p.argv.join(" ")),
                None,
            ));
        }
    }
    for (k, p) in &pb {
        if !pa.contains_key(k) {
            out.push(change(
                "process-started",
                Some(p.pid),
                &p.comm,
                None,
                Some(p.argv.join(" ")),
            ));
        }
    }
    for (k, x) in &pa {
        let Some(y) = pb.get(k) else { continue };
        common.insert(x.pid);
        let pid = Some(x.pid);
        if x.argv != y.argv {
            out.push(change(
                "argv-changed",
                pid,
                &x.comm,
                Some(x.argv.join(" ")),
                Some(y.argv.join(" ")),
            ));
        }
        let (ea, eb) = (env_map(x), env_map(y));
        let names: BTreeSet<&str> = ea.keys().chain(eb.keys()).copied().collect();
        for n in names {
            let (va, vb) = (ea.get(n), eb.get(n));
            if va != vb {
                out.push(change(
                    "env-changed",
                    pid,
                    n,
                    va.map(|v| v.to_string()),
                    vb.map(|v| v.to_string()),
                ));
            }
        }
        let (ca, cb) = (creds(x), creds(y));
        if ca != cb {
            out.push(change("creds-changed", pid, &x.comm, Some(ca), Some(cb)));
        }
    }
    common
}

/// What of a thread is compared: its name, signal masks and seccomp mode (not its registers,
/// state or syscall, which move on between any two checkpoints).
fn thread_desc(t: &ThreadRow) -> String {
    format!(
        "{} blocked={} pending={} seccomp={}",
        t.comm,
        t.blocked.join(","),
        t.pending.join(","),
        t.seccomp
    )
}

fn threads(a: &Inspection, b: &Inspection, common: &BTreeSet<u32>, out: &mut Vec<Change>) {
    let map = |i: &Inspection| -> BTreeMap<(u32, u32), String> {
        i.threads
            .iter()
            .filter(|t| common.contains(&t.pid))
            .map(|t| ((t.pid, t.tid), thread_desc(t)))
            .collect()
    };
    keyed(&map(a), &map(b), out, ("thread", ADDED), |&(pid, tid)| {
        (Some(pid), format!("tid {tid}"))
    });
}

/// What of a timer is compared: its clock, signal and interval (not when it fires next).
fn timer_desc(t: &TimerRow) -> String {
    format!(
        "clock={} signal={} interval_s={}",
        t.clock.as_deref().unwrap_or("-"),
        t.signal.as_deref().unwrap_or("-"),
        t.interval_s
    )
}

fn timers(a: &Inspection, b: &Inspection, common: &BTreeSet<u32>, out: &mut Vec<Change>) {
    let map = |i: &Inspection| -> BTreeMap<(u32, String, Option<u32>), String> {
        i.timers
            .iter()
            .filter(|t| common.contains(&t.pid))
            .map(|t| ((t.pid, t.kind.clone(), t.id), timer_desc(t)))
            .collect()
    };
    keyed(
        &map(a),
        &map(b),
        out,
        ("timer", ADDED),
        |(pid, kind, id)| {
            let what = match id {
                Some(id) => format!("{kind} {id}"),
                None => kind.clone(),
            };
            (Some(*pid), what)
        },
    );
}

/// A namespace as compared: what it holds (not CRIU's id for it, nor its pids).
fn namespace_desc(n: &NamespaceRow) -> String {
    let c = |v: Option<usize>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    format!(
        "hostname={} domainname={} shm={} msg={} sem={} interfaces={}",
        n.hostname.as_deref().unwrap_or("-"),
        n.domainname.as_deref().unwrap_or("-"),
        c(n.shm_segments),
        c(n.msg_queues),
        c(n.sem_sets),
        n.interfaces.join(",")
    )
}

fn namespaces(a: &Inspection, b: &Inspection, out: &mut Vec<Change>) {
    // Namespaces of one kind, by what they hold: a container usually has one of each.
    let map = |i: &Inspection| -> BTreeMap<String, BTreeSet<String>> {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for n in &i.namespaces {
            m.entry(n.kind.clone())
                .or_default()
                .insert(namespace_desc(n));
        }
        m
    };
    let (ma, mb) = (map(a), map(b));
    let kinds: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for k in kinds {
        let (x, y) = (ma.get(k), mb.get(k));
        if x != y {
            let join = |s: Option<&BTreeSet<String>>| {
                s.map(|s| s.iter().cloned().collect::<Vec<_>>().join("; "))
            };
            out.push(change("namespace-changed", None, k, join(x), join(y)));
        }
    }
}

/// The words for an object that appears and one that goes.
const ADDED: (&str, &str) = ("added", "removed");
const OPENED: (&str, &str) = ("opened", "closed");

/// A descriptor's pid and `what` (`fd N`).
fn by_fd(&(pid, fd): &(u32, u32)) -> (Option<u32>, String) {
    (Some(pid), format!("fd {fd}"))
}

/// `NOUN-added`/`-removed` (or `-opened`/`-closed`, as `words` say) and `NOUN-changed`
/// records for two maps of described objects; `label` gives each key's pid and `what`.
fn keyed<K: Ord>(
    a: &BTreeMap<K, String>,
    b: &BTreeMap<K, String>,
    out: &mut Vec<Change>,
    (noun, (appeared, went)): (&str, (&str, &str)),
    label: impl Fn(&K) -> (Option<u32>, String),
) {
    let keys: BTreeSet<&K> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        let kind = match (x, y) {
            (Some(_), None) => format!("{noun}-{went}"),
            (None, Some(_)) => format!("{noun}-{appeared}"),
            (Some(x), Some(y)) if x != y => format!("{noun}-changed"),
            _ => continue,
        };
        let (pid, what) = label(k);
        out.push(change(&kind, pid, what, x.cloned(), y.cloned()));
    }
}

fn file_desc(path: &str, deleted: bool) -> String {
    if deleted {
        format!("{path} (deleted)")
    } else {
        path.to_string()
    }
}

fn files(a: &Inspection, b: &Inspection, common: &BTreeSet<u32>, out: &mut Vec<Change>) {
    // Socket descriptors are compared as sockets.
    let map = |i: &Inspection| -> BTreeMap<(u32, u32), String> {
        i.files
            .iter()
            .filter(|f| common.contains(&f.pid) && !f.kind.ends_with("sk"))
            .map(|f| {
                (
                    (f.pid, f.fd),
                    format!("{} {}", f.kind, file_desc(&f.path, f.deleted)),
                )
            })
            .collect()
    };
    keyed(&map(a), &map(b), out, ("file", OPENED), by_fd);
}

fn socket_desc(s: &SocketRow) -> String {
    let q = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let mut d = format!("{} {}", s.family, s.kind);
    for part in [&s.proto, &s.state] {
        if !part.is_empty() {
            d.push(' ');
            d.push_str(part);
        }
    }
    d.push_str(&format!(" local={} remote={}", s.local, s.remote));
    if !s.peer.is_empty() {
        d.push_str(&format!(" peer={}", s.peer.join(",")));
    }
    d.push_str(&format!(
        " recv-q={} send-q={}",
        q(s.recv_queue),
        q(s.send_queue)
    ));
    d
}

fn sockets(a: &Inspection, b: &Inspection, common: &BTreeSet<u32>, out: &mut Vec<Change>) {
    let map = |i: &Inspection| -> BTreeMap<(u32, u32), String> {
        i.sockets
            .iter()
            .filter(|s| common.contains(&s.pid))
            .map(|s| ((s.pid, s.fd), socket_desc(s)))
            .collect()
    };
    keyed(&map(a), &map(b), out, ("socket", OPENED), by_fd);
}

fn mounts(a: &Inspection, b: &Inspection, out: &mut Vec<Change>) {
    let set = |i: &Inspection| -> BTreeMap<String, String> {
        i.mounts
            .iter()
            .map(|m| {
                (
                    format!("{} {} {} {}", m.target, m.fstype, m.source, m.options),
                    m.target.clone(),
                )
            })
            .collect()
    };
    let (ma, mb) = (set(a), set(b));
    for (k, t) in &ma {
        if !mb.contains_key(k) {
            out.push(change("mount-removed", None, t, Some(k.clone()), None));
        }
    }
    for (k, t) in &mb {
        if !ma.contains_key(k) {
            out.push(change("mount-added", None, t, None, Some(k.clone())));
        }
    }
}

fn rootfs(a: &Inspection, b: &Inspection, out: &mut Vec<Change>) {
    let map = |i: &Inspection| -> BTreeMap<String, String> {
        i.rootfs
            .iter()
            .map(|r| {
                let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                (
                    r.path.clone(),
                    format!(
                        "{} {} mode={} size={} sha256={}{}",
                        r.status,
                        r.kind,
                        o(&r.mode),
                        r.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                        o(&r.sha256),
                        r.link
                            .as_ref()
                            .map(|l| format!(" -> {l}"))
                            .unwrap_or_default()
                    ),
                )
            })
            .collect()
    };
    let (ra, rb) = (map(a), map(b));
    let keys: BTreeSet<&String> = ra.keys().chain(rb.keys()).collect();
    for k in keys {
        let (x, y) = (ra.get(k), rb.get(k));
        let kind = match (x, y) {
            (Some(_), None) => "rootfs-entry-removed",
            (None, Some(_)) => "rootfs-entry-added",
            (Some(x), Some(y)) if x != y => "rootfs-entry-changed",
            _ => continue,
        };
        out.push(change(kind, None, k, x.cloned(), y.cloned()));
    }
}

fn prot(p: u32) -> String {
    let mut s = String::new();
    s.push(if p & 1 != 0 { 'r' } else { '-' });
    s.push(if p & 2 != 0 { 'w' } else { '-' });
    s.push(if p & 4 != 0 { 'x' } else { '-' });
    s
}

/// The VMAs of `pid`: (start, end) -> protection.
fn vmas(src: &CheckpointSource, pid: u32) -> Result<BTreeMap<(u64, u64), u32>, InspectError> {
    let name = format!("{CHECKPOINT_DIR}mm-{pid}.img");
    let Some(bytes) = src.read_optional(&name, MAX_MM_BYTES)? else {
        return Ok(BTreeMap::new());
    };
    let mm: proto::MmEntry = match ImageReader::from_bytes(&bytes, name.as_str())?.next_entry()? {
        Some(e) => e.decode()?,
        None => return Ok(BTreeMap::new()),
    };
    Ok(mm.vmas.iter().map(|v| ((v.start, v.end), v.prot)).collect())
}

/// A SHA-256 of every page of `pid` dumped in this checkpoint, by address, read in one pass
/// over the pages member (which is verified at its end).
fn page_hashes(src: &CheckpointSource, pid: u32) -> Result<BTreeMap<u64, [u8; 32]>, InspectError> {
    let name = format!("{CHECKPOINT_DIR}pagemap-{pid}.img");
    if src.member(&name).is_none() {
        return Ok(BTreeMap::new());
    }
    let index = PageIndex::load(src, pid)?;
    let member = index.pages_member().to_string();
    let mut runs: Vec<_> = index
        .runs()
        .iter()
        .filter_map(|r| r.offset.map(|o| (o, r.vaddr, r.nr_pages)))
        .collect();
    if runs.is_empty() {
        return Ok(BTreeMap::new());
    }
    runs.sort_unstable();
    let mut r = src.reader(&member)?;
    let mut pos = 0u64;
    let page_size = index.page_size();
    let mut page = vec![0u8; page_size as usize];
    let mut out = BTreeMap::new();
    let err = |e| src.member_err(&member, e);
    for (off, vaddr, n) in runs {
        if off < pos {
            return Err(InspectError::BadMember {
                member: format!("{CHECKPOINT_DIR}pagemap-{pid}.img"),
                reason: format!("page runs overlap at offset {off}"),
            });
        }
        std::io::copy(&mut (&mut r).take(off - pos), &mut std::io::sink()).map_err(err)?;
        pos = off;
        for i in 0..n {
            // Checked: a hostile pagemap may claim runs past the end of the address space.
            let addr = i
                .checked_mul(page_size)
                .and_then(|o| vaddr.checked_add(o))
                .ok_or_else(|| InspectError::BadMember {
                    member: format!("{CHECKPOINT_DIR}pagemap-{pid}.img"),
                    reason: format!("a run at {vaddr:#x} of {n} pages overflows"),
                })?;
            r.read_exact(&mut page).map_err(err)?;
            pos += page_size;
            out.insert(addr, Sha256::digest(&page).into());
        }
    }
    // To the end, so the member is checked against the manifest.
    std::io::copy(&mut r, &mut std::io::sink()).map_err(err)?;
    Ok(out)
}

fn memory(
    a: &CheckpointSource,
    b: &CheckpointSource,
    pid: u32,
    opts: &DiffOptions,
    out: &mut Vec<Change>,
) -> Result<(), InspectError> {
    let (va, vb) = (vmas(a, pid)?, vmas(b, pid)?);
    let range = |(s, e): (u64, u64)| format!("{s:#x}-{e:#x}");
    let keys: BTreeSet<_> = va.keys().chain(vb.keys()).copied().collect();
    for k in keys {
        let (x, y) = (va.get(&k), vb.get(&k));
        let kind = match (x, y) {
            (Some(_), None) => "vma-removed",
            (None, Some(_)) => "vma-added",
            (Some(x), Some(y)) if x != y => "vma-protection-changed",
            _ => continue,
        };
        out.push(change(
            kind,
            Some(pid),
            range(k),
            x.map(|&p| prot(p)),
            y.map(|&p| prot(p)),
        ));
    }
    let (ha, hb) = (page_hashes(a, pid)?, page_hashes(b, pid)?);
    let addrs: BTreeSet<u64> = ha.keys().chain(hb.keys()).copied().collect();
    let short = |h: Option<&[u8; 32]>| h.map(|h| hex::encode(&h[..8]));
    let mut n = 0usize;
    let mut each = Vec::new();
    for addr in addrs {
        let (x, y) = (ha.get(&addr), hb.get(&addr));
        if x == y {
            continue;
        }
        n += 1;
        if opts.pages {
            each.push(change(
                "page-differs",
                Some(pid),
                format!("{addr:#x}"),
                short(x),
                short(y),
            ));
        }
    }
    if n > 0 {
        out.push(change(
            "pages-differ",
            Some(pid),
            n.to_string(),
            Some(format!("{} pages dumped", ha.len())),
            Some(format!("{} pages dumped", hb.len())),
        ));
        out.extend(each);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::model::FileRow;

    fn proc_row(pid: u32, comm: &str, env: &[&str]) -> ProcessRow {
        ProcessRow {
            pid,
            comm: comm.into(),
            env: env.iter().map(|e| e.to_string()).collect(),
            ..ProcessRow::default()
        }
    }

    #[test]
    fn processes_match_by_pid_and_comm() {
        let a = Inspection {
            processes: vec![
                proc_row(1, "init", &["A=1", "B=2"]),
                proc_row(5, "old", &[]),
            ],
            ..Inspection::default()
        };
        let b = Inspection {
            processes: vec![
                proc_row(1, "init", &["A=1", "C=3"]),
                proc_row(5, "new", &[]),
            ],
            ..Inspection::default()
        };
        let mut out = Vec::new();
        let common = processes(&a, &b, &mut out);
        assert_eq!(common, BTreeSet::from([1]));
        let kinds: Vec<(&str, &str)> = out
            .iter()
            .map(|c| (c.kind.as_str(), c.what.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("process-ended", "old"),
                ("process-started", "new"),
                ("env-changed", "B"),
                ("env-changed", "C")
            ]
        );
        assert_eq!(out[2].before.as_deref(), Some("2"));
        assert_eq!(out[2].after, None);
    }

    #[test]
    fn files_of_common_processes_by_fd() {
        let f = |pid, fd, path: &str, deleted| FileRow {
            pid,
            fd,
            kind: "reg".into(),
            path: path.into(),
            deleted,
            ..FileRow::default()
        };
        let a = Inspection {
            files: vec![
                f(1, 3, "/x", false),
                f(1, 4, "/y", false),
                f(9, 3, "/z", false),
            ],
            ..Inspection::default()
        };
        let b = Inspection {
            files: vec![f(1, 3, "/x", true), f(1, 5, "/w", false)],
            ..Inspection::default()
        };
        let mut out = Vec::new();
        files(&a, &b, &BTreeSet::from([1]), &mut out);
        let kinds: Vec<&str> = out.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["file-changed", "file-closed", "file-opened"]);
        assert_eq!(out[0].after.as_deref(), Some("reg /x (deleted)"));
    }

    #[test]
    fn protection_is_rwx() {
        assert_eq!(prot(0), "---");
        assert_eq!(prot(3), "rw-");
        assert_eq!(prot(5), "r-x");
    }
}
