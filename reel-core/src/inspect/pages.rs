//! A process's memory as the dump holds it: [`PageIndex`] maps virtual pages to offsets in the
//! pages member (from `pagemap-<pid>.img`), [`ProcessMemory`] reads bytes at virtual addresses
//! through it, without extracting anything. argv and the environment are read through
//! `mm-<pid>.img`'s `mm_arg_start..mm_arg_end` and `mm_env_start..mm_env_end`.
//!
//! CRIU's pagemap lists runs of pages (`vaddr`, `nr_pages`, `flags`). Runs flagged
//! [`PE_PRESENT`] have their bytes in `pages-<pages_id>.img`, one after the other in pagemap
//! order; [`PE_PARENT`] pages are in a parent (pre-)dump, [`PE_LAZY`] ones were left to lazy
//! restore: neither is in this checkpoint. Pages not in any run were not dumped (never
//! touched, or the zero page).

use std::collections::BTreeMap;

use criu_sys::proto;

use super::source::CheckpointSource;
use super::InspectError;
use crate::archive::CHECKPOINT_DIR;
use crate::criu::image::vma::{VMA_ANON_SHARED, VMA_AREA_MEMFD, VMA_AREA_SYSVIPC};
use crate::criu::image::ImageReader;

/// The pages are in the parent dump's images.
pub const PE_PARENT: u32 = 1 << 0;
/// The pages were left for lazy restore.
pub const PE_LAZY: u32 = 1 << 1;
/// The pages are in this dump's pages image.
pub const PE_PRESENT: u32 = 1 << 2;

/// The architecture's page size (x86-64's), for checkpoints whose manifest does not record
/// the dumping host's (see [`CheckpointSource::page_size`]).
pub const DEFAULT_PAGE_SIZE: u64 = 4096;
/// The most a single [`ProcessMemory::read`] returns.
pub const MAX_READ: u64 = 64 << 20;
/// The largest pagemap image reel loads.
pub const MAX_PAGEMAP_BYTES: u64 = 256 << 20;
/// The largest `mm-*.img` reel loads.
pub const MAX_MM_BYTES: u64 = 64 << 20;
/// The longest argv or environment block reel reads (the kernel allows a few MiB).
pub const MAX_ARGS_BYTES: u64 = 8 << 20;

/// A run of pages from the pagemap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    /// The first page's virtual address.
    pub vaddr: u64,
    /// How many pages.
    pub nr_pages: u64,
    /// How many bytes (`nr_pages` pages of the index's page size).
    pub len: u64,
    /// [`PE_PARENT`], [`PE_LAZY`], [`PE_PRESENT`].
    pub flags: u32,
    /// Where the first page is in the pages member, when present.
    pub offset: Option<u64>,
}

impl PageRun {
    /// The end address (exclusive).
    pub fn end(&self) -> u64 {
        self.vaddr + self.len
    }

    /// Whether its bytes are in this checkpoint.
    pub fn is_present(&self) -> bool {
        self.offset.is_some()
    }
}

/// A process's pagemap: sorted runs of virtual pages and where their bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageIndex {
    pid: u32,
    page_size: u64,
    pages_member: String,
    runs: Vec<PageRun>,
}

impl PageIndex {
    /// Loads `pagemap-<pid>.img` of the checkpoint, in the checkpoint's page size.
    pub fn load(src: &CheckpointSource, pid: u32) -> Result<PageIndex, InspectError> {
        let name = format!("{CHECKPOINT_DIR}pagemap-{pid}.img");
        let bytes = src.read(&name, MAX_PAGEMAP_BYTES)?;
        PageIndex::from_image(&bytes, &name, pid, src.page_size()?)
    }

