//! `reel search`: find bytes in the memory of every process of a checkpoint.
//!
//! Each process's pages member is streamed once, in order, in chunks of [`CHUNK`] bytes; the
//! last bytes of a chunk are carried into the next one when the next bytes are virtually
//! contiguous (the same run, or a run that starts where the last one ended), so a hit that
//! straddles two pages is found, and one that would join two unrelated runs is not. Memory
//! stays bounded: one chunk plus the carry. Each hit is tied to its VMA from `mm-<pid>.img`.
//!
//! Matching is done by `memchr::memmem` (literals) and `regex::bytes` (regular expressions,
//! case-insensitive literals). A regex match is found whole only when it is at most
//! [`REGEX_WINDOW`] bytes long or lies within one chunk.

use std::collections::BTreeMap;
use std::io::Read;

use criu_sys::proto;
use serde::Serialize;

use super::load::{entries, first};
use super::model::{FindingRow, MapRow};
use super::pages::{PageIndex, PAGE_SIZE};
use super::source::CheckpointSource;
use super::InspectError;
use crate::archive::CHECKPOINT_DIR;
use crate::criu::image::vma::{
    VMA_ANON_SHARED, VMA_AREA_HEAP, VMA_AREA_STACK, VMA_AREA_VDSO, VMA_AREA_VSYSCALL,
    VMA_AREA_VVAR, VMA_FILE_PRIVATE, VMA_FILE_SHARED,
};

/// The bytes scanned at a time.
pub const CHUNK: usize = 1 << 20;
/// How many bytes of the end of a chunk a regex search carries into the next.
pub const REGEX_WINDOW: usize = 4096;
/// The most context bytes shown on each side of a hit.
pub const MAX_CONTEXT: usize = 4096;
/// The most hits listed when no `max_hits` is given (counting goes on past it): memory stays
/// bounded (a hit with the largest context holds ~16 KiB) however common the pattern.
pub const DEFAULT_LISTED_HITS: u64 = 10_000;

const MAP_SHARED: u32 = 1;

/// How the pattern is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PatternKind {
    /// The bytes of the text.
    #[default]
    Literal,
    /// A `regex::bytes` regular expression (Unicode off: `.` is any byte).
    Regex,
    /// Hex bytes, spaces allowed: `de ad be ef`.
    Hex,
    /// The text as UTF-16LE.
    Utf16,
}

/// What to search for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern as given.
    pub text: String,
    /// How to read it.
    pub kind: PatternKind,
    /// ASCII case-insensitive (literal and UTF-16 patterns).
    pub ignore_case: bool,
}

/// A kind of memory region, for `--region`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// `[heap]`.
    Heap,
    /// `[stack]` and every VMA holding a thread's stack pointer.
    Stack,
    /// Not backed by a file (heap and stacks included).
    Anon,
    /// Backed by a file.
    File,
    /// Executable.
    Exec,
    /// Shared (`MAP_SHARED`, shared anonymous memory).
    Shared,
    /// Everything.
    All,
}

impl std::str::FromStr for RegionKind {
    type Err = InspectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "heap" => RegionKind::Heap,
            "stack" => RegionKind::Stack,
            "anon" => RegionKind::Anon,
            "file" => RegionKind::File,
            "exec" => RegionKind::Exec,
            "shared" => RegionKind::Shared,
            "all" => RegionKind::All,
            _ => {
                return Err(InspectError::BadPattern {
                    reason: format!(
                        "region {s:?}: use heap, stack, anon, file, exec, shared or all"
                    ),
                })
            }
        })
    }
}

/// What to search and how much to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchOptions {
    /// Only these processes (all when empty).
    pub pids: Vec<u32>,
    /// Only hits in regions of one of these kinds (all when empty).
    pub regions: Vec<RegionKind>,
    /// Only hits in regions with these permissions: `r-x` (exactly) or `wx` (at least).
    pub perms: Option<String>,
    /// Only hits in `[start, end)`.
    pub address: Option<(u64, u64)>,
    /// Stop after this many hits.
    pub max_hits: Option<u64>,
    /// Count hits only (no hit list).
    pub count_only: bool,
    /// Context bytes on each side of a hit (at most [`MAX_CONTEXT`]).
    pub context: usize,
}

