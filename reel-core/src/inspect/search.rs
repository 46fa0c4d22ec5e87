//! `reel search`: find bytes in the memory of every process of a checkpoint.
//!
//! Each process's pages members (its own, and those of the shared memory it maps) are streamed
//! once, in order, in chunks of [`CHUNK`] bytes, read (and hashed, and decompressed) by one
//! thread while another scans; the last bytes of a chunk are carried into the next one when the
//! next bytes are virtually contiguous (the same run, or a run that starts where the last one
//! ended), so a hit that straddles two pages is found, and one that would join two unrelated
//! runs is not. Memory stays bounded: a few chunks plus the carry. Each hit is tied to its VMA
//! from `mm-<pid>.img`.
//!
//! Matching is done by `memchr::memmem` (literals) and `regex::bytes` (regular expressions,
//! case-insensitive literals). A regex match is found whole only when it is at most
//! [`REGEX_WINDOW`] bytes long or lies within one chunk.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use criu_sys::proto;
use serde::Serialize;

use super::load::{entries, first};
use super::model::{FindingRow, MapRow};
use super::pages::{MemoryIndex, SharedMemory};
use super::source::CheckpointSource;
use super::InspectError;
use crate::archive::CHECKPOINT_DIR;
use crate::criu::image::vma::{
    VMA_ANON_SHARED, VMA_AREA_HEAP, VMA_AREA_STACK, VMA_AREA_VDSO, VMA_AREA_VSYSCALL,
    VMA_AREA_VVAR, VMA_FILE_PRIVATE, VMA_FILE_SHARED,
};

/// The bytes scanned at a time.
pub const CHUNK: usize = 1 << 20;
/// Chunks read ahead of the scan.
const PIPELINE: usize = 2;
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

impl SearchOptions {
    /// Whether a hit at `addr` passes the address, region and permission filters: `None` when
    /// it does not, else the VMA holding it (`Some(None)`: in no VMA, no filter given).
    fn admits<'v>(&self, vmas: &'v [Vma], addr: u64) -> Option<Option<&'v Vma>> {
        if let Some((lo, hi)) = self.address {
            if addr < lo || addr >= hi {
                return None;
            }
        }
        let v = vma_at(vmas, addr);
        if !self.regions.is_empty() && !v.is_some_and(|v| self.regions.iter().any(|k| v.is(*k))) {
            return None;
        }
        if let Some(p) = &self.perms {
            if !v.is_some_and(|v| perms_match(p, &v.perms())) {
                return None;
            }
        }
        Some(v)
    }
}

/// Where in a process's memory a hit or a string is (in their JSON, at the top level).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Place {
    /// The process.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// The virtual address (of the first byte), `0x…`.
    pub address: String,
    /// The region, `0xSTART-0xEND` (`-` outside every VMA).
    pub region: String,
    /// Its protection, `rwxp` as in `/proc/PID/maps`.
    pub perms: String,
    /// `[heap]`, `[stack]`, `[vdso]`, a file path, or empty for anonymous memory.
    pub path: String,
    /// The offset in the region.
    pub offset: u64,
}

impl Place {
    fn new(pid: u32, comm: &str, v: Option<&Vma>, addr: u64) -> Place {
        Place {
            pid,
            comm: comm.to_string(),
            address: format!("{addr:#x}"),
            region: v
                .map(|v| format!("{:#x}-{:#x}", v.start, v.end))
                .unwrap_or_else(|| "-".into()),
            perms: v.map(Vma::perms).unwrap_or_else(|| "----".into()),
            path: v.map(|v| v.path.clone()).unwrap_or_default(),
            offset: v.map(|v| addr - v.start).unwrap_or(0),
        }
    }
}

/// One hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hit {
    #[serde(flatten)]
    pub place: Place,
    /// The file offset of the region's start (file mappings).
    pub file_offset: u64,
    /// The address of the first context byte, `0x…`.
    pub context_address: String,
    /// The context bytes (before, the hit, after), hex.
    pub context_hex: String,
    /// The hit's length in bytes.
    pub len: usize,
}

