//! What reel checks of a container before it freezes it, so that a dump that cannot work is
//! refused while the workload still runs, and CRIU is told what it must know:
//!
//! * processes of another uid or gid when reel lacks CAP_SYS_RESOURCE (CRIU reads every task's
//!   rlimits and fails with `Can't get rlimit` after the freeze);
//! * open-but-deleted files larger than the ghost-file limit (CRIU fails the whole dump on
//!   one), named with their size;
//! * unix sockets whose peer is outside the container (a host daemon's socket): declared to
//!   CRIU as external by inode (`unix[<ino>]`), so the dump succeeds and the connection
//!   keeps working, and recorded in the manifest so a later restore can hand each a
//!   substitute.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CheckpointError, CheckpointOptions};
use crate::discovery::Container;
use crate::host;

/// A unix socket of the container whose peer is outside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalUnixSocket {
    /// A process of the container holding it, and the fd.
    pub pid: i32,
    pub fd: i32,
    /// The socket's inode (what CRIU is told: `unix[<inode>]`).
    pub inode: u32,
    /// `stream`, `dgram` or `seqpacket`.
    pub kind: String,
    /// The socket's own name, when bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The peer's inode.
    pub peer_inode: u32,
    /// The peer's name (its listener's path, `@abstract`), when the kernel shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
}

/// An open file of the container whose path was deleted (dumped as a CRIU ghost file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedFile {
    pub pid: i32,
    pub fd: i32,
    pub path: String,
    pub size: u64,
}

/// What the inspection found.
#[derive(Debug, Clone, Default)]
pub struct Preflight {
    /// The container's processes.
    pub processes: Vec<i32>,
    pub external_unix_sockets: Vec<ExternalUnixSocket>,
    pub deleted_files: Vec<DeletedFile>,
}

/// The container's processes: its cgroup's, else the init and its descendants.
fn processes(c: &Container, pid: i32) -> Vec<i32> {
    let proc_root = Path::new(host::PROC);
    let from_cgroup = c
        .cgroups
        .freezer_dir()
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .filter(|p| p.contains(&pid));
    let mut out = from_cgroup.unwrap_or_else(|| host::descendants(proc_root, pid));
    out.sort_unstable();
    out.dedup();
    out
}

fn kind_name(kind: u8) -> &'static str {
    match i32::from(kind) {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "dgram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "other",
    }
}

/// Inspects the container whose init is `pid`.
pub fn inspect(
    c: &Container,
    pid: i32,
    opts: &CheckpointOptions,
) -> Result<Preflight, CheckpointError> {
    let proc_root = Path::new(host::PROC);
    let processes = processes(c, pid);
    check_users(&processes)?;

    // Every fd of every process: deleted files, and the inodes of the sockets they hold.
    let mut deleted_files = Vec::new();
    let mut held: BTreeMap<u32, (i32, i32)> = BTreeMap::new();
    for &p in &processes {
        for (fd, target) in host::fds(proc_root, p) {
            if let Some(ino) = host::socket_inode(&target) {
                held.entry(ino).or_insert((p, fd));
            } else if let Some(path) = host::deleted_file(&target) {
                let link = PathBuf::from(format!("/proc/{p}/fd/{fd}"));
                // stat(2) through the fd link: the open file itself.
                let Ok(meta) = std::fs::metadata(&link) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                deleted_files.push(DeletedFile {
                    pid: p,
                    fd,
                    path: path.to_owned(),
                    size: meta.len(),
                });
            }
        }
    }
    if let Some(f) = deleted_files.iter().find(|f| f.size > opts.ghost_limit) {
        return Err(CheckpointError::GhostTooLarge {
            pid: f.pid,
            path: f.path.clone(),
            size: f.size,
            limit: opts.ghost_limit,
        });
    }

    let external_unix_sockets = external_unix_sockets(pid, &held)?;
    Ok(Preflight {
        processes,
        external_unix_sockets,
        deleted_files,
    })
}

/// CRIU needs CAP_SYS_RESOURCE for a task whose uids or gids differ from its own.
fn check_users(processes: &[i32]) -> Result<(), CheckpointError> {
    use caps::{CapSet, Capability};
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_RESOURCE).unwrap_or(false) {
        return Ok(());
    }
    let me_uid = nix::unistd::geteuid().as_raw();
    let me_gid = nix::unistd::getegid().as_raw();
    for &p in processes {
        let Some(st) = host::status(Path::new(host::PROC), p) else {
            continue;
        };
        let other_uid = st.uids.iter().find(|u| **u != me_uid);
        let other_gid = st.gids.iter().find(|g| **g != me_gid);
        if other_uid.is_some() || other_gid.is_some() {
            return Err(CheckpointError::OtherUser {
                pid: p,
                uid: st.uids[1],
                gid: st.gids[1],
            });
        }
    }
    Ok(())
}

/// The container's unix sockets whose peer no process of the container holds.
fn external_unix_sockets(
    pid: i32,
    held: &BTreeMap<u32, (i32, i32)>,
) -> Result<Vec<ExternalUnixSocket>, CheckpointError> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let inside = host::unix_sockets(Some(&netns)).map_err(|source| CheckpointError::Inspect {
        path: netns.clone(),
        source,
    })?;
    let mine: BTreeSet<u32> = held.keys().copied().collect();
    let mut out = Vec::new();
    let mut names: Option<BTreeMap<u32, Option<String>>> = None;
    for s in &inside {
        let (Some(peer), Some(&(p, fd))) = (s.peer, held.get(&s.inode)) else {
            continue;
        };
        if mine.contains(&peer) {
            continue;
        }
        // The peer may live in another network namespace (a host daemon's listener reached
        // through a bind-mounted path): look for its name there too.
        let mut peer_name = inside
            .iter()
            .find(|o| o.inode == peer)
            .and_then(|o| o.name.clone());
        if peer_name.is_none() {
            let host_names = names.get_or_insert_with(|| {
                host::unix_sockets(None)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|o| (o.inode, o.name))
                    .collect()
            });
            peer_name = host_names.get(&peer).cloned().flatten();
        }
        out.push(ExternalUnixSocket {
            pid: p,
            fd,
            inode: s.inode,
            kind: kind_name(s.kind).to_owned(),
            name: s.name.clone(),
            peer_inode: peer,
            peer_name,
        });
    }
    Ok(out)
}