/// One hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// The process.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// The virtual address, `0x…`.
    pub address: String,
    /// The region, `0xSTART-0xEND`.
    pub region: String,
    /// Its protection, `rwxp` as in `/proc/PID/maps`.
    pub perms: String,
    /// `[heap]`, `[stack]`, `[vdso]`, a file path, or empty for anonymous memory.
    pub path: String,
    /// The file offset of the region's start (file mappings).
    pub file_offset: u64,
    /// The hit's offset in the region.
    pub offset: u64,
    /// The address of the first context byte, `0x…`.
    pub context_address: String,
    /// The context bytes (before, the hit, after), hex.
    pub context_hex: String,
    /// The hit's length in bytes.
    pub len: usize,
}

/// What a search found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SearchResult {
    /// The pattern as bytes (hex) when it is not a regex.
    pub pattern_hex: Option<String>,
    /// How many hits (all of them, also with `count_only`).
    pub count: u64,
    /// Hits per process.
    pub per_pid: BTreeMap<u32, u64>,
    /// Bytes of memory scanned.
    pub bytes_scanned: u64,
    /// The search stopped at `max_hits`.
    pub truncated: bool,
    /// Hits counted but not listed: past [`DEFAULT_LISTED_HITS`] without `max_hits`.
    pub unlisted: u64,
    /// The hits (empty with `count_only`).
    pub hits: Vec<Hit>,
}

impl SearchResult {
    /// Whether anything was found.
    pub fn found(&self) -> bool {
        self.count > 0
    }
}

enum Matcher {
    Lit(Box<memchr::memmem::Finder<'static>>),
    Re(regex::bytes::Regex),
}

impl Matcher {
    /// Calls `f(start, end)` for each match in `buf`.
    fn each(&self, buf: &[u8], mut f: impl FnMut(usize, usize) -> bool) {
        match self {
            Matcher::Lit(m) => {
                let n = m.needle().len();
                for s in m.find_iter(buf) {
                    if !f(s, s + n) {
                        return;
                    }
                }
            }
            Matcher::Re(r) => {
                for m in r.find_iter(buf) {
                    if !f(m.start(), m.end()) {
                        return;
                    }
                }
            }
        }
    }
}

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::BadPattern {
        reason: reason.into(),
    }
}

/// Parses `de ad be ef` / `deadbeef` / `0xde 0xad`.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, InspectError> {
    let mut digits = String::new();
    for part in s.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
        let p = part
            .strip_prefix("0x")
            .or_else(|| part.strip_prefix("0X"))
            .unwrap_or(part);
        digits.push_str(p);
    }
    if digits.is_empty() {
        return Err(bad("the hex pattern is empty"));
    }
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "{s:?} is not hex: {c:?} is not a hex digit (write bytes as `de ad be ef`)"
        )));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(bad(format!(
            "{s:?} is not whole bytes: an odd number of hex digits"
        )));
    }
    hex::decode(&digits).map_err(|e| bad(format!("{s:?}: {e}")))
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Checks that `p` can be searched for (not empty, valid hex, a valid regex).
pub fn validate(p: &Pattern) -> Result<(), InspectError> {
    compile(p).map(|_| ())
}

/// A compiled pattern: the matcher, the longest a match can be (None: unbounded), the bytes.
type Compiled = (Matcher, Option<usize>, Option<Vec<u8>>);

fn compile(p: &Pattern) -> Result<Compiled, InspectError> {
    if p.text.is_empty() {
        return Err(bad("the pattern is empty"));
    }
    let re = |src: &str| {
        regex::bytes::RegexBuilder::new(src)
            .unicode(false)
            .size_limit(16 << 20)
            .build()
            .map_err(|e| bad(format!("{e}")))
    };
    let bytes = match p.kind {
        PatternKind::Regex => {
            let r = re(&p.text)?;
            return Ok((Matcher::Re(r), None, None));
        }
        PatternKind::Literal => p.text.as_bytes().to_vec(),
        PatternKind::Hex => {
            if p.ignore_case {
                return Err(bad("--ignore-case does not apply to a hex pattern"));
            }
            parse_hex(&p.text)?
        }
        PatternKind::Utf16 => utf16(&p.text),
    };
    if p.ignore_case {
        // Each byte escaped; ASCII letters match either case, as bytes.
        let mut src = String::from("(?i-u)");
        for b in &bytes {
            if b.is_ascii_alphanumeric() {
                src.push(*b as char);
            } else {
                src.push_str(&format!("\\x{b:02x}"));
            }
        }
        let n = bytes.len();
        return Ok((Matcher::Re(re(&src)?), Some(n), Some(bytes)));
    }
    let n = bytes.len();
    let f = memchr::memmem::Finder::new(&bytes).into_owned();
    Ok((Matcher::Lit(Box::new(f)), Some(n), Some(bytes)))
}