/// What a search or a strings listing counted: the numbers both share (in their JSON, at the
/// top level).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// How many hits or strings (all of them, also with `count_only`).
    pub count: u64,
    /// How many per process.
    pub per_pid: BTreeMap<u32, u64>,
    /// Bytes of memory scanned.
    pub bytes_scanned: u64,
    /// The scan stopped at `max_hits`.
    pub truncated: bool,
    /// Counted but not listed: past [`DEFAULT_LISTED_HITS`] without `max_hits`.
    pub unlisted: u64,
}

impl Tally {
    /// Whether anything was found.
    pub fn found(&self) -> bool {
        self.count > 0
    }

    /// Whether the scan has reached `max_hits`.
    fn done(&self, opts: &SearchOptions) -> bool {
        opts.max_hits.is_some_and(|m| self.count >= m)
    }

    /// Counts one more for `pid`, of which `listed` are listed already: whether to list it
    /// (not with `count_only`; past the listing limit it is counted in `unlisted`).
    fn add(&mut self, pid: u32, listed: usize, opts: &SearchOptions) -> bool {
        self.count += 1;
        *self.per_pid.entry(pid).or_default() += 1;
        if opts.count_only {
            return false;
        }
        if listed as u64 >= opts.max_hits.unwrap_or(DEFAULT_LISTED_HITS) {
            self.unlisted += 1;
            return false;
        }
        true
    }
}

/// What a search found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SearchResult {
    /// The pattern as bytes (hex) when it is not a regex.
    pub pattern_hex: Option<String>,
    #[serde(flatten)]
    pub tally: Tally,
    /// The hits (empty with `count_only`).
    pub hits: Vec<Hit>,
}

impl SearchResult {
    /// Whether anything was found.
    pub fn found(&self) -> bool {
        self.tally.found()
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
    /// `MAP_SHARED|MAP_ANONYMOUS` memory (which CRIU 4.2 records as a memfd named `/dev/zero`).
    anon_shared: bool,
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
        !self.anon_shared && self.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0
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

/// The name `/proc/PID/maps` gives a VMA of the kernel's kind: `[heap]`, `[stack]`, `[vdso]`,
/// `[vvar]`, `[vsyscall]`.
pub fn special_name(status: u32) -> Option<&'static str> {
    [
        (VMA_AREA_HEAP, "[heap]"),
        (VMA_AREA_STACK, "[stack]"),
        (VMA_AREA_VDSO, "[vdso]"),
        (VMA_AREA_VVAR, "[vvar]"),
        (VMA_AREA_VSYSCALL, "[vsyscall]"),
    ]
    .into_iter()
    .find(|(f, _)| status & f != 0)
    .map(|(_, n)| n)
}

/// The VMAs of `pid`, with paths, by start address.
fn vmas(
    src: &CheckpointSource,
    pid: u32,
    tids: &[u32],
    files: &BTreeMap<u32, String>,
    shm: &SharedMemory,
) -> Result<(Vec<Vma>, Vec<proto::VmaEntry>), InspectError> {
    let Some(mm) = first::<proto::MmEntry>(src, &format!("mm-{pid}.img"))? else {
        return Ok((Vec::new(), Vec::new()));
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
            let anon_shared = shm.is_anon_shared(v);
            let path = if let Some(p) = shm.sysv_path(v) {
                p
            } else if anon_shared {
                String::new()
            } else if let Some(n) = special_name(v.status) {
                n.to_string()
            } else if let Some(p) = shm.memfd_path(v) {
                p
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
                anon_shared,
            }
        })
        .collect();
    out.sort_by_key(|v| v.start);
    Ok((out, mm.vmas))
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
        self.out.tally.done(self.opts)
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
            let Some(v) = opts.admits(vmas, addr) else {
                return true;
            };
            if out.tally.add(pid, out.hits.len(), opts) {
                let c = opts.context.min(MAX_CONTEXT);
                let cs = s.saturating_sub(c);
                let ce = (e + c).min(buf.len());
                out.hits.push(Hit {
                    place: Place::new(pid, comm, v, addr),
                    file_offset: v.map(|v| v.pgoff).unwrap_or(0),
                    context_address: format!("{:#x}", vaddr + cs as u64),
                    context_hex: hex::encode(&buf[cs..ce]),
                    len: e - s,
                });
            }
            !out.tally.done(opts)
        });
    }
}

