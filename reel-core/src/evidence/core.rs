//! An ELF core of one checkpointed process, for gdb: what the kernel would have written had
//! the process crashed at the moment it was frozen.
//!
//! * `PT_NOTE`: for every thread (the process's main thread first, so it is gdb's current
//!   one) `NT_PRSTATUS` with the general registers of its `core-<tid>.img` (the instruction
//!   pointer as CRIU recorded it: for a thread in a restartable system call CRIU rewinds it
//!   to the `syscall` instruction) followed by `NT_X86_XSTATE` (the XSAVE area: AVX, AVX-512,
//!   PKRU as CRIU saved them) and `NT_FPREGSET` (the FXSAVE area); after the
//!   first thread `NT_PRPSINFO` (state, credentials, comm, argv), `NT_AUXV`
//!   (`mm.saved_auxv`) and `NT_FILE` (every file mapping: range, offset, path).
//! * `PT_LOAD`: one per anonymous private VMA with its dumped pages (pages CRIU did not dump
//!   were never touched: zeros, left as holes of a sparse file); for a private file mapping,
//!   one per run of dumped pages (the pages the process wrote), the rest left out: gdb reads
//!   it from the file (the executable, or the `NT_FILE` mapping), and the report says how many
//!   pages were left out. Anonymous shared memory and memfd mappings get their pages from the
//!   object's shared-memory pagemap (`pagemap-shmem-<shmid>.img`) at the VMA's offset. SysV
//!   shared memory and the kernel's regions (vsyscall, vvar) get no segment, and the report
//!   lists them: a segment without contents would read as zeros.
//!
//! The ELF header, program headers and notes are laid out and written with the `object`
//! crate's ELF writer; the segments' pages are then written at the offsets it reserved. The
//! file is written under a temp name (0600) and renamed into place, never over anything.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use criu_sys::proto;
use object::elf::{self, NT_AUXV, NT_FILE, NT_FPREGSET, NT_PRPSINFO, NT_PRSTATUS, NT_X86_XSTATE};
use object::write::elf::{FileHeader, ProgramHeader, Writer};
use object::write::StreamingBuffer;
use object::Endianness;
use serde::Serialize;

use crate::criu::image::ImageReader;
use crate::inspect::pages::{SharedMemory, PE_LAZY};
use crate::inspect::{CheckpointSource, PageIndex, SourceOptions};

use super::EvidenceError;
use crate::criu::image::vma::{
    VMA_ANON_SHARED, VMA_AREA_MEMFD, VMA_AREA_SYSVIPC, VMA_AREA_VSYSCALL, VMA_AREA_VVAR,
    VMA_FILE_PRIVATE, VMA_FILE_SHARED,
};

/// The largest small image read whole (core, mm, files).
const MAX_IMAGE: u64 = 256 << 20;
/// Pages are copied in pieces of at most this many bytes.
const COPY_BYTES: u64 = 8 << 20;

/// One thread in the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoreThread {
    pub tid: u32,
    /// The instruction pointer as CRIU recorded it, as `0x…` text.
    pub ip: String,
    /// The stack pointer, as `0x…` text.
    pub sp: String,
    /// `orig_ax`: the system call it was in (-1 when none), as CRIU recorded it.
    pub orig_ax: i64,
}

/// What [`write_core`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoreReport {
    pub checkpoint: PathBuf,
    pub pid: u32,
    pub comm: String,
    /// The core file.
    pub to: PathBuf,
    pub threads: Vec<CoreThread>,
    /// VMAs of the process.
    pub vmas: usize,
    /// `PT_LOAD` segments written (with or without contents).
    pub segments: usize,
    /// Bytes of dumped pages written.
    pub bytes: u64,
    /// The core's size (holes included).
    pub file_size: u64,
    /// Pages of file mappings that were not dumped (unmodified): left out, gdb reads them from
    /// the file.
    pub file_backed_pages_left_out: u64,
    /// Mappings whose pages the core does not hold, and why.
    pub left_out: Vec<String>,
    /// Notes written.
    pub notes: Vec<String>,
}

/// A segment to write: its header, and pieces of the pages member to copy into it.
struct Segment {
    header: ProgramHeader,
    /// `(pages member, offset in it, length, offset in the segment)`.
    pieces: Vec<(String, u64, u64, u64)>,
}

fn bad(src: &CheckpointSource, member: &str, reason: String) -> EvidenceError {
    EvidenceError::BadImage {
        checkpoint: src.path().to_owned(),
        member: member.to_string(),
        reason,
    }
}