/// A VMA as the search sees it.
#[derive(Debug, Clone)]
struct Vma {
    start: u64,
    end: u64,
    prot: u32,
    flags: u32,
    status: u32,
    pgoff: u64,
    path: String,
    stack: bool,
}

impl Vma {
    fn perms(&self) -> String {
        let mut s = String::new();
        s.push(if self.prot & 1 != 0 { 'r' } else { '-' });
        s.push(if self.prot & 2 != 0 { 'w' } else { '-' });
        s.push(if self.prot & 4 != 0 { 'x' } else { '-' });
        s.push(if self.shared() { 's' } else { 'p' });
        s
    }

    fn file(&self) -> bool {
        self.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0
    }

    fn shared(&self) -> bool {
        self.flags & MAP_SHARED != 0 || self.status & (VMA_FILE_SHARED | VMA_ANON_SHARED) != 0
    }

    fn is(&self, k: RegionKind) -> bool {
        match k {
            RegionKind::Heap => self.status & VMA_AREA_HEAP != 0,
            RegionKind::Stack => self.stack,
            RegionKind::Anon => !self.file(),
            RegionKind::File => self.file(),
            RegionKind::Exec => self.prot & 4 != 0,
            RegionKind::Shared => self.shared(),
            RegionKind::All => true,
        }
    }
}

fn perms_match(want: &str, have: &str) -> bool {
    if want.contains('-') || want.len() == 4 {
        return have.starts_with(want);
    }
    want.chars().all(|c| have.contains(c))
}

/// The VMAs of `pid`, with paths, by start address.
fn vmas(
    src: &CheckpointSource,
    pid: u32,
    tids: &[u32],
    files: &BTreeMap<u32, String>,
) -> Result<Vec<Vma>, InspectError> {
    let Some(mm) = first::<proto::MmEntry>(src, &format!("mm-{pid}.img"))? else {
        return Ok(Vec::new());
    };
    let mut sps = Vec::new();
    for &tid in tids {
        if let Some(core) = first::<proto::CoreEntry>(src, &format!("core-{tid}.img"))? {
            if let Some(ti) = core.thread_info.as_ref() {
                sps.push(ti.gpregs.sp);
            }
        }
    }
    let mut out: Vec<Vma> = mm
        .vmas
        .iter()
        .map(|v| {
            let path = if v.status & VMA_AREA_HEAP != 0 {
                "[heap]".to_string()
            } else if v.status & VMA_AREA_STACK != 0 {
                "[stack]".to_string()
            } else if v.status & VMA_AREA_VDSO != 0 {
                "[vdso]".to_string()
            } else if v.status & VMA_AREA_VVAR != 0 {
                "[vvar]".to_string()
            } else if v.status & VMA_AREA_VSYSCALL != 0 {
                "[vsyscall]".to_string()
            } else if v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
                u32::try_from(v.shmid)
                    .ok()
                    .and_then(|id| files.get(&id).cloned())
                    .unwrap_or_else(|| "(file)".into())
            } else {
                String::new()
            };
            Vma {
                start: v.start,
                end: v.end,
                prot: v.prot,
                flags: v.flags,
                status: v.status,
                pgoff: v.pgoff,
                stack: v.status & VMA_AREA_STACK != 0
                    || sps.iter().any(|&sp| v.start <= sp && sp < v.end),
                path,
            }
        })
        .collect();
    out.sort_by_key(|v| v.start);
    Ok(out)
}

fn vma_at(vmas: &[Vma], addr: u64) -> Option<&Vma> {
    let i = vmas.partition_point(|v| v.start <= addr);
    let v = vmas.get(i.checked_sub(1)?)?;
    (addr < v.end).then_some(v)
}

struct Scan<'a> {
    opts: &'a SearchOptions,
    matcher: &'a Matcher,
    carry_max: usize,
    out: &'a mut SearchResult,
}