    /// Parses a pagemap image already in memory (`name` names it in errors) whose pages are
    /// `page_size` bytes.
    pub fn from_image(
        bytes: &[u8],
        name: &str,
        pid: u32,
        page_size: u64,
    ) -> Result<PageIndex, InspectError> {
        let mut r = ImageReader::from_bytes(bytes, name)?;
        let bad = |reason: String| InspectError::BadMember {
            member: name.into(),
            reason,
        };
        let head: proto::PagemapHead = match r.next_entry()? {
            Some(e) => e.decode()?,
            None => return Err(bad("no pagemap head".into())),
        };
        let mut runs = Vec::new();
        let mut offset = 0u64;
        while let Some(e) = r.next_entry()? {
            let pe: proto::PagemapEntry = e.decode()?;
            let nr = pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages));
            let flags = match pe.flags {
                Some(f) => f,
                None if pe.in_parent == Some(true) => PE_PARENT,
                None => PE_PRESENT,
            };
            if !pe.vaddr.is_multiple_of(page_size) {
                return Err(bad(format!("run at {:#x} is not page-aligned", pe.vaddr)));
            }
            let len = nr
                .checked_mul(page_size)
                .filter(|l| pe.vaddr.checked_add(*l).is_some())
                .ok_or_else(|| bad(format!("run at {:#x} of {nr} pages overflows", pe.vaddr)))?;
            let present = flags & PE_PRESENT != 0;
            runs.push(PageRun {
                vaddr: pe.vaddr,
                nr_pages: nr,
                len,
                flags,
                offset: present.then_some(offset),
            });
            if present {
                offset = offset
                    .checked_add(len)
                    .ok_or_else(|| bad("the pages add up to more than 2^64 bytes".into()))?;
            }
        }
        // The pages member follows pagemap order; lookups need address order.
        runs.sort_by_key(|r| r.vaddr);
        for w in runs.windows(2) {
            if w[0].end() > w[1].vaddr {
                return Err(bad(format!(
                    "runs at {:#x} and {:#x} overlap",
                    w[0].vaddr, w[1].vaddr
                )));
            }
        }
        Ok(PageIndex {
            pid,
            page_size,
            pages_member: format!("{CHECKPOINT_DIR}pages-{}.img", head.pages_id),
            runs,
        })
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The page size its runs count in.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The member holding the pages.
    pub fn pages_member(&self) -> &str {
        &self.pages_member
    }

    /// The runs, by address.
    pub fn runs(&self) -> &[PageRun] {
        &self.runs
    }

    /// Bytes in this checkpoint (present pages).
    pub fn present_bytes(&self) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.is_present())
            .map(|r| r.len)
            .sum()
    }

    /// The bytes of the pages member the present runs need: more than the member holds is an
    /// error (a truncated member, or a pagemap entry past its end) naming `pagemap`.
    pub fn check_member_size(
        &self,
        src: &CheckpointSource,
        pagemap: &str,
    ) -> Result<(), InspectError> {
        let need = self
            .runs
            .iter()
            .filter_map(|r| r.offset.map(|o| o + r.len))
            .max()
            .unwrap_or(0);
        if need == 0 {
            return Ok(());
        }
        let size = src.member(&self.pages_member).map(|m| m.size).unwrap_or(0);
        if need > size {
            return Err(InspectError::BadMember {
                member: self.pages_member.clone(),
                reason: format!(
                    "{pagemap} lists {need} bytes of pages, the member holds {size}: it is truncated or the pagemap is wrong"
                ),
            });
        }
        Ok(())
    }

    /// The run holding `vaddr`.
    pub fn run_at(&self, vaddr: u64) -> Option<&PageRun> {
        let i = self.runs.partition_point(|r| r.vaddr <= vaddr);
        let r = self.runs.get(i.checked_sub(1)?)?;
        (vaddr < r.end()).then_some(r)
    }

    /// Where `len` bytes at `vaddr` are: `(offset in the pages member, length)` pieces.
    pub fn locate(&self, vaddr: u64, len: u64) -> Result<Vec<(u64, u64)>, InspectError> {
        let mut out = Vec::new();
        let mut at = vaddr;
        let end = vaddr.checked_add(len).ok_or(InspectError::NotDumped {
            pid: self.pid,
            vaddr,
            len,
            reason: "the range overflows",
        })?;
        while at < end {
            let not = |reason| InspectError::NotDumped {
                pid: self.pid,
                vaddr: at,
                len: end - at,
                reason,
            };
            let run = self.run_at(at).ok_or_else(|| not("no page dumped there"))?;
            let Some(base) = run.offset else {
                return Err(not(if run.flags & PE_LAZY != 0 {
                    "lazy page, not in the dump"
                } else {
                    "page in a parent dump"
                }));
            };
            let n = (run.end() - at).min(end - at);
            let off = base + (at - run.vaddr);
            match out.last_mut() {
                Some((o, l)) if *o + *l == off => *l += n,
                _ => out.push((off, n)),
            }
            at += n;
        }
        Ok(out)
    }
}