/// What a scan does with the bytes: search them, or list their strings.
trait Sink {
    /// Bytes of a chunk's end carried into the next when the next is contiguous.
    fn carry_max(&self) -> usize;
    /// Takes `buf`, whose first byte is at `vaddr`; its first `carry` bytes were fed already;
    /// `contiguous`: it continues the last chunk fed.
    #[allow(clippy::too_many_arguments)]
    fn feed(
        &mut self,
        pid: u32,
        comm: &str,
        vmas: &[Vma],
        buf: &[u8],
        vaddr: u64,
        carry: usize,
        contiguous: bool,
    );
    /// The bytes fed last are not continued (a process's end).
    fn flush(&mut self, pid: u32, comm: &str, vmas: &[Vma]);
    /// Enough was found.
    fn done(&self) -> bool;
    /// Counts scanned bytes.
    fn scanned(&mut self, n: u64);
}

impl Sink for Scan<'_> {
    fn carry_max(&self) -> usize {
        self.carry_max
    }
    fn feed(
        &mut self,
        pid: u32,
        comm: &str,
        vmas: &[Vma],
        buf: &[u8],
        vaddr: u64,
        carry: usize,
        _contiguous: bool,
    ) {
        self.buffer(pid, comm, vmas, buf, vaddr, carry)
    }
    fn flush(&mut self, _pid: u32, _comm: &str, _vmas: &[Vma]) {}
    fn done(&self) -> bool {
        Scan::done(self)
    }
    fn scanned(&mut self, n: u64) {
        self.out.tally.bytes_scanned += n;
    }
}

/// A chunk of memory on its way from the reader to the sink: `buf` starts at `start`, its first
/// `carry` bytes were in the last chunk (`contiguous`), the rest are new.
struct Chunk {
    buf: Vec<u8>,
    start: u64,
    carry: usize,
    contiguous: bool,
}

/// What the reader sends the hasher.
enum ToHasher {
    /// Memory to hash (its new bytes) and pass on to the sink.
    Chunk(Chunk),
    /// Bytes of the member between pieces: hashed only.
    Skipped(Vec<u8>),
    /// The member is read again from its start (it is mapped twice): no digest for it.
    Restart,
    /// The member's end: check its digest when it was read whole, in order.
    End { member: String, whole: bool },
}