impl Scan<'_> {
    fn done(&self) -> bool {
        self.opts.max_hits.is_some_and(|m| self.out.count >= m)
    }

    /// Searches `buf` (whose first byte is at `vaddr`; its first `carry` bytes were searched
    /// already).
    fn buffer(&mut self, pid: u32, comm: &str, vmas: &[Vma], buf: &[u8], vaddr: u64, carry: usize) {
        let opts = self.opts;
        let out = &mut *self.out;
        self.matcher.each(buf, |s, e| {
            if e <= carry || (e == s && s < carry) {
                return true;
            }
            let addr = vaddr + s as u64;
            if let Some((lo, hi)) = opts.address {
                if addr < lo || addr >= hi {
                    return true;
                }
            }
            let v = vma_at(vmas, addr);
            if !opts.regions.is_empty() && !v.is_some_and(|v| opts.regions.iter().any(|k| v.is(*k)))
            {
                return true;
            }
            if let Some(p) = &opts.perms {
                if !v.is_some_and(|v| perms_match(p, &v.perms())) {
                    return true;
                }
            }
            out.count += 1;
            *out.per_pid.entry(pid).or_default() += 1;
            let listed = opts.max_hits.unwrap_or(DEFAULT_LISTED_HITS);
            if !opts.count_only && out.hits.len() as u64 >= listed {
                out.unlisted += 1;
            } else if !opts.count_only {
                let c = opts.context.min(MAX_CONTEXT);
                let cs = s.saturating_sub(c);
                let ce = (e + c).min(buf.len());
                out.hits.push(Hit {
                    pid,
                    comm: comm.to_string(),
                    address: format!("{addr:#x}"),
                    region: v
                        .map(|v| format!("{:#x}-{:#x}", v.start, v.end))
                        .unwrap_or_else(|| "-".into()),
                    perms: v.map(Vma::perms).unwrap_or_else(|| "----".into()),
                    path: v.map(|v| v.path.clone()).unwrap_or_default(),
                    file_offset: v.map(|v| v.pgoff).unwrap_or(0),
                    offset: v.map(|v| addr - v.start).unwrap_or(0),
                    context_address: format!("{:#x}", vaddr + cs as u64),
                    context_hex: hex::encode(&buf[cs..ce]),
                    len: e - s,
                });
            }
            opts.max_hits.is_none_or(|m| out.count < m)
        });
    }

    /// Streams `pid`'s pages member once.
    fn process(
        &mut self,
        src: &CheckpointSource,
        pid: u32,
        comm: &str,
        vmas: &[Vma],
    ) -> Result<(), InspectError> {
        let pm_name = format!("{CHECKPOINT_DIR}pagemap-{pid}.img");
        if src.member(&pm_name).is_none() {
            return Ok(());
        }
        let index = PageIndex::load(src, pid)?;
        let member = index.pages_member().to_string();
        let mut runs: Vec<_> = index
            .runs()
            .iter()
            .filter_map(|r| r.offset.map(|o| (o, r.vaddr, r.nr_pages * PAGE_SIZE)))
            .collect();
        if runs.is_empty() {
            return Ok(());
        }
        runs.sort_unstable();
        let size = src.member(&member).map(|m| m.size).unwrap_or(0);
        let need = runs.last().map(|&(o, _, l)| o + l).unwrap_or(0);
        if need > size {
            return Err(InspectError::BadMember {
                member: member.clone(),
                reason: format!(
                    "{pm_name} lists {need} bytes of pages, the member holds {size}: it is truncated or the pagemap is wrong"
                ),
            });
        }
        let mut r = src.reader(&member)?;
        let err = |e| src.member_err(&member, e);
        let mut pos = 0u64;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + self.carry_max);
        // The virtual address just after the carried bytes.
        let mut carry_end: Option<u64> = None;
        for (off, vaddr, len) in runs {
            if off < pos {
                return Err(InspectError::BadMember {
                    member: pm_name.clone(),
                    reason: format!("page runs overlap at offset {off}"),
                });
            }
            std::io::copy(&mut (&mut r).take(off - pos), &mut std::io::sink()).map_err(err)?;
            pos = off;
            let mut at = vaddr;
            let mut left = len;
            while left > 0 {
                if carry_end != Some(at) {
                    buf.clear();
                }
                let carry = buf.len();
                let n = left.min(CHUNK as u64) as usize;
                buf.resize(carry + n, 0);
                r.read_exact(&mut buf[carry..]).map_err(err)?;
                pos += n as u64;
                left -= n as u64;
                let start = at - carry as u64;
                at += n as u64;
                self.out.bytes_scanned += n as u64;
                self.buffer(pid, comm, vmas, &buf, start, carry);
                if self.done() {
                    return Ok(());
                }
                let keep = self.carry_max.min(buf.len());
                buf.drain(..buf.len() - keep);
                carry_end = Some(at);
            }
        }
        // To the end, so the member is checked against the manifest.
        std::io::copy(&mut r, &mut std::io::sink()).map_err(err)?;
        Ok(())
    }
}