/// The shared-memory objects of a checkpoint (anonymous `MAP_SHARED` memory, memfds): each
/// object's pages are in `pagemap-shmem-<shmid>.img` (its `vaddr`s are offsets in the object)
/// and the pages member that pagemap names. An anonymous shared VMA's `shmid` names the
/// object; a memfd VMA's `shmid` is the memfd's file id (`files.img`), whose inode
/// (`memfd.img`) names it. Loaded once per run; each pagemap parsed once.
#[derive(Debug)]
pub struct SharedMemory {
    page_size: u64,
    /// memfd file id -> shmid.
    memfd_shmid: BTreeMap<u64, u64>,
    /// memfd file id -> its name.
    memfd_name: BTreeMap<u64, String>,
    /// System V segment id -> its key (`ipcns-shm-*.img`).
    sysv_key: BTreeMap<u64, u32>,
    cache: BTreeMap<u64, Option<PageIndex>>,
}

impl SharedMemory {
    /// Reads `files.img` and `memfd.img` (either may be absent).
    pub fn load(src: &CheckpointSource) -> Result<SharedMemory, InspectError> {
        let read = |name: &str| src.read_optional(&format!("{CHECKPOINT_DIR}{name}"), MAX_MM_BYTES);
        let mut memfd_inode = BTreeMap::new();
        if let Some(bytes) = read("files.img")? {
            let files: Vec<proto::FileEntry> =
                ImageReader::from_bytes(&bytes, "checkpoint/files.img")?.read_entries()?;
            for f in files {
                if let Some(m) = f.memfd {
                    memfd_inode.insert(u64::from(f.id), u64::from(m.inode_id));
                }
            }
        }
        let mut inodes = BTreeMap::new();
        if let Some(bytes) = read("memfd.img")? {
            let entries: Vec<proto::MemfdInodeEntry> =
                ImageReader::from_bytes(&bytes, "checkpoint/memfd.img")?.read_entries()?;
            for i in entries {
                inodes.insert(i.inode_id, (u64::from(i.shmid), i.name));
            }
        }
        let mut memfd_shmid = BTreeMap::new();
        let mut memfd_name = BTreeMap::new();
        for (id, inode) in memfd_inode {
            if let Some((shmid, name)) = inodes.get(&inode) {
                memfd_shmid.insert(id, *shmid);
                memfd_name.insert(id, name.clone());
            }
        }
        // System V segments' keys, for naming their mappings; an image reel cannot read only
        // leaves the name without its key.
        let mut sysv_key = BTreeMap::new();
        let shm_images: Vec<String> = src
            .images_with_prefix("ipcns-shm-")
            .map(str::to_owned)
            .collect();
        for name in shm_images {
            match super::load::entries::<proto::IpcShmEntry>(src, &name) {
                Ok(segments) => sysv_key.extend(
                    segments
                        .into_iter()
                        .map(|s| (u64::from(s.desc.id), s.desc.key)),
                ),
                Err(e) => tracing::debug!(image = name, error = %e, "System V segments unnamed"),
            }
        }
        Ok(SharedMemory {
            page_size: src.page_size()?,
            memfd_shmid,
            memfd_name,
            sysv_key,
            cache: BTreeMap::new(),
        })
    }

