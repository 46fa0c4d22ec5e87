//! Processes as /proc shows them: the tree, states, tracers, peak memory.

use std::fs;
use std::path::Path;

/// A process, from /proc/<pid>/stat and cmdline.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// The state letter (`R`, `S`, `D`, `T`, `Z`, ...).
    pub state: char,
    pub comm: String,
    pub args: Vec<String>,
}

/// Every process now (zombies included, with their state `Z`).
pub fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let args = fs::read(e.path().join("cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push(Proc {
            pid,
            ppid: f[1].parse().unwrap_or(0),
            pgid: f[2].parse().unwrap_or(0),
            state: f[0].chars().next().unwrap_or('?'),
            comm,
            args,
        });
    }
    out
}

/// Live (not zombie) processes matching `f`.
pub fn live_processes(f: impl Fn(&Proc) -> bool) -> Vec<Proc> {
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && f(p))
        .collect()
}

/// The children of `pid`.
pub fn children_of(pid: i32) -> Vec<Proc> {
    live_processes(|p| p.ppid == pid)
}

/// Processes of process group `pgid` (a CRIU and its helpers: reel starts CRIU as the leader
/// of its own group).
pub fn group_members(pgid: i32) -> Vec<Proc> {
    live_processes(|p| p.pgid == pgid)
}

/// The freeze watchdogs (`reel-freeze-watchdog <file> <value>`) for a file under `dir`.
pub fn watchdogs_for(dir: &Path) -> Vec<Proc> {
    let dir = dir.to_string_lossy().into_owned();
    live_processes(|p| {
        p.args.iter().any(|a| a == "reel-freeze-watchdog")
            && p.args.iter().any(|a| a.starts_with(&dir))
    })
}

/// The state letter of process `pid`, None when it is gone.
pub fn state_of(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Process `pid` exists and is neither a zombie nor dead.
pub fn is_running(pid: i32) -> bool {
    matches!(state_of(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The tracer of task `tid` (TracerPid), if any.
pub fn tracer_of(tid: i32) -> Option<i32> {
    status_field(tid, "TracerPid:")
        .and_then(|v| v.parse().ok())
        .filter(|p| *p != 0)
}

/// VmHWM (kB), the peak resident memory of `pid`, if readable.
pub fn vm_hwm_kb(pid: i32) -> Option<u64> {
    status_field(pid, "VmHWM:")?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The memory `pid` allocated itself (kB): RssAnon + RssShmem, its heap, stacks and buffers,
/// without the pages of its binary and libraries (a debug build of reel maps ~150 MB of code and
/// keeps ~20 MiB of it resident, which a release build does not).
pub fn rss_own_kb(pid: i32) -> Option<u64> {
    let kb = |field| {
        status_field(pid, field)?
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    };
    Some(kb("RssAnon:")? + kb("RssShmem:")?)
}

/// The value of `field` (with its colon) in /proc/<pid>/status, trimmed.
fn status_field(pid: i32, field: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
}