/// Streams the pages of `pid` (its pages member, then each shared-memory pages member it
/// maps), each member once in offset order, into `sink`, on three threads: this one reads
/// (and decompresses a `.tar.zst`), a scoped one hashes each member whole and checks its
/// digest against the manifest (when verifying), a third feeds the sink; at most [`PIPELINE`]
/// chunks wait between two of them, and buffers are reused. The reader stops when the sink
/// has enough or a digest does not match.
fn stream<S: Sink + Send>(
    sink: &mut S,
    src: &CheckpointSource,
    pid: u32,
    comm: &str,
    vmas: &[Vma],
    index: &MemoryIndex,
) -> Result<(), InspectError> {
    // (member, offset, vaddr, len) of every present piece, by member then offset.
    let mut pieces: Vec<(&str, u64, u64, u64)> = index
        .pieces()
        .iter()
        .filter_map(|p| Some((p.member.as_str(), p.offset?, p.vaddr, p.len)))
        .collect();
    pieces.sort_unstable();
    // Pieces that follow each other both in the member and in memory are read as one (CRIU
    // writes a large region as many runs): chunks stay whole.
    let mut merged: Vec<(&str, u64, u64, u64)> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match merged.last_mut() {
            Some(last) if last.0 == p.0 && last.1 + last.3 == p.1 && last.2 + last.3 == p.2 => {
                last.3 += p.3
            }
            _ => merged.push(p),
        }
    }
    let pieces = merged;
    let carry_max = sink.carry_max();
    let hashing = src.wants_digest();
    let stop = AtomicBool::new(false);
    let (to_hasher, hasher_rx) = mpsc::sync_channel::<ToHasher>(PIPELINE);
    let (to_sink, sink_rx) = mpsc::sync_channel::<Chunk>(PIPELINE);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let stop = &stop;
        let scanner = scope.spawn(move || {
            for c in sink_rx {
                sink.scanned((c.buf.len() - c.carry) as u64);
                sink.feed(pid, comm, vmas, &c.buf, c.start, c.carry, c.contiguous);
                if sink.done() {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                let _ = back_tx.send(c.buf);
            }
            sink.flush(pid, comm, vmas);
        });
        let hasher = scope.spawn(move || -> Result<(), InspectError> {
            let kind = src.digest_kind();
            let mut h = kind.hasher();
            for m in hasher_rx {
                match m {
                    ToHasher::Chunk(c) => {
                        if hashing {
                            h.update(&c.buf[c.carry..]);
                        }
                        if to_sink.send(c).is_err() {
                            break;
                        }
                    }
                    ToHasher::Skipped(b) => {
                        if hashing {
                            h.update(&b);
                        }
                    }
                    ToHasher::Restart => h = kind.hasher(),
                    ToHasher::End { member, whole } => {
                        let digest = std::mem::replace(&mut h, kind.hasher()).finish();
                        let digest = digest.get(kind).unwrap_or_default().to_owned();
                        if hashing && whole {
                            if let Err(e) = src.check_member_digest(&member, digest) {
                                stop.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                }
            }
            Ok(())
        });
        let read = read_pieces(src, &pieces, carry_max, hashing, stop, &to_hasher, &back_rx);
        drop(to_hasher);
        let hashed = match hasher.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Err(panic) = scanner.join() {
            std::panic::resume_unwind(panic);
        }
        hashed.and(read)
    })
}

/// The reading half of [`stream`].
fn read_pieces(
    src: &CheckpointSource,
    pieces: &[(&str, u64, u64, u64)],
    carry_max: usize,
    hashing: bool,
    stop: &AtomicBool,
    tx: &mpsc::SyncSender<ToHasher>,
    back: &mpsc::Receiver<Vec<u8>>,
) -> Result<(), InspectError> {
    // The last bytes read, and the virtual address just after them.
    let mut tail: Vec<u8> = Vec::with_capacity(carry_max);
    let mut carry_end: Option<u64> = None;
    // Reads `n` bytes that are not memory: hashed when verifying, else dropped. False when
    // the hasher is gone.
    let skip = |r: &mut dyn Read, n: u64, member: &str| -> Result<bool, InspectError> {
        let err = |e| src.member_err(member, e);
        if !hashing {
            std::io::copy(&mut r.take(n), &mut std::io::sink()).map_err(err)?;
            return Ok(true);
        }
        let mut left = n;
        while left > 0 {
            let k = left.min(CHUNK as u64) as usize;
            let mut b = vec![0u8; k];
            r.read_exact(&mut b).map_err(err)?;
            left -= k as u64;
            if tx.send(ToHasher::Skipped(b)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let mut i = 0;
    while i < pieces.len() {
        let member = pieces[i].0;
        let n_member = pieces[i..].iter().take_while(|p| p.0 == member).count();
        let group = &pieces[i..i + n_member];
        i += n_member;
        let err = |e| src.member_err(member, e);
        let size = src.member(member).map(|m| m.size).unwrap_or(0);
        let mut r = src.reader_unhashed(member)?;
        let mut pos = 0u64;
        // The member's digest is checked when every piece was read in order and the member
        // then to its end; a member mapped twice is read again from its start.
        let mut whole = true;
        for &(_, off, vaddr, len) in group {
            if off < pos {
                r = src.reader_unhashed(member)?;
                pos = 0;
                whole = false;
                if tx.send(ToHasher::Restart).is_err() {
                    return Ok(());
                }
            }
            if !skip(&mut r, off - pos, member)? {
                return Ok(());
            }
            pos = off;
            let mut at = vaddr;
            let mut left = len;
            while left > 0 {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let contiguous = carry_end == Some(at);
                if !contiguous {
                    tail.clear();
                }
                let mut buf = back
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK + carry_max));
                buf.clear();
                buf.extend_from_slice(&tail);
                let carry = buf.len();
                let n = left.min(CHUNK as u64) as usize;
                buf.resize(carry + n, 0);
                r.read_exact(&mut buf[carry..]).map_err(err)?;
                pos += n as u64;
                left -= n as u64;
                tail.clear();
                tail.extend_from_slice(&buf[buf.len() - carry_max.min(buf.len())..]);
                let start = at - carry as u64;
                at += n as u64;
                carry_end = Some(at);
                let chunk = Chunk {
                    buf,
                    start,
                    carry,
                    contiguous,
                };
                if tx.send(ToHasher::Chunk(chunk)).is_err() {
                    return Ok(());
                }
            }
        }
        if whole && hashing {
            // To the end, so the member is checked against the manifest.
            if !skip(&mut r, size.saturating_sub(pos), member)? {
                return Ok(());
            }
        }
        let end = ToHasher::End {
            member: member.to_string(),
            whole,
        };
        if tx.send(end).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Searches the memory of the checkpoint's processes (see the module's documentation).
pub fn search(
    src: &CheckpointSource,
    pattern: &Pattern,
    opts: &SearchOptions,
) -> Result<SearchResult, InspectError> {
    let (matcher, max_len, bytes) = compile(pattern)?;
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
    each_process(src, opts, &mut scan)?;
    out.tally.truncated = out.tally.done(opts);
    Ok(out)
}

/// The most bytes of one string listed by [`strings`] (longer ones are cut; `len` says how long).
pub const MAX_STRING: usize = 4096;
/// The default shortest string [`strings`] lists.
pub const DEFAULT_MIN_LEN: usize = 6;

/// A printable string in memory (`reel search --strings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StringHit {
    #[serde(flatten)]
    pub place: Place,
    /// Its length in bytes.
    pub len: u64,
    /// The string (its first [`MAX_STRING`] bytes).
    pub string: String,
    /// Longer than [`MAX_STRING`]: `string` is its beginning.
    pub cut: bool,
}

/// What [`strings`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StringsResult {
    /// The shortest string listed.
    pub min_len: usize,
    #[serde(flatten)]
    pub tally: Tally,
    /// The strings, by process and address (empty with `count_only`).
    pub strings: Vec<StringHit>,
}

impl StringsResult {
    /// Whether any string was found.
    pub fn found(&self) -> bool {
        self.tally.found()
    }
}

/// Printable as `strings` sees it: ASCII graphic characters, space and tab.
fn printable(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b)
}