    /// The shared-memory object behind a VMA, when it is anonymous shared memory or a memfd.
    pub fn shmid_of(&self, v: &proto::VmaEntry) -> Option<u64> {
        if v.status & VMA_AREA_MEMFD != 0 {
            self.memfd_shmid.get(&v.shmid).copied()
        } else if v.status & VMA_ANON_SHARED != 0 {
            Some(v.shmid)
        } else {
            None
        }
    }

    /// Whether a VMA is `MAP_SHARED|MAP_ANONYMOUS` memory: flagged so, or (CRIU 4.2) recorded as
    /// a memfd whose name is the kernel's for such memory, `/dev/zero`.
    pub fn is_anon_shared(&self, v: &proto::VmaEntry) -> bool {
        v.status & VMA_ANON_SHARED != 0
            || (v.status & VMA_AREA_MEMFD != 0
                && self
                    .memfd_name
                    .get(&v.shmid)
                    .is_some_and(|n| n == "/dev/zero"))
    }

    /// `/SYSV<key>` for a System V shared memory VMA (as `/proc/PID/maps` shows it, without
    /// ` (deleted)`).
    pub fn sysv_path(&self, v: &proto::VmaEntry) -> Option<String> {
        if v.status & VMA_AREA_SYSVIPC == 0 {
            return None;
        }
        Some(match self.sysv_key.get(&v.shmid) {
            Some(key) => format!("/SYSV{key:08x}"),
            None => "/SYSV".into(),
        })
    }

    /// `memfd:NAME` for a memfd VMA (as `/proc/PID/maps` shows it, without ` (deleted)`).
    pub fn memfd_path(&self, v: &proto::VmaEntry) -> Option<String> {
        if v.status & VMA_AREA_MEMFD == 0 {
            return None;
        }
        self.memfd_name.get(&v.shmid).map(|n| format!("memfd:{n}"))
    }

    /// The page index of object `shmid`, `None` when the checkpoint has no pagemap for it (no
    /// page of it was ever written). Its pages member is checked to hold what it lists.
    pub fn index(
        &mut self,
        src: &CheckpointSource,
        shmid: u64,
    ) -> Result<Option<&PageIndex>, InspectError> {
        if !self.cache.contains_key(&shmid) {
            let name = format!("{CHECKPOINT_DIR}pagemap-shmem-{shmid}.img");
            let idx = match src.read_optional(&name, MAX_PAGEMAP_BYTES)? {
                None => None,
                Some(bytes) => {
                    let idx = PageIndex::from_image(&bytes, &name, 0, self.page_size)?;
                    idx.check_member_size(src, &name)?;
                    Some(idx)
                }
            };
            self.cache.insert(shmid, idx);
        }
        Ok(self.cache.get(&shmid).and_then(Option::as_ref))
    }
}

/// A piece of a process's memory as the dump holds it: `len` bytes at `vaddr`, at `offset`
/// of `member` (`None`: not in this checkpoint, see `flags`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The first byte's virtual address.
    pub vaddr: u64,
    /// How many bytes.
    pub len: u64,
    /// The pages member.
    pub member: String,
    /// Where the bytes are in it, when present.
    pub offset: Option<u64>,
    /// The pagemap flags ([`PE_PRESENT`], [`PE_PARENT`], [`PE_LAZY`]).
    pub flags: u32,
    /// The shared-memory object, for shared pages.
    pub shmid: Option<u64>,
}

impl Piece {
    /// The end address (exclusive).
    pub fn end(&self) -> u64 {
        self.vaddr + self.len
    }
}

/// Every page of a process the dump holds or names, private and shared, by address: the
/// runs of `pagemap-<pid>.img`, and for each anonymous shared or memfd VMA without private
/// pages, the runs of its object's shared pagemap inside the VMA (at the VMA's offset in the
/// object), placed at their virtual addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryIndex {
    pid: u32,
    page_size: u64,
    pieces: Vec<Piece>,
}

