//! Random access into a zstd stream made of several frames.
//!
//! reel's exports ([`crate::export::frames`]) end with a seek table (zstd's seekable format in
//! a skippable frame): the compressed and decompressed size of every frame. With it, a byte
//! at decompressed offset `o` is reached by decoding only from the start of the frame that
//! holds `o` (frames are at most [`crate::export::frames::MAX_FRAME_BYTES`]). Without a table
//! (a `.tar.zst` of another tool), one streaming pass finds where each frame starts; a stream
//! of a single frame then has to be decoded from its start for every read.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};

use super::InspectError;
use crate::archive::read_up_to;
use crate::archive::ZSTD_MAGIC;
use crate::export::frames::{parse_seek_table, SEEKABLE_MAGIC};

/// The most frames reel keeps an index of (16 bytes each).
pub const MAX_FRAMES: usize = 1 << 24;

/// Where one frame starts, compressed and decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStart {
    /// Offset of the frame in the file.
    pub compressed: u64,
    /// Offset of its first decompressed byte in the stream.
    pub decompressed: u64,
}

/// A zstd file with the start of every frame known.
#[derive(Debug)]
pub struct SeekableZstd {
    file: File,
    path: PathBuf,
    frames: Vec<FrameStart>,
    decompressed_len: u64,
    from_table: bool,
}

impl SeekableZstd {
    /// Indexes the zstd file `file` (at `path`): from its seek table, else by one pass.
    pub fn open(file: File, path: &Path) -> Result<SeekableZstd, InspectError> {
        let len = file
            .metadata()
            .map_err(|e| InspectError::io("reading the size of", path, e))?
            .len();
        if let Some((frames, total)) = from_table(&file, path, len)? {
            return Ok(SeekableZstd {
                file,
                path: path.to_owned(),
                frames,
                decompressed_len: total,
                from_table: true,
            });
        }
        tracing::info!(path = %path.display(), "no zstd seek table: indexing frames in one pass");
        let (frames, total) = scan(&file, path)?;
        Ok(SeekableZstd {
            file,
            path: path.to_owned(),
            frames,
            decompressed_len: total,
            from_table: false,
        })
    }

    /// Whether the frames came from the seek table (else from a pass over the stream).
    pub fn has_seek_table(&self) -> bool {
        self.from_table
    }

    /// The frames.
    pub fn frames(&self) -> &[FrameStart] {
        &self.frames
    }

    /// The length of the decompressed stream.
    pub fn len(&self) -> u64 {
        self.decompressed_len
    }

    /// Whether the stream is empty.
    pub fn is_empty(&self) -> bool {
        self.decompressed_len == 0
    }

    /// The decompressed stream from `offset` on: decoding starts at the frame holding it.
    pub fn reader_at(&self, offset: u64) -> io::Result<impl Read + '_> {
        let i = match self.frames.partition_point(|f| f.decompressed <= offset) {
            0 => 0,
            n => n - 1,
        };
        let (c, d) = self
            .frames
            .get(i)
            .map(|f| (f.compressed, f.decompressed))
            .unwrap_or((0, 0));
        let raw = ReadAt::new(&self.file, c, u64::MAX);
        let mut dec = zstd::stream::read::Decoder::new(raw)?;
        let skip = offset.saturating_sub(d);
        let skipped = io::copy(&mut (&mut dec).take(skip), &mut io::sink())?;
        if skipped < skip {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the stream ends at {} bytes", d + skipped),
            ));
        }
        Ok(dec)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads `file` from `offset` with `pread` (no shared cursor), at most `limit` bytes.
#[derive(Debug)]
pub struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    left: u64,
}