fn image<M: crate::criu::image::ImageMessage>(
    src: &CheckpointSource,
    name: &str,
) -> Result<Option<Vec<M>>, EvidenceError> {
    let member = format!("checkpoint/{name}");
    let Some(bytes) = src.read_optional(&member, MAX_IMAGE)? else {
        return Ok(None);
    };
    Ok(Some(
        ImageReader::from_bytes(&bytes, member)?.read_entries()?,
    ))
}

fn one<M: crate::criu::image::ImageMessage>(
    src: &CheckpointSource,
    name: &str,
    why: &'static str,
) -> Result<M, EvidenceError> {
    image::<M>(src, name)?
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| EvidenceError::MissingMember {
            checkpoint: src.path().to_owned(),
            member: format!("checkpoint/{name}"),
            why,
        })
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Appends one note (name, type, descriptor), each part padded to 4 bytes.
fn note(out: &mut Vec<u8>, name: &str, n_type: u32, desc: &[u8]) {
    let e = object::LittleEndian;
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    let header = elf::NoteHeader64 {
        n_namesz: object::U32::new(e, n.len() as u32),
        n_descsz: object::U32::new(e, desc.len() as u32),
        n_type: object::U32::new(e, n_type),
    };
    out.extend_from_slice(object::pod::bytes_of(&header));
    out.extend_from_slice(&n);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// `struct elf_prstatus` of x86-64 (336 bytes).
fn prstatus(
    tid: u32,
    ps: &proto::PstreeEntry,
    sighold: u64,
    regs: &proto::UserX86RegsEntry,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(336);
    // pr_info (si_signo, si_code, si_errno), pr_cursig + padding.
    b.extend_from_slice(&[0u8; 16]);
    put_u64(&mut b, 0); // pr_sigpend
    put_u64(&mut b, sighold); // pr_sighold
    put_u32(&mut b, tid); // pr_pid
    put_u32(&mut b, ps.ppid);
    put_u32(&mut b, ps.pgid);
    put_u32(&mut b, ps.sid);
    b.extend_from_slice(&[0u8; 64]); // pr_utime, pr_stime, pr_cutime, pr_cstime
                                     // pr_reg: struct user_regs_struct.
    for v in [
        regs.r15,
        regs.r14,
        regs.r13,
        regs.r12,
        regs.bp,
        regs.bx,
        regs.r11,
        regs.r10,
        regs.r9,
        regs.r8,
        regs.ax,
        regs.cx,
        regs.dx,
        regs.si,
        regs.di,
        regs.orig_ax,
        regs.ip,
        regs.cs,
        regs.flags,
        regs.sp,
        regs.ss,
        regs.fs_base,
        regs.gs_base,
        regs.ds,
        regs.es,
        regs.fs,
        regs.gs,
    ] {
        put_u64(&mut b, v);
    }
    put_u32(&mut b, 1); // pr_fpvalid
    put_u32(&mut b, 0); // padding
    debug_assert_eq!(b.len(), 336);
    b
}

/// `struct user_fpregs_struct` (the 512-byte FXSAVE area).
fn fpregset(fp: &proto::UserX86FpregsEntry) -> Vec<u8> {
    let mut b = Vec::with_capacity(512);
    put_u16(&mut b, fp.cwd as u16);
    put_u16(&mut b, fp.swd as u16);
    put_u16(&mut b, fp.twd as u16);
    put_u16(&mut b, fp.fop as u16);
    put_u64(&mut b, fp.rip);
    put_u64(&mut b, fp.rdp);
    put_u32(&mut b, fp.mxcsr);
    put_u32(&mut b, fp.mxcsr_mask);
    for (words, n) in [(&fp.st_space, 32), (&fp.xmm_space, 64), (&fp.padding, 24)] {
        for i in 0..n {
            put_u32(&mut b, words.get(i).copied().unwrap_or(0));
        }
    }
    debug_assert_eq!(b.len(), 512);
    b
}

/// The XSAVE area in the kernel's standard (non-compacted) layout, as `NT_X86_XSTATE` holds
/// it: the FXSAVE area (with XCR0 where Linux keeps it, at byte 464, for the debugger), the
/// XSAVE header (`xstate_bv`), then each component CRIU saved at its architectural offset:
/// AVX (576), MPX (960, 1024), AVX-512 (1088, 1152, 1664), PKRU (2688).
fn xstate(fx: &[u8], xs: &proto::UserX86XsaveEntry) -> Vec<u8> {
    let mut b = fx.to_vec();
    b.resize(576, 0);
    let mut xcr0: u64 = 0b11; // x87, SSE
    let words32 = |v: &[u32]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let words64 = |v: &[u64]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    // (XCR0 bit, offset, size, what CRIU saved), in the layout debuggers expect (Intel's:
    // the area then has exactly the size a debugger derives from XCR0).
    let parts = [
        (2, 576, 256, words32(&xs.ymmh_space)),
        (3, 960, 64, words64(&xs.bndreg_state)),
        (4, 1024, 64, words64(&xs.bndcsr_state)),
        (5, 1088, 64, words64(&xs.opmask_reg)),
        (6, 1152, 512, words64(&xs.zmm_upper)),
        (7, 1664, 1024, words64(&xs.hi16_zmm)),
        (9, 2688, 8, words32(&xs.pkru)),
    ];
    for (bit, at, size, mut bytes) in parts {
        if bytes.is_empty() {
            continue;
        }
        bytes.resize(size, 0);
        if b.len() < at + size {
            b.resize(at + size, 0);
        }
        b[at..at + size].copy_from_slice(&bytes);
        xcr0 |= 1 << bit;
    }
    b[464..472].copy_from_slice(&xcr0.to_le_bytes());
    b[512..520].copy_from_slice(&(xs.xstate_bv & xcr0).to_le_bytes());
    b
}

/// `struct elf_prpsinfo` of x86-64 (136 bytes).
fn prpsinfo(
    ps: &proto::PstreeEntry,
    state: u32,
    flags: u32,
    creds: Option<&proto::CredsEntry>,
    comm: &str,
    args: &str,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(136);
    // CRIU's task states: 1 alive, 2 dead, 3 stopped, 6 zombie.
    let (st, sname) = match state {
        3 => (4u8, b'T'),
        6 => (16u8, b'Z'),
        2 => (32u8, b'X'),
        _ => (1u8, b'S'),
    };
    b.push(st);
    b.push(sname);
    b.push(u8::from(state == 6));
    b.push(0); // pr_nice
    b.extend_from_slice(&[0u8; 4]);
    put_u64(&mut b, u64::from(flags));
    put_u32(&mut b, creds.map_or(0, |c| c.uid));
    put_u32(&mut b, creds.map_or(0, |c| c.gid));
    put_u32(&mut b, ps.pid);
    put_u32(&mut b, ps.ppid);
    put_u32(&mut b, ps.pgid);
    put_u32(&mut b, ps.sid);
    let mut fixed = |s: &str, n: usize| {
        let bytes = s.as_bytes();
        let k = bytes.len().min(n - 1);
        b.extend_from_slice(&bytes[..k]);
        b.extend(std::iter::repeat_n(0u8, n - k));
    };
    fixed(comm, 16);
    fixed(args, 80);
    debug_assert_eq!(b.len(), 136);
    b
}

fn pf_flags(prot: u32) -> u32 {
    let mut f = 0;
    if prot & 1 != 0 {
        f |= elf::PF_R;
    }
    if prot & 2 != 0 {
        f |= elf::PF_W;
    }
    if prot & 4 != 0 {
        f |= elf::PF_X;
    }
    f
}

/// Writes an ELF core of process `pid` of the checkpoint at `checkpoint` to `to`, a new file
/// (see the module's documentation).
pub fn write_core(
    checkpoint: &Path,
    pid: u32,
    to: &Path,
    opts: SourceOptions,
) -> Result<CoreReport, EvidenceError> {
    if crate::durable::exists(to) {
        return Err(EvidenceError::OutputExists {
            path: to.to_owned(),
        });
    }
    let src = CheckpointSource::open(checkpoint, opts)?;
    let tree = image::<proto::PstreeEntry>(&src, "pstree.img")?.ok_or_else(|| {
        EvidenceError::MissingMember {
            checkpoint: src.path().to_owned(),
            member: "checkpoint/pstree.img".into(),
            why: "the process tree",
        }
    })?;
    let Some(ps) = tree.iter().find(|p| p.pid == pid).cloned() else {
        let pids: Vec<u32> = tree.iter().map(|p| p.pid).collect();
        return Err(EvidenceError::NotFound {
            checkpoint: src.path().to_owned(),
            what: format!("no process {pid} in the checkpoint (its processes: {pids:?})"),
        });
    };
    // Threads: the main one first.
    let mut tids = vec![pid];
    tids.extend(ps.threads.iter().copied().filter(|&t| t != pid));
    let mut cores = Vec::new();
    for &tid in &tids {
        let c: proto::CoreEntry = one(&src, &format!("core-{tid}.img"), "a thread's registers")?;
        cores.push((tid, c));
    }
    let main = &cores[0].1;
    let tc = main.tc.as_ref();
    let comm = tc.map(|t| t.comm.clone()).unwrap_or_default();
    let mm: proto::MmEntry = one(&src, &format!("mm-{pid}.img"), "the memory map")?;
    let files = image::<proto::FileEntry>(&src, "files.img")?.unwrap_or_default();
    let file_name = |id: u64| -> Option<String> {
        files
            .iter()
            .find(|f| u64::from(f.id) == id)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone())
    };
    let index = PageIndex::load(&src, pid)?;
    let page_size = index.page_size();
    let mut shm = SharedMemory::load(&src)?;
    let pages_member = index.pages_member().to_string();

    let mut report = CoreReport {
        checkpoint: src.path().to_owned(),
        pid,
        comm: comm.clone(),
        to: to.to_owned(),
        threads: Vec::new(),
        vmas: mm.vmas.len(),
        segments: 0,
        bytes: 0,
        file_size: 0,
        file_backed_pages_left_out: 0,
        left_out: Vec::new(),
        notes: Vec::new(),
    };

    // The notes.
    let mut notes = Vec::new();
    let mut with_xstate = 0;
    for (i, (tid, core)) in cores.iter().enumerate() {
        let ti = core.thread_info.as_ref().ok_or_else(|| {
            bad(
                &src,
                &format!("checkpoint/core-{tid}.img"),
                "no x86-64 thread_info: reel writes cores of x86-64 processes only".into(),
            )
        })?;
        let sighold = core
            .thread_core
            .as_ref()
            .and_then(|t| t.blk_sigset)
            .or(tc.map(|t| t.blk_sigset))
            .unwrap_or(0);
        note(
            &mut notes,
            "CORE",
            NT_PRSTATUS,
            &prstatus(*tid, &ps, sighold, &ti.gpregs),
        );
        report.threads.push(CoreThread {
            tid: *tid,
            ip: format!("{:#x}", ti.gpregs.ip),
            sp: format!("{:#x}", ti.gpregs.sp),
            orig_ax: ti.gpregs.orig_ax as i64,
        });
        if i == 0 {
            let creds = core.thread_core.as_ref().and_then(|t| t.creds.as_ref());
            let args = crate::inspect::args_env(&src, pid)
                .map(|a| a.argv.join(" "))
                .unwrap_or_else(|_| comm.clone());
            note(
                &mut notes,
                "CORE",
                NT_PRPSINFO,
                &prpsinfo(
                    &ps,
                    tc.map_or(1, |t| t.task_state),
                    tc.map_or(0, |t| t.flags),
                    creds,
                    &comm,
                    &args,
                ),
            );
            let mut auxv = Vec::new();
            for w in &mm.mm_saved_auxv {
                put_u64(&mut auxv, *w);
            }
            note(&mut notes, "CORE", NT_AUXV, &auxv);
            // NT_FILE: count, page size, then (start, end, offset in pages) per mapping, then
            // the paths.
            let mut ranges = Vec::new();
            let mut names = Vec::new();
            for v in &mm.vmas {
                if v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) == 0 {
                    continue;
                }
                if let Some(n) = file_name(v.shmid) {
                    ranges.push((v.start, v.end, v.pgoff / page_size));
                    names.push(n);
                }
            }
            let mut desc = Vec::new();
            put_u64(&mut desc, ranges.len() as u64);
            put_u64(&mut desc, page_size);
            for (s, e, o) in &ranges {
                put_u64(&mut desc, *s);
                put_u64(&mut desc, *e);
                put_u64(&mut desc, *o);
            }
            for n in &names {
                desc.extend_from_slice(n.as_bytes());
                desc.push(0);
            }
            note(&mut notes, "CORE", NT_FILE, &desc);
            report.notes.extend([
                "NT_PRPSINFO".to_string(),
                "NT_AUXV".to_string(),
                format!("NT_FILE ({} file mappings)", ranges.len()),
            ]);
        }
        let fx = fpregset(&ti.fpregs);
        if let Some(xs) = ti.fpregs.xsave.as_ref() {
            note(&mut notes, "LINUX", NT_X86_XSTATE, &xstate(&fx, xs));
            with_xstate += 1;
        }
        note(&mut notes, "CORE", NT_FPREGSET, &fx);
    }
    report.notes.insert(
        0,
        format!(
            "NT_PRSTATUS and NT_FPREGSET for {} thread(s), NT_X86_XSTATE for {with_xstate}",
            cores.len()
        ),
    );

    // The segments.
    let mut segments = Vec::new();
    let mut vmas = mm.vmas.clone();
    vmas.sort_by_key(|v| v.start);
    for v in &vmas {
        if v.end <= v.start || v.start % page_size != 0 || v.end % page_size != 0 {
            return Err(bad(
                &src,
                &format!("checkpoint/mm-{pid}.img"),
                format!(
                    "VMA {:#x}-{:#x} is not a page-aligned range",
                    v.start, v.end
                ),
            ));
        }
        let flags = pf_flags(v.prot);
        let empty = |vaddr: u64, memsz: u64| Segment {
            header: ProgramHeader {
                p_type: elf::PT_LOAD,
                p_flags: flags,
                p_offset: 0,
                p_vaddr: vaddr,
                p_paddr: 0,
                p_filesz: 0,
                p_memsz: memsz,
                p_align: page_size,
            },
            pieces: Vec::new(),
        };
        // vvar and vsyscall are the kernel's, never dumped; the vdso is dumped like private memory.
        let special = v.status & (VMA_AREA_VSYSCALL | VMA_AREA_VVAR);
        let shared =
            v.status & (VMA_ANON_SHARED | VMA_AREA_SYSVIPC | VMA_AREA_MEMFD | VMA_FILE_SHARED);
        // The runs of dumped pages inside the VMA, clipped to it.
        let mut runs = Vec::new();
        for r in index.runs() {
            if r.end() <= v.start || r.vaddr >= v.end {
                continue;
            }
            let s = r.vaddr.max(v.start);
            let e = r.end().min(v.end);
            match r.offset {
                Some(off) => runs.push((s, e, off + (s - r.vaddr))),
                None => report.left_out.push(format!(
                    "{s:#x}-{e:#x}: {} pages not in this checkpoint ({})",
                    (e - s) / page_size,
                    if r.flags & PE_LAZY != 0 {
                        "lazy"
                    } else {
                        "in a parent dump"
                    }
                )),
            }
        }
        // Anonymous shared memory and memfd mappings: their pages are in the shared-memory
        // pagemap of the object, at the VMA's offset in it; pages not there were never
        // written (zeros).
        if special == 0 && runs.is_empty() && v.status & (VMA_ANON_SHARED | VMA_AREA_MEMFD) != 0 {
            let shm_ix = match shm.shmid_of(v) {
                Some(id) => shm.index(&src, id)?,
                None => None,
            };
            if let Some(shm) = shm_ix {
                let mut seg = empty(v.start, v.end - v.start);
                seg.header.p_filesz = v.end - v.start;
                let (lo, hi) = (v.pgoff, v.pgoff + (v.end - v.start));
                for r in shm.runs() {
                    if r.end() <= lo || r.vaddr >= hi {
                        continue;
                    }
                    let s = r.vaddr.max(lo);
                    let e = r.end().min(hi);
                    match r.offset {
                        Some(off) => seg.pieces.push((
                            shm.pages_member().to_string(),
                            off + (s - r.vaddr),
                            e - s,
                            s - lo,
                        )),
                        None => {
                            return Err(bad(
                                &src,
                                shm.pages_member(),
                                format!("shared pages at offset {s:#x} are not in this checkpoint (a parent or lazy dump)"),
                            ))
                        }
                    }
                }
                segments.push(seg);
                continue;
            }
        }
        if special != 0 || (shared != 0 && runs.is_empty()) {
            // No segment at all: a segment without contents reads as zeros in gdb, and zeros
            // would be wrong bytes here. gdb says it cannot access the memory instead (a shared
            // file mapping it reads from the file, through NT_FILE).
            let what = if special != 0 {
                "the kernel's (vvar, vsyscall), never dumped".to_string()
            } else {
                format!(
                    "shared memory{}, not in the process's pages",
                    file_name(v.shmid)
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                )
            };
            report
                .left_out
                .push(format!("{:#x}-{:#x}: {what}: no segment", v.start, v.end));
            continue;
        }
        if v.status & VMA_FILE_PRIVATE != 0 {
            // Only the dumped (written) pages; the rest is the file's.
            let mut covered = 0;
            for (s, e, off) in runs {
                let mut seg = empty(s, e - s);
                seg.header.p_filesz = e - s;
                seg.pieces.push((pages_member.clone(), off, e - s, 0));
                covered += e - s;
                segments.push(seg);
            }
            report.file_backed_pages_left_out += (v.end - v.start - covered) / page_size;
            continue;
        }
        // Anonymous private memory: the whole VMA; pages not dumped are zeros (holes).
        let mut seg = empty(v.start, v.end - v.start);
        if v.prot != 0 || !runs.is_empty() {
            seg.header.p_filesz = v.end - v.start;
            for (s, e, off) in runs {
                seg.pieces
                    .push((pages_member.clone(), off, e - s, s - v.start));
            }
        }
        segments.push(seg);
    }
    if report.file_backed_pages_left_out > 0 {
        report.left_out.push(format!(
            "{} pages of file mappings were not dumped (not modified): left out, gdb reads them from the files (NT_FILE)",
            report.file_backed_pages_left_out
        ));
    }

    if segments.len() >= usize::from(elf::PN_XNUM) {
        return Err(bad(
            &src,
            &format!("checkpoint/mm-{pid}.img"),
            format!(
                "{} segments: more than an ELF core without extended numbering holds",
                segments.len()
            ),
        ));
    }

    // The temp file: removed unless renamed into place.
    let dir = crate::durable::parent_dir(to);
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "core".into());
    let temp = dir.join(crate::durable::temp_name(&name, std::process::id()));
    let io = |action: &'static str, source: std::io::Error| EvidenceError::Io {
        action,
        path: to.to_owned(),
        source,
    };
    let mut file = crate::durable::create_private_file(&temp)
        .map_err(|e| io("creating a temp file for", e))?;
    let mut guard = RemoveOnDrop(Some(temp.clone()));

    // The headers and notes, laid out and written by object's ELF writer (streamed: the
    // segments' reserved ranges are filled afterwards, by offset).
    let mut out = StreamingBuffer::new(std::io::BufWriter::new(&mut file));
    let mut w = Writer::new(Endianness::Little, true, &mut out);
    w.reserve_file_header();
    w.reserve_program_headers(1 + segments.len() as u32);
    let notes_off = w.reserve(notes.len(), 4) as u64;
    for s in &mut segments {
        if s.header.p_filesz > 0 {
            let len = usize::try_from(s.header.p_filesz).map_err(|_| {
                bad(
                    &src,
                    &format!("checkpoint/mm-{pid}.img"),
                    "a VMA larger than this machine can address".into(),
                )
            })?;
            s.header.p_offset = w.reserve(len, page_size as usize) as u64;
        }
    }
    let total = w.reserved_len() as u64;
    w.write_file_header(&FileHeader {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_type: elf::ET_CORE,
        e_machine: elf::EM_X86_64,
        e_entry: 0,
        e_flags: 0,
    })
    .map_err(|e| io("laying out", std::io::Error::other(e.to_string())))?;
    w.write_align_program_headers();
    w.write_program_header(&ProgramHeader {
        p_type: elf::PT_NOTE,
        p_flags: 0,
        p_offset: notes_off,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: notes.len() as u64,
        p_memsz: 0,
        p_align: 4,
    });
    for s in &segments {
        w.write_program_header(&s.header);
    }
    w.pad_until(notes_off as usize);
    w.write(&notes);
    drop(w);
    out.flush().map_err(|e| io("writing", e))?;
    drop(out);

    // The pages, at their offsets; what is not written stays a hole (zeros).
    for s in &segments {
        for (member, off, len, at) in &s.pieces {
            let (off, len, at) = (*off, *len, *at);
            let mut done = 0;
            while done < len {
                let n = (len - done).min(COPY_BYTES);
                let bytes = src.read_range(member, off + done, n)?;
                file.seek(SeekFrom::Start(s.header.p_offset + at + done))
                    .map_err(|e| io("writing", e))?;
                file.write_all(&bytes).map_err(|e| io("writing", e))?;
                report.bytes += n;
                done += n;
            }
        }
    }
    file.set_len(total).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    drop(file);
    crate::durable::rename_noreplace(&temp, to).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            EvidenceError::OutputExists {
                path: to.to_owned(),
            }
        } else {
            io("renaming into place", e)
        }
    })?;
    guard.0 = None;
    report.segments = segments.len();
    report.file_size = total;
    Ok(report)
}

/// Removes a temp file unless forgotten.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}