/// Searches the memory of the checkpoint's processes (see the module's documentation).
pub fn search(
    src: &CheckpointSource,
    pattern: &Pattern,
    opts: &SearchOptions,
) -> Result<SearchResult, InspectError> {
    let (matcher, max_len, bytes) = compile(pattern)?;
    if let Some((lo, hi)) = opts.address {
        if lo >= hi {
            return Err(bad(format!("the address range {lo:#x}-{hi:#x} is empty")));
        }
    }
    let pstree: Vec<proto::PstreeEntry> = entries(src, "pstree.img")?;
    if pstree.is_empty() {
        return Err(InspectError::BadMember {
            member: format!("{CHECKPOINT_DIR}pstree.img"),
            reason: "missing or empty: there is no process tree".into(),
        });
    }
    for &pid in &opts.pids {
        if !pstree.iter().any(|p| p.pid == pid) {
            return Err(InspectError::NoProcess { pid });
        }
    }
    let files = file_paths(src)?;
    let context = opts.context.min(MAX_CONTEXT);
    let carry_max = match max_len {
        Some(n) => (n - 1).max(context),
        None => REGEX_WINDOW.max(context),
    };
    let mut out = SearchResult {
        pattern_hex: bytes.map(hex::encode),
        ..Default::default()
    };
    let mut scan = Scan {
        opts,
        matcher: &matcher,
        carry_max,
        out: &mut out,
    };
    for p in &pstree {
        if !opts.pids.is_empty() && !opts.pids.contains(&p.pid) {
            continue;
        }
        let core = first::<proto::CoreEntry>(src, &format!("core-{}.img", p.pid))?;
        let tc = core.as_ref().and_then(|c| c.tc.as_ref());
        // Zombies have no memory.
        if tc.is_some_and(|tc| tc.task_state == 6) {
            continue;
        }
        let comm = tc.map(|tc| tc.comm.clone()).unwrap_or_default();
        let tids = if p.threads.is_empty() {
            vec![p.pid]
        } else {
            p.threads.clone()
        };
        let v = vmas(src, p.pid, &tids, &files)?;
        scan.process(src, p.pid, &comm, &v)?;
        if scan.done() {
            out.truncated = true;
            break;
        }
    }
    Ok(out)
}

/// The file paths of `files.img`'s regular files, by id.
fn file_paths(src: &CheckpointSource) -> Result<BTreeMap<u32, String>, InspectError> {
    Ok(entries::<proto::FileEntry>(src, "files.img")?
        .into_iter()
        .filter_map(|f| f.reg.map(|r| (f.id, r.name)))
        .collect())
}