/// Lists printable strings of at least `min_len` bytes.
struct StringsScan<'a> {
    opts: &'a SearchOptions,
    min_len: usize,
    /// The string being read: its address, its first bytes, its length.
    cur: Option<(u64, Vec<u8>, u64)>,
    out: &'a mut StringsResult,
}

impl StringsScan<'_> {
    fn emit(&mut self, pid: u32, comm: &str, vmas: &[Vma]) {
        let Some((addr, bytes, len)) = self.cur.take() else {
            return;
        };
        if len < self.min_len as u64 || self.done() {
            return;
        }
        let opts = self.opts;
        let Some(v) = opts.admits(vmas, addr) else {
            return;
        };
        let out = &mut *self.out;
        if !out.tally.add(pid, out.strings.len(), opts) {
            return;
        }
        out.strings.push(StringHit {
            place: Place::new(pid, comm, v, addr),
            len,
            // Printable ASCII only: always UTF-8.
            string: String::from_utf8_lossy(&bytes).into_owned(),
            cut: len > bytes.len() as u64,
        });
    }
}

impl Sink for StringsScan<'_> {
    fn carry_max(&self) -> usize {
        0
    }

    fn feed(
        &mut self,
        pid: u32,
        comm: &str,
        vmas: &[Vma],
        buf: &[u8],
        vaddr: u64,
        _carry: usize,
        contiguous: bool,
    ) {
        if !contiguous {
            self.emit(pid, comm, vmas);
        }
        let mut i = 0;
        while i < buf.len() {
            let Some(n) = buf[i..].iter().position(|&b| printable(b)) else {
                // No more printable bytes: a string being read ends.
                self.emit(pid, comm, vmas);
                return;
            };
            if n > 0 {
                self.emit(pid, comm, vmas);
            }
            let s = i + n;
            let e = buf[s..]
                .iter()
                .position(|&b| !printable(b))
                .map_or(buf.len(), |k| s + k);
            let run = &buf[s..e];
            match &mut self.cur {
                Some((_, bytes, len)) => {
                    let room = MAX_STRING.saturating_sub(bytes.len());
                    bytes.extend_from_slice(&run[..run.len().min(room)]);
                    *len += run.len() as u64;
                }
                None => {
                    self.cur = Some((
                        vaddr + s as u64,
                        run[..run.len().min(MAX_STRING)].to_vec(),
                        run.len() as u64,
                    ))
                }
            }
            if e < buf.len() {
                self.emit(pid, comm, vmas);
            }
            if self.done() {
                return;
            }
            i = e;
        }
    }

    fn flush(&mut self, pid: u32, comm: &str, vmas: &[Vma]) {
        self.emit(pid, comm, vmas);
    }

    fn done(&self) -> bool {
        self.out.tally.done(self.opts)
    }

    fn scanned(&mut self, n: u64) {
        self.out.tally.bytes_scanned += n;
    }
}