impl MemoryIndex {
    /// The index of `pid`, whose VMAs (`mm-<pid>.img`) are `vmas`. A process without a pagemap
    /// has no private pages.
    pub fn build(
        src: &CheckpointSource,
        pid: u32,
        vmas: &[proto::VmaEntry],
        shm: &mut SharedMemory,
    ) -> Result<MemoryIndex, InspectError> {
        let pm = format!("{CHECKPOINT_DIR}pagemap-{pid}.img");
        let private = if src.member(&pm).is_some() {
            let ix = PageIndex::load(src, pid)?;
            ix.check_member_size(src, &pm)?;
            Some(ix)
        } else {
            None
        };
        let mut pieces: Vec<Piece> = private
            .iter()
            .flat_map(|ix| {
                ix.runs().iter().map(|r| Piece {
                    vaddr: r.vaddr,
                    len: r.len,
                    member: ix.pages_member().to_string(),
                    offset: r.offset,
                    flags: r.flags,
                    shmid: None,
                })
            })
            .collect();
        for v in vmas {
            let Some(shmid) = shm.shmid_of(v) else {
                continue;
            };
            if v.end <= v.start {
                continue;
            }
            let has_private = private.as_ref().is_some_and(|ix| {
                ix.runs()
                    .iter()
                    .any(|r| r.is_present() && r.vaddr < v.end && r.end() > v.start)
            });
            if has_private {
                continue;
            }
            let Some(ix) = shm.index(src, shmid)? else {
                continue;
            };
            let lo = v.pgoff;
            let hi = lo.saturating_add(v.end - v.start);
            for r in ix.runs() {
                if r.end() <= lo || r.vaddr >= hi {
                    continue;
                }
                let s = r.vaddr.max(lo);
                let e = r.end().min(hi);
                pieces.push(Piece {
                    vaddr: v.start + (s - lo),
                    len: e - s,
                    member: ix.pages_member().to_string(),
                    offset: r.offset.map(|o| o + (s - r.vaddr)),
                    flags: r.flags,
                    shmid: Some(shmid),
                });
            }
        }
        pieces.sort_by_key(|p| p.vaddr);
        Ok(MemoryIndex {
            pid,
            page_size: src.page_size()?,
            pieces,
        })
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The page size.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Every piece, by address.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The pieces inside `[start, end)`, clipped to it.
    pub fn within(&self, start: u64, end: u64) -> Vec<Piece> {
        let i = self.pieces.partition_point(|p| p.end() <= start);
        self.pieces[i..]
            .iter()
            .take_while(|p| p.vaddr < end)
            .map(|p| {
                let s = p.vaddr.max(start);
                let e = p.end().min(end);
                Piece {
                    vaddr: s,
                    len: e - s,
                    member: p.member.clone(),
                    offset: p.offset.map(|o| o + (s - p.vaddr)),
                    flags: p.flags,
                    shmid: p.shmid,
                }
            })
            .collect()
    }

    /// How many pages in `[start, end)` the checkpoint holds.
    pub fn dumped_pages(&self, start: u64, end: u64) -> u64 {
        self.within(start, end)
            .iter()
            .filter(|p| p.offset.is_some())
            .map(|p| p.len)
            .sum::<u64>()
            / self.page_size
    }
}

/// Reads a process's memory from the checkpoint.
#[derive(Debug)]
pub struct ProcessMemory<'a> {
    src: &'a CheckpointSource,
    index: PageIndex,
}

