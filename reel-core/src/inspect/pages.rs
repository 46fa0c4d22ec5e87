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

use criu_sys::proto;

use super::source::CheckpointSource;
use super::InspectError;
use crate::archive::CHECKPOINT_DIR;
use crate::criu::image::ImageReader;

/// The pages are in the parent dump's images.
pub const PE_PARENT: u32 = 1 << 0;
/// The pages were left for lazy restore.
pub const PE_LAZY: u32 = 1 << 1;
/// The pages are in this dump's pages image.
pub const PE_PRESENT: u32 = 1 << 2;

/// x86-64's page size (what CRIU 4.2.1 dumps on this architecture).
pub const PAGE_SIZE: u64 = 4096;
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
    /// [`PE_PARENT`], [`PE_LAZY`], [`PE_PRESENT`].
    pub flags: u32,
    /// Where the first page is in the pages member, when present.
    pub offset: Option<u64>,
}

impl PageRun {
    /// The end address (exclusive).
    pub fn end(&self) -> u64 {
        self.vaddr + self.nr_pages * PAGE_SIZE
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
    pages_member: String,
    runs: Vec<PageRun>,
}

impl PageIndex {
    /// Loads `pagemap-<pid>.img` of the checkpoint.
    pub fn load(src: &CheckpointSource, pid: u32) -> Result<PageIndex, InspectError> {
        let name = format!("{CHECKPOINT_DIR}pagemap-{pid}.img");
        let bytes = src.read(&name, MAX_PAGEMAP_BYTES)?;
        PageIndex::from_image(&bytes, &name, pid)
    }

    /// Parses a pagemap image already in memory (`name` names it in errors).
    pub fn from_image(bytes: &[u8], name: &str, pid: u32) -> Result<PageIndex, InspectError> {
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
            if !pe.vaddr.is_multiple_of(PAGE_SIZE) {
                return Err(bad(format!("run at {:#x} is not page-aligned", pe.vaddr)));
            }
            let len = nr
                .checked_mul(PAGE_SIZE)
                .filter(|l| pe.vaddr.checked_add(*l).is_some())
                .ok_or_else(|| bad(format!("run at {:#x} of {nr} pages overflows", pe.vaddr)))?;
            let present = flags & PE_PRESENT != 0;
            runs.push(PageRun {
                vaddr: pe.vaddr,
                nr_pages: nr,
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
            pages_member: format!("{CHECKPOINT_DIR}pages-{}.img", head.pages_id),
            runs,
        })
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.pid
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
            .map(|r| r.nr_pages * PAGE_SIZE)
            .sum()
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
        let ix = PageIndex::from_image(&img, "pagemap-1.img", 1).unwrap();
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
            assert!(PageIndex::from_image(&img, "pagemap-1.img", 1).is_err());
        }
        let img = pagemap(&[(0x10000, 1, PE_PRESENT)]);
        for cut in 0..img.len() - 1 {
            let _ = PageIndex::from_image(&img[..cut], "pagemap-1.img", 1);
        }
    }

    #[test]
    fn nul_strings() {
        assert_eq!(split_nul(b"a\0bc\0"), vec!["a", "bc"]);
        assert_eq!(split_nul(b"a\0\0b"), vec!["a", "", "b"]);
        assert!(split_nul(b"\0").is_empty());
    }
}