impl<'a> ReadAt<'a> {
    /// `limit` bytes of `file` from `offset`.
    pub fn new(file: &'a File, offset: u64, limit: u64) -> ReadAt<'a> {
        ReadAt {
            file,
            pos: offset,
            left: limit,
        }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if max == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..max], self.pos)?;
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// The frames from the seek table at the end of the file, with the total decompressed length;
/// `None` when there is no table or it does not describe this file.
fn from_table(
    file: &File,
    path: &Path,
    len: u64,
) -> Result<Option<(Vec<FrameStart>, u64)>, InspectError> {
    if len < 17 {
        return Ok(None);
    }
    let mut footer = [0u8; 9];
    file.read_exact_at(&mut footer, len - 9)
        .map_err(|e| InspectError::io("reading", path, e))?;
    if u32::from_le_bytes([footer[5], footer[6], footer[7], footer[8]]) != SEEKABLE_MAGIC {
        return Ok(None);
    }
    let count = u64::from(u32::from_le_bytes([
        footer[0], footer[1], footer[2], footer[3],
    ]));
    let table_len = count * 8 + 9 + 8;
    if table_len > len || count as usize > MAX_FRAMES {
        return Ok(None);
    }
    let mut tail = vec![0u8; table_len as usize];
    file.read_exact_at(&mut tail, len - table_len)
        .map_err(|e| InspectError::io("reading", path, e))?;
    let Some(entries) = parse_seek_table(&tail) else {
        return Ok(None);
    };
    let mut frames = Vec::with_capacity(entries.len());
    let (mut c, mut d) = (0u64, 0u64);
    for e in &entries {
        frames.push(FrameStart {
            compressed: c,
            decompressed: d,
        });
        c += u64::from(e.compressed);
        d += u64::from(e.decompressed);
    }
    if c != len - table_len {
        tracing::warn!(path = %path.display(), "the zstd seek table does not match the file; ignoring it");
        return Ok(None);
    }
    Ok(Some((frames, d)))
}

/// One pass over the stream: where each frame starts, and the decompressed length.
fn scan(file: &File, path: &Path) -> Result<(Vec<FrameStart>, u64), InspectError> {
    let zerr = |reason: String| InspectError::Zstd {
        path: path.to_owned(),
        reason,
    };
    let ioerr = |e| InspectError::io("reading", path, e);
    let mut r = BufReader::with_capacity(1 << 17, ReadAt::new(file, 0, u64::MAX));
    let mut dctx = DCtx::try_create().ok_or_else(|| zerr("out of memory".into()))?;
    let mut out = vec![0u8; 1 << 17];
    let mut frames = Vec::new();
    let (mut c, mut d) = (0u64, 0u64);
    loop {
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut r, &mut magic).map_err(ioerr)?;
        if got == 0 {
            break;
        }
        if got < 4 {
            return Err(InspectError::Truncated {
                path: path.to_owned(),
                what: format!("{got} stray bytes at offset {c} of the zstd stream"),
            });
        }
        let m = u32::from_le_bytes(magic);
        if m & 0xFFFF_FFF0 == 0x184D_2A50 {
            let mut size = [0u8; 4];
            r.read_exact(&mut size).map_err(ioerr)?;
            let size = u64::from(u32::from_le_bytes(size));
            let skipped = io::copy(&mut (&mut r).take(size), &mut io::sink()).map_err(ioerr)?;
            if skipped < size {
                return Err(InspectError::Truncated {
                    path: path.to_owned(),
                    what: format!("a skippable zstd frame at offset {c}"),
                });
            }
            c += 8 + size;
            continue;
        }
        if magic != ZSTD_MAGIC {
            return Err(zerr(format!(
                "no zstd frame at offset {c} (magic {m:#010x})"
            )));
        }
        if frames.len() >= MAX_FRAMES {
            return Err(zerr(format!("more than {MAX_FRAMES} frames")));
        }
        frames.push(FrameStart {
            compressed: c,
            decompressed: d,
        });
        dctx.reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(|code| zerr(zstd::zstd_safe::get_error_name(code).to_string()))?;
        // The magic, then the rest of the frame.
        let mut first = InBuffer::around(&magic[..]);
        let mut done = false;
        while first.pos() < first.src.len() {
            let mut o = OutBuffer::around(&mut out[..]);
            let ret = dctx
                .decompress_stream(&mut o, &mut first)
                .map_err(|code| zerr(zstd::zstd_safe::get_error_name(code).to_string()))?;
            d += o.pos() as u64;
            done = ret == 0;
        }
        c += 4;
        while !done {
            let buf = r.fill_buf().map_err(ioerr)?;
            if buf.is_empty() {
                return Err(InspectError::Truncated {
                    path: path.to_owned(),
                    what: format!(
                        "the zstd frame at offset {} ends early",
                        frames[frames.len() - 1].compressed
                    ),
                });
            }
            let mut i = InBuffer::around(buf);
            let mut o = OutBuffer::around(&mut out[..]);
            let ret = dctx.decompress_stream(&mut o, &mut i).map_err(|code| {
                zerr(format!(
                    "at offset {c}: {}",
                    zstd::zstd_safe::get_error_name(code)
                ))
            })?;
            let used = i.pos();
            r.consume(used);
            c += used as u64;
            d += o.pos() as u64;
            done = ret == 0;
        }
    }
    if frames.is_empty() {
        return Err(zerr("no zstd frame".into()));
    }
    Ok((frames, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::frames::{seek_table, FrameEntry};
    use std::io::Write;

    fn frames_of(parts: &[&[u8]]) -> (Vec<u8>, Vec<FrameEntry>) {
        let mut out = Vec::new();
        let mut table = Vec::new();
        for p in parts {
            let c = zstd::encode_all(*p, 1).unwrap();
            table.push(FrameEntry {
                compressed: c.len() as u32,
                decompressed: p.len() as u32,
            });
            out.extend_from_slice(&c);
        }
        (out, table)
    }

    fn check(bytes: &[u8], want_table: bool, plain: &[u8]) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        let z = SeekableZstd::open(f, Path::new("t.tar.zst")).unwrap();
        assert_eq!(z.has_seek_table(), want_table);
        assert_eq!(z.len(), plain.len() as u64);
        for off in [0usize, 1, 4999, 5000, 5001, 12000, plain.len() - 1] {
            let mut got = vec![0u8; 10.min(plain.len() - off)];
            z.reader_at(off as u64)
                .unwrap()
                .read_exact(&mut got)
                .unwrap();
            assert_eq!(got, &plain[off..off + got.len()], "offset {off}");
        }
    }

    #[test]
    fn seeks_with_and_without_a_table() {
        let a: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..7000u32).map(|i| (i % 13) as u8).collect();
        let c = vec![7u8; 3000];
        let plain = [a.clone(), b.clone(), c.clone()].concat();
        let (mut bytes, table) = frames_of(&[&a, &b, &c]);
        check(&bytes, false, &plain);
        bytes.extend_from_slice(&seek_table(&table));
        check(&bytes, true, &plain);
        let z = {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&bytes).unwrap();
            SeekableZstd::open(f, Path::new("t")).unwrap()
        };
        assert_eq!(z.frames().len(), 3);
        assert_eq!(z.frames()[2].decompressed, 12000);
    }

    #[test]
    fn damaged_streams_are_errors() {
        let (bytes, _) = frames_of(&[&[1u8; 100000]]);
        for cut in [3usize, 10, bytes.len() - 1] {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&bytes[..cut]).unwrap();
            let err = SeekableZstd::open(f, Path::new("cut.tar.zst")).unwrap_err();
            assert!(err.to_string().contains("cut.tar.zst"), "{err}");
        }
        let mut garbage = bytes.clone();
        let mid = garbage.len() / 2;
        garbage[mid] ^= 0xff;
        garbage[mid + 1] ^= 0xff;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&garbage).unwrap();
        // Damage is found by the pass or by the frame's checksum when read.
        if let Ok(z) = SeekableZstd::open(f, Path::new("bad")) {
            let mut v = Vec::new();
            assert!(z.reader_at(0).unwrap().read_to_end(&mut v).is_err() || v.len() != 100000);
        }
    }
}