impl<'a> ProcessMemory<'a> {
    /// The memory of `pid` (its pagemap is loaded).
    pub fn open(src: &'a CheckpointSource, pid: u32) -> Result<ProcessMemory<'a>, InspectError> {
        Ok(ProcessMemory {
            src,
            index: PageIndex::load(src, pid)?,
        })
    }

    /// The page index.
    pub fn index(&self) -> &PageIndex {
        &self.index
    }

    /// `len` bytes at `vaddr` (at most [`MAX_READ`]); every page must be in the dump.
    pub fn read(&self, vaddr: u64, len: u64) -> Result<Vec<u8>, InspectError> {
        if len > MAX_READ {
            return Err(InspectError::TooLarge {
                member: self.index.pages_member.clone(),
                size: len,
                max: MAX_READ,
            });
        }
        let mut out = Vec::with_capacity(len as usize);
        for (off, n) in self.index.locate(vaddr, len)? {
            out.extend(self.src.read_range(&self.index.pages_member, off, n)?);
        }
        Ok(out)
    }

    /// The NUL-separated strings between `start` and `end` (argv, environ).
    pub fn strings(&self, start: u64, end: u64) -> Result<Vec<String>, InspectError> {
        if end <= start {
            return Ok(Vec::new());
        }
        let len = (end - start).min(MAX_ARGS_BYTES);
        let bytes = self.read(start, len)?;
        Ok(split_nul(&bytes))
    }
}

/// A process's argv and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgsEnv {
    /// argv.
    pub argv: Vec<String>,
    /// The environment, `NAME=value`.
    pub env: Vec<String>,
}

/// Reads argv and the environment of `pid` through its `mm-<pid>.img` and pages.
pub fn args_env(src: &CheckpointSource, pid: u32) -> Result<ArgsEnv, InspectError> {
    let name = format!("{CHECKPOINT_DIR}mm-{pid}.img");
    let bytes = src.read(&name, MAX_MM_BYTES)?;
    let mm: proto::MmEntry = match ImageReader::from_bytes(&bytes, name.as_str())?.next_entry()? {
        Some(e) => e.decode()?,
        None => {
            return Err(InspectError::BadMember {
                member: name,
                reason: "no mm entry".into(),
            })
        }
    };
    let mem = ProcessMemory::open(src, pid)?;
    Ok(ArgsEnv {
        argv: mem.strings(mm.mm_arg_start, mm.mm_arg_end)?,
        env: mem.strings(mm.mm_env_start, mm.mm_env_end)?,
    })
}