/// Every VMA of every live process (or `pid`) as `/proc/PID/maps` shows it, with how many of
/// its pages the checkpoint holds, and the memory findings: writable+executable regions,
/// anonymous executable regions (not the vDSO), and dumped pages inside a private executable
/// file mapping (CRIU dumps such a page only once it was written: modified code), except the
/// first page of the first executable VMA, which CRIU's own syscall injection always leaves
/// written (a patch there is not reported).
pub fn maps(
    src: &CheckpointSource,
    pid: Option<u32>,
) -> Result<(Vec<MapRow>, Vec<FindingRow>), InspectError> {
    let pstree: Vec<proto::PstreeEntry> = entries(src, "pstree.img")?;
    let files = file_paths(src)?;
    let mut rows = Vec::new();
    let mut found = Vec::new();
    for p in &pstree {
        if pid.is_some_and(|want| want != p.pid) {
            continue;
        }
        let core = first::<proto::CoreEntry>(src, &format!("core-{}.img", p.pid))?;
        if core
            .as_ref()
            .and_then(|c| c.tc.as_ref())
            .is_some_and(|tc| tc.task_state == 6)
        {
            continue;
        }
        let tids = if p.threads.is_empty() {
            vec![p.pid]
        } else {
            p.threads.clone()
        };
        let vs = vmas(src, p.pid, &tids, &files)?;
        let index = if src
            .member(&format!("{CHECKPOINT_DIR}pagemap-{}.img", p.pid))
            .is_some()
        {
            Some(PageIndex::load(src, p.pid)?)
        } else {
            None
        };
        // CRIU (compel) runs its syscalls from the first bytes of the first executable VMA:
        // it writes a syscall instruction there and puts the bytes back, which leaves that
        // page a private copy in every dump. It is not counted as modified code.
        let compel_page = vs
            .iter()
            .find(|v| {
                v.prot & 4 != 0
                    && v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) == 0
            })
            .map(|v| v.start);
        for v in &vs {
            let dumped: u64 = index
                .iter()
                .flat_map(|ix| ix.runs())
                .filter(|r| r.is_present())
                .map(|r| {
                    let lo = r.vaddr.max(v.start);
                    let hi = r.end().min(v.end);
                    hi.saturating_sub(lo) / PAGE_SIZE
                })
                .sum();
            let perms = v.perms();
            let range = format!("{:#x}-{:#x}", v.start, v.end);
            let special = v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) != 0;
            let mut finding = |kind: &str, detail: String| {
                found.push(FindingRow {
                    kind: kind.into(),
                    pid: Some(p.pid),
                    what: range.clone(),
                    address: Some(format!("{:#x}", v.start)),
                    detail,
                })
            };
            let exec = v.prot & 4 != 0;
            if exec && v.prot & 2 != 0 {
                finding(
                    "writable-executable-memory",
                    format!(
                        "process {} has {range} {perms} {} writable and executable ({dumped} pages dumped)",
                        p.pid,
                        if v.path.is_empty() { "(anonymous)" } else { &v.path }
                    ),
                );
            }
            if exec && !v.file() && !special {
                finding(
                    "anonymous-executable-memory",
                    format!(
                        "process {} has anonymous executable memory {range} {perms} ({dumped} pages dumped)",
                        p.pid
                    ),
                );
            }
            let written = dumped
                - u64::from(
                    compel_page == Some(v.start)
                        && index
                            .as_ref()
                            .and_then(|ix| ix.run_at(v.start))
                            .is_some_and(|r| r.is_present()),
                );
            if exec && v.file() && !v.shared() && written > 0 {
                finding(
                    "modified-code",
                    format!(
                        "process {}: {written} page(s) of {} at {range} {perms} were written (private copies of code)",
                        p.pid, v.path
                    ),
                );
            }
            rows.push(MapRow {
                pid: p.pid,
                start: format!("{:#x}", v.start),
                end: format!("{:#x}", v.end),
                perms,
                offset: v.pgoff,
                path: v.path.clone(),
                kind: if v.stack && v.status & VMA_AREA_STACK == 0 {
                    "thread-stack".into()
                } else if v.path.starts_with('[') {
                    v.path.trim_matches(['[', ']']).into()
                } else if v.file() {
                    "file".into()
                } else {
                    "anon".into()
                },
                pages: (v.end - v.start) / PAGE_SIZE,
                pages_dumped: dumped,
            });
        }
    }
    Ok((rows, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_patterns() {
        assert_eq!(parse_hex("de ad be ef").unwrap(), [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(parse_hex("0xde,0xAD").unwrap(), [0xde, 0xad]);
        for bad in ["", "  ", "zz", "abc", "de ad b"] {
            assert!(parse_hex(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns_compile_or_say_why() {
        let p = |text: &str, kind, ic| Pattern {
            text: text.into(),
            kind,
            ignore_case: ic,
        };
        assert!(compile(&p("", PatternKind::Literal, false))
            .err()
            .unwrap()
            .to_string()
            .contains("empty"));
        assert!(compile(&p("(", PatternKind::Regex, false)).is_err());
        let (m, n, b) = compile(&p("Ab", PatternKind::Utf16, false)).unwrap();
        assert_eq!(b.unwrap(), b"A\0b\0");
        assert_eq!(n, Some(4));
        let mut hits = Vec::new();
        m.each(b"xxA\0b\0", |s, e| {
            hits.push((s, e));
            true
        });
        assert_eq!(hits, [(2, 6)]);
        let (m, _, _) = compile(&p("se.c", PatternKind::Literal, true)).unwrap();
        let mut hits = Vec::new();
        m.each(b"SE.C se.c seXc", |s, _| {
            hits.push(s);
            true
        });
        assert_eq!(hits, [0, 5]);
    }

    #[test]
    fn perms() {
        assert!(perms_match("rwx", "rwxp"));
        assert!(perms_match("wx", "rwxp"));
        assert!(!perms_match("wx", "r-xp"));
        assert!(perms_match("r-x", "r-xp"));
        assert!(!perms_match("r--", "r-xp"));
    }
}