/// Lists the printable strings of at least `min_len` bytes (ASCII graphic characters, space,
/// tab; as `strings -t x` does, per process) in the memory of the checkpoint's processes, with
/// the filters and limits of `opts` (`context` is not used). Each process's pages are streamed
/// once, as [`search`] does; a string going on across contiguous pages is one string.
pub fn strings(
    src: &CheckpointSource,
    min_len: usize,
    opts: &SearchOptions,
) -> Result<StringsResult, InspectError> {
    if min_len == 0 {
        return Err(bad("--min-len must be at least 1"));
    }
    let mut out = StringsResult {
        min_len,
        ..Default::default()
    };
    let mut scan = StringsScan {
        opts,
        min_len,
        cur: None,
        out: &mut out,
    };
    each_process(src, opts, &mut scan)?;
    let truncated = scan.done();
    out.tally.truncated = truncated;
    Ok(out)
}

/// Streams the memory of every live process `opts` selects into `sink`.
fn each_process<S: Sink + Send>(
    src: &CheckpointSource,
    opts: &SearchOptions,
    sink: &mut S,
) -> Result<(), InspectError> {
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
    let mut shm = SharedMemory::load(src)?;
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
        let (v, raw) = vmas(src, p.pid, &tids, &files, &shm)?;
        let index = MemoryIndex::build(src, p.pid, &raw, &mut shm)?;
        stream(sink, src, p.pid, &comm, &v, &index)?;
        if sink.done() {
            break;
        }
    }
    Ok(())
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
    let mut shm = SharedMemory::load(src)?;
    let page_size = src.page_size()?;
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
        let (vs, raw) = vmas(src, p.pid, &tids, &files, &shm)?;
        let index = MemoryIndex::build(src, p.pid, &raw, &mut shm)?;
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
            let dumped = index.dumped_pages(v.start, v.end);
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
                            .within(v.start, v.start + 1)
                            .first()
                            .is_some_and(|p| p.offset.is_some()),
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
                pages: (v.end - v.start) / page_size,
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
    fn strings_join_contiguous_chunks_and_respect_min_len() {
        let opts = SearchOptions::default();
        let mut out = StringsResult::default();
        let mut s = StringsScan {
            opts: &opts,
            min_len: 6,
            cur: None,
            out: &mut out,
        };
        let vmas = [Vma {
            start: 0x1000,
            end: 0x9000,
            prot: 3,
            flags: 2,
            status: 0,
            pgoff: 0,
            path: String::new(),
            stack: false,
            anon_shared: false,
        }];
        s.feed(
            1,
            "c",
            &vmas,
            b"\0\0HELLO WORLD\0abc\0SPLIT-",
            0x1000,
            0,
            false,
        );
        s.feed(1, "c", &vmas, b"ACROSS\x01tail-at-end", 0x1018, 0, true);
        // Not contiguous: the string being read ends.
        s.feed(1, "c", &vmas, b"again!", 0x5000, 0, false);
        s.flush(1, "c", &vmas);
        let got: Vec<_> = out
            .strings
            .iter()
            .map(|h| (h.place.address.as_str(), h.string.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("0x1002", "HELLO WORLD"),
                ("0x1012", "SPLIT-ACROSS"),
                ("0x101f", "tail-at-end"),
                ("0x5000", "again!"),
            ]
        );
        assert_eq!(out.tally.count, 4);
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