/// Splits NUL-terminated strings (lossy UTF-8); a trailing empty string is dropped.
pub fn split_nul(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criu::image::{ImageKind, ImageWriter};

    const PAGE_SIZE: u64 = DEFAULT_PAGE_SIZE;

    fn pagemap(runs: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pagemap, "pagemap-1.img").unwrap();
        w.write_entry(&proto::PagemapHead { pages_id: 7 }).unwrap();
        for &(vaddr, nr, flags) in runs {
            w.write_entry(&proto::PagemapEntry {
                vaddr,
                compat_nr_pages: nr as u32,
                in_parent: None,
                flags: Some(flags),
                nr_pages: Some(nr),
            })
            .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn runs_map_to_offsets_in_pagemap_order() {
        let img = pagemap(&[
            (0x20000, 2, PE_PRESENT),
            (0x10000, 1, PE_PRESENT),
            (0x30000, 1, PE_PARENT),
            (0x40000, 3, PE_PRESENT | PE_LAZY),
        ]);
        let ix = PageIndex::from_image(&img, "pagemap-1.img", 1, PAGE_SIZE).unwrap();
        assert_eq!(ix.pages_member(), "checkpoint/pages-7.img");
        assert_eq!(ix.runs()[0].vaddr, 0x10000);
        assert_eq!(ix.runs()[0].offset, Some(2 * PAGE_SIZE));
        assert_eq!(ix.runs()[1].offset, Some(0));
        assert_eq!(ix.present_bytes(), 6 * PAGE_SIZE);
        assert_eq!(ix.locate(0x20ff0, 0x20).unwrap(), vec![(0xff0, 0x20)]);
        // Across two runs that are adjacent in the pages member.
        assert_eq!(
            ix.locate(0x10ff0, 0x20).unwrap_err().to_string(),
            "process 1: 16 bytes at 0x11000 are not in the dump (no page dumped there)"
        );
        assert!(ix
            .locate(0x30000, 1)
            .unwrap_err()
            .to_string()
            .contains("parent"));
        assert_eq!(ix.locate(0x40001, 2).unwrap(), vec![(3 * PAGE_SIZE + 1, 2)]);
        assert!(ix.run_at(0x50000).is_none());
    }

    #[test]
    fn hostile_pagemaps_are_errors() {
        for runs in [
            vec![(0x10000, 2, PE_PRESENT), (0x11000, 1, PE_PRESENT)],
            vec![(0x10001, 1, PE_PRESENT)],
            vec![(u64::MAX - 0xfff, 2, PE_PRESENT)],
        ] {
            let img = pagemap(&runs);
            assert!(PageIndex::from_image(&img, "pagemap-1.img", 1, PAGE_SIZE).is_err());
        }
        let img = pagemap(&[(0x10000, 1, PE_PRESENT)]);
        for cut in 0..img.len() - 1 {
            let _ = PageIndex::from_image(&img[..cut], "pagemap-1.img", 1, PAGE_SIZE);
        }
    }

    /// A checkpoint directory with a shared-memory object 5 (pagemap `runs`, pages member of
    /// `pages` bytes) and no process pagemap.
    fn shmem_dir(runs: &[(u64, u64, u32)], pages: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("checkpoint");
        std::fs::create_dir(&cp).unwrap();
        std::fs::write(cp.join("pagemap-shmem-5.img"), pagemap(runs)).unwrap();
        let bytes: Vec<u8> = (0..pages).map(|i| (i / PAGE_SIZE as usize) as u8).collect();
        std::fs::write(cp.join("pages-7.img"), bytes).unwrap();
        dir
    }

    #[test]
    fn shared_pages_are_placed_at_the_vma() {
        let dir = shmem_dir(
            &[(0, 1, PE_PRESENT), (2 * PAGE_SIZE, 2, PE_PRESENT)],
            3 * 4096,
        );
        let src = CheckpointSource::open(dir.path(), Default::default()).unwrap();
        let mut shm = SharedMemory::load(&src).unwrap();
        // The VMA maps the object from its second page on.
        let vma = proto::VmaEntry {
            start: 0x7000_0000,
            end: 0x7000_3000,
            pgoff: PAGE_SIZE,
            shmid: 5,
            status: VMA_ANON_SHARED,
            flags: 1,
            prot: 3,
            ..Default::default()
        };
        let ix = MemoryIndex::build(&src, 1, &[vma], &mut shm).unwrap();
        let p = ix.pieces();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].vaddr, 0x7000_1000);
        assert_eq!(p[0].len, 2 * PAGE_SIZE);
        assert_eq!(p[0].offset, Some(PAGE_SIZE));
        assert_eq!(p[0].member, "checkpoint/pages-7.img");
        assert_eq!(p[0].shmid, Some(5));
        assert_eq!(ix.dumped_pages(0x7000_0000, 0x7000_3000), 2);
        assert_eq!(
            ix.within(0x7000_2000, 0x7000_3000)[0].offset,
            Some(2 * PAGE_SIZE)
        );
    }

    #[test]
    fn a_shared_pagemap_past_its_pages_is_an_error() {
        let dir = shmem_dir(&[(0, 4, PE_PRESENT)], 3 * 4096);
        let src = CheckpointSource::open(dir.path(), Default::default()).unwrap();
        let mut shm = SharedMemory::load(&src).unwrap();
        let e = shm.index(&src, 5).unwrap_err().to_string();
        assert!(
            e.contains("pagemap-shmem-5.img lists 16384 bytes of pages, the member holds 12288"),
            "{e}"
        );
        assert!(shm.index(&src, 6).unwrap().is_none());
    }

    #[test]
    fn nul_strings() {
        assert_eq!(split_nul(b"a\0bc\0"), vec!["a", "bc"]);
        assert_eq!(split_nul(b"a\0\0b"), vec!["a", "", "b"]);
        assert!(split_nul(b"\0").is_empty());
    }
}
