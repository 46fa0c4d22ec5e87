//! The export encoder: a tar stream in, a plain tar or a framed zstd stream out.
//!
//! # The zstd layout
//!
//! The output is an ordinary zstd stream (`zstd -d | tar x` reads it), made of several frames:
//!
//! * every tar member (its header block(s), data and padding) starts a new frame, so a reader
//!   that knows where a member's frame starts can decompress that member alone;
//! * a member larger than [`MAX_FRAME_BYTES`] (uncompressed) is split into several frames;
//! * the two zero blocks that end the tar get a frame of their own;
//! * last comes a skippable frame holding a seek table in zstd's *seekable format*
//!   (`contrib/seekable_format` of the zstd sources): one entry per frame with its compressed
//!   and decompressed size, then the footer (frame count, descriptor, magic `0x8F92EAB1`).
//!   Decoders skip skippable frames, so plain tools never see it; a reader that wants one
//!   member reads the last 9 bytes, then the table, sums sizes up to the member's frame and
//!   decompresses from there.
//!
//! Frames carry a content checksum (XXH64). Frame boundaries come from parsing the tar headers
//! that stream through ([`TarTracker`]), so the same encoder works for a fresh checkpoint and
//! for re-encoding a stored `.tar`, and the output depends only on the tar bytes and the level:
//! a file and an S3 object exported from the same stored checkpoint are byte-identical.

use std::io::{self, Write};

use zstd::zstd_safe::{self, CCtx, CParameter, InBuffer, OutBuffer};

/// The largest uncompressed size of one frame (a bigger member is split).
pub const MAX_FRAME_BYTES: u64 = 8 << 20;

/// Magic number of the skippable frame holding the seek table.
pub const SEEK_TABLE_SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Magic number ending the seek table footer.
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// Job size for zstd's worker threads. zstd's default (4 × the window, 8 MiB at level 3) makes
/// its buffers alone approach 64 MiB with two workers; 2 MiB jobs keep reel's peak memory far
/// below that at every level, at a ratio cost of well under 1 %.
const JOB_BYTES: u32 = 2 << 20;

/// How an archive is compressed on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A plain tar.
    None,
    /// zstd level 1.
    Fast,
    /// zstd's default level (3).
    Default,
    /// zstd level 9.
    Better,
    /// zstd level 19.
    Best,
}

impl Level {
    /// The zstd level, `None` for a plain tar.
    pub fn zstd_level(self) -> Option<i32> {
        match self {
            Level::None => None,
            Level::Fast => Some(1),
            Level::Default => Some(zstd_safe::CLEVEL_DEFAULT),
            Level::Better => Some(9),
            Level::Best => Some(19),
        }
    }

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Fast => "fast",
            Level::Default => "default",
            Level::Better => "better",
            Level::Best => "best",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "none" => Level::None,
            "fast" => Level::Fast,
            "default" => Level::Default,
            "better" => Level::Better,
            "best" => Level::Best,
            _ => return None,
        })
    }

    /// The file suffix of an archive at this level (`.tar` or `.tar.zst`).
    pub fn suffix(self) -> &'static str {
        if self == Level::None {
            ".tar"
        } else {
            ".tar.zst"
        }
    }
}

/// Something that can be told where a new frame must start.
pub trait Framed: Write {
    /// Ends the current frame (if anything was written into it); the next byte starts a new one.
    fn boundary(&mut self) -> io::Result<()>;
}

/// One frame of the seek table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEntry {
    pub compressed: u32,
    pub decompressed: u32,
}

/// zstd with worker threads, one frame per [`Framed::boundary`], and the seek table at the end.
pub struct ZstdFrames<W: Write> {
    cctx: CCtx<'static>,
    out: W,
    buf: Vec<u8>,
    frames: Vec<FrameEntry>,
    in_frame: u64,
    out_frame: u64,
}

impl<W: Write> ZstdFrames<W> {
    /// A zstd encoder at `level` using `workers` threads (0: compress on the calling thread).
    pub fn new(out: W, level: i32, workers: u32) -> io::Result<Self> {
        let mut cctx = CCtx::try_create().ok_or_else(|| io::Error::other("zstd: out of memory"))?;
        let set = |c: &mut CCtx<'static>, p: CParameter| c.set_parameter(p).map_err(zstd_err);
        set(&mut cctx, CParameter::CompressionLevel(level))?;
        set(&mut cctx, CParameter::ChecksumFlag(true))?;
        if level > zstd_safe::CLEVEL_DEFAULT {
            // Keep the match finder's tables bounded at the high levels (level 19 would take
            // 64 MiB of chain table per worker): ~8 MiB per worker, a small loss of ratio.
            set(&mut cctx, CParameter::WindowLog(22))?;
            set(&mut cctx, CParameter::HashLog(20))?;
            set(&mut cctx, CParameter::ChainLog(20))?;
        }
        if workers > 0 {
            set(&mut cctx, CParameter::NbWorkers(workers))?;
            set(&mut cctx, CParameter::JobSize(JOB_BYTES))?;
        }
        Ok(ZstdFrames {
            cctx,
            out,
            buf: Vec::with_capacity(zstd_safe::CCtx::out_size()),
            frames: Vec::new(),
            in_frame: 0,
            out_frame: 0,
        })
    }

    /// The frames written so far.
    pub fn frames(&self) -> &[FrameEntry] {
        &self.frames
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.out_frame += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn end_frame(&mut self) -> io::Result<()> {
        if self.in_frame == 0 {
            return Ok(());
        }
        loop {
            let mut input = InBuffer::around(&[]);
            let mut output = OutBuffer::around(&mut self.buf);
            let remaining = self
                .cctx
                .compress_stream2(
                    &mut output,
                    &mut input,
                    zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end,
                )
                .map_err(zstd_err)?;
            self.drain()?;
            if remaining == 0 {
                break;
            }
        }
        self.frames.push(FrameEntry {
            compressed: u32::try_from(self.out_frame).map_err(|_| too_big())?,
            decompressed: u32::try_from(self.in_frame).map_err(|_| too_big())?,
        });
        self.in_frame = 0;
        self.out_frame = 0;
        Ok(())
    }

    /// The output, leaving the frame unfinished (after a failure: the stream is unusable).
    pub fn abandon(self) -> W {
        self.out
    }

    /// Ends the last frame, appends the seek table and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.end_frame()?;
        let table = seek_table(&self.frames);
        self.out.write_all(&table)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ZstdFrames<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let mut input = InBuffer::around(data);
        while input.pos() < data.len() {
            let mut output = OutBuffer::around(&mut self.buf);
            self.cctx
                .compress_stream2(
                    &mut output,
                    &mut input,
                    zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue,
                )
                .map_err(zstd_err)?;
            self.drain()?;
        }
        self.in_frame += data.len() as u64;
        Ok(data.len())
    }

    /// Flushes what was written to the output; zstd keeps its frame open.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Framed for ZstdFrames<W> {
    fn boundary(&mut self) -> io::Result<()> {
        self.end_frame()
    }
}

/// The seek table (a skippable frame) for `frames`.
pub fn seek_table(frames: &[FrameEntry]) -> Vec<u8> {
    let body = frames.len() * 8 + 9;
    let mut t = Vec::with_capacity(8 + body);
    t.extend_from_slice(&SEEK_TABLE_SKIPPABLE_MAGIC.to_le_bytes());
    t.extend_from_slice(&(body as u32).to_le_bytes());
    for f in frames {
        t.extend_from_slice(&f.compressed.to_le_bytes());
        t.extend_from_slice(&f.decompressed.to_le_bytes());
    }
    t.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    t.push(0); // descriptor: no per-frame checksums in the table (the frames carry their own)
    t.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    t
}

/// Reads the seek table at the end of a framed archive: `(compressed, decompressed)` per frame.
/// `None` if `tail` does not end with one.
pub fn parse_seek_table(tail: &[u8]) -> Option<Vec<FrameEntry>> {
    let n = tail.len();
    if n < 17 {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]);
    if u32_at(n - 4) != SEEKABLE_MAGIC || tail[n - 5] & 0x80 != 0 {
        return None;
    }
    let count = u32_at(n - 9) as usize;
    let start = n.checked_sub(9 + count * 8 + 8)?;
    if u32_at(start) != SEEK_TABLE_SKIPPABLE_MAGIC || u32_at(start + 4) as usize != count * 8 + 9 {
        return None;
    }
    Some(
        (0..count)
            .map(|i| FrameEntry {
                compressed: u32_at(start + 8 + i * 8),
                decompressed: u32_at(start + 12 + i * 8),
            })
            .collect(),
    )
}

/// A plain tar: no frames.
pub struct Plain<W: Write>(pub W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Framed for Plain<W> {
    fn boundary(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn zstd_err(code: usize) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)))
}

fn too_big() -> io::Error {
    io::Error::other("zstd frame larger than 4 GiB")
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum State {
    /// Collecting a 512-byte header; `continues` when a GNU long-name or PAX header came first.
    Header { got: usize, continues: bool },
    /// In a member's data (and padding): `left` bytes to go, `data` of them real content.
    Data {
        left: u64,
        data: u64,
        extension: bool,
    },
    /// After the end-of-archive zero blocks.
    Trailer,
}

type MemberHook = Box<dyn FnMut(&str, u64) + Send>;

/// Follows a tar stream as it is written: starts a frame at every member (and every
/// [`MAX_FRAME_BYTES`] inside one) and reports each member once its data has passed.
pub struct TarTracker<F: Framed> {
    inner: F,
    state: State,
    header: [u8; 512],
    name: Vec<u8>,
    member_size: u64,
    long_name: Option<Vec<u8>>,
    collecting_long_name: bool,
    in_frame: u64,
    on_member: Option<MemberHook>,
    bytes: u64,
}

impl<F: Framed> TarTracker<F> {
    pub fn new(inner: F) -> Self {
        TarTracker {
            inner,
            state: State::Header {
                got: 0,
                continues: false,
            },
            header: [0; 512],
            name: Vec::new(),
            member_size: 0,
            long_name: None,
            collecting_long_name: false,
            in_frame: 0,
            on_member: None,
            bytes: 0,
        }
    }

    /// Calls `f(name, size)` after each member's data went through.
    pub fn on_member(mut self, f: impl FnMut(&str, u64) + Send + 'static) -> Self {
        self.on_member = Some(Box::new(f));
        self
    }

    /// Tar bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn into_inner(self) -> F {
        self.inner
    }

    pub fn get_ref(&self) -> &F {
        &self.inner
    }

    fn pass(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)?;
        self.in_frame += data.len() as u64;
        Ok(())
    }

    fn split(&mut self) -> io::Result<()> {
        self.inner.boundary()?;
        self.in_frame = 0;
        Ok(())
    }

    fn header_done(&mut self) -> io::Result<()> {
        let h = &self.header;
        if h.iter().all(|b| *b == 0) {
            self.state = State::Trailer;
            return Ok(());
        }
        let size = parse_size(&h[124..136]).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "tar header with a bad size")
        })?;
        let kind = h[156];
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if extension {
            self.collecting_long_name = kind == b'L';
            if self.collecting_long_name {
                self.long_name = Some(Vec::new());
            }
        } else {
            self.collecting_long_name = false;
            self.name = match self.long_name.take() {
                Some(n) => n,
                None => header_name(h),
            };
            self.member_size = size;
        }
        let padded = size.div_ceil(512) * 512;
        if padded == 0 {
            self.after_data(extension);
        } else {
            self.state = State::Data {
                left: padded,
                data: size,
                extension,
            };
        }
        Ok(())
    }

    fn after_data(&mut self, extension: bool) {
        self.collecting_long_name = false;
        if !extension {
            let name = String::from_utf8_lossy(&self.name).into_owned();
            let size = self.member_size;
            if let Some(f) = self.on_member.as_mut() {
                f(&name, size);
            }
        }
        self.state = State::Header {
            got: 0,
            continues: extension,
        };
    }
}

impl<F: Framed> Write for TarTracker<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            match self.state {
                State::Header { got, continues } => {
                    if got == 0 && (!continues || self.in_frame >= MAX_FRAME_BYTES) {
                        self.split()?;
                    }
                    let n = rest.len().min(512 - got);
                    self.header[got..got + n].copy_from_slice(&rest[..n]);
                    self.pass(&rest[..n])?;
                    rest = &rest[n..];
                    self.state = State::Header {
                        got: got + n,
                        continues,
                    };
                    if got + n == 512 {
                        self.header_done()?;
                    }
                }
                State::Data {
                    left,
                    data,
                    extension,
                } => {
                    if !extension && self.in_frame >= MAX_FRAME_BYTES {
                        self.split()?;
                    }
                    let room = if extension {
                        u64::MAX
                    } else {
                        MAX_FRAME_BYTES - self.in_frame
                    };
                    let n = (rest.len() as u64).min(left).min(room) as usize;
                    if self.collecting_long_name {
                        // The long name is the data minus its NUL padding.
                        let padded = data.div_ceil(512) * 512;
                        let offset = padded - left;
                        let take = data.saturating_sub(offset).min(n as u64) as usize;
                        if let Some(name) = self.long_name.as_mut() {
                            if name.len() < 4096 {
                                name.extend_from_slice(&rest[..take]);
                            }
                        }
                    }
                    self.pass(&rest[..n])?;
                    rest = &rest[n..];
                    let left = left - n as u64;
                    if left == 0 {
                        if self.collecting_long_name {
                            if let Some(name) = self.long_name.as_mut() {
                                while name.last() == Some(&0) {
                                    name.pop();
                                }
                            }
                        }
                        self.after_data(extension);
                    } else {
                        self.state = State::Data {
                            left,
                            data,
                            extension,
                        };
                    }
                }
                State::Trailer => {
                    self.pass(rest)?;
                    rest = &[];
                }
            }
        }
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A tar header's size field: octal, or GNU base-256 (high bit set).
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// The name in a header block: ustar prefix + name, or the name field alone.
fn header_name(h: &[u8; 512]) -> Vec<u8> {
    let field = |r: std::ops::Range<usize>| {
        let f = &h[r];
        let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
        f[..end].to_vec()
    };
    let name = field(0..100);
    let ustar = &h[257..263] == b"ustar\0";
    let prefix = if ustar { field(345..500) } else { Vec::new() };
    if prefix.is_empty() {
        name
    } else {
        let mut p = prefix;
        p.push(b'/');
        p.extend_from_slice(&name);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Recorder {
        data: Vec<u8>,
        cuts: Vec<usize>,
    }
    impl Write for Recorder {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.data.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Framed for Recorder {
        fn boundary(&mut self) -> io::Result<()> {
            if self.cuts.last() != Some(&self.data.len()) && !self.data.is_empty() {
                self.cuts.push(self.data.len());
            }
            Ok(())
        }
    }

    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        };
        add("a", b"hello");
        add(&"x".repeat(150), &[7u8; 1000]);
        add("empty", b"");
        b.into_inner().unwrap()
    }

    #[test]
    fn members_start_frames_and_are_reported() {
        let tar = sample_tar();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let mut t = TarTracker::new(Recorder {
            data: Vec::new(),
            cuts: Vec::new(),
        })
        .on_member(move |n, size| s2.lock().unwrap().push((n.to_string(), size)));
        for chunk in tar.chunks(100) {
            t.write_all(chunk).unwrap();
        }
        let r = t.into_inner();
        assert_eq!(r.data, tar);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("a".to_string(), 5),
                ("x".repeat(150), 1000),
                ("empty".to_string(), 0)
            ]
        );
        // a: 512 + 512; long name: 512 + 512, header 512, data 1024; empty: 512; trailer
        assert_eq!(r.cuts, vec![1024, 1024 + 2560, 1024 + 2560 + 512]);
    }

    #[test]
    fn zstd_frames_decode_and_table_matches() {
        let tar = sample_tar();
        let mut z = TarTracker::new(ZstdFrames::new(Vec::new(), 3, 0).unwrap());
        z.write_all(&tar).unwrap();
        let frames = z.get_ref().frames().len();
        let out = z.into_inner().finish().unwrap();
        let table = parse_seek_table(&out).unwrap();
        assert_eq!(table.len(), frames + 1);
        let total: u64 = table.iter().map(|f| u64::from(f.decompressed)).sum();
        assert_eq!(total, tar.len() as u64);
        assert_eq!(zstd::decode_all(out.as_slice()).unwrap(), tar);
        // Each frame decodes on its own.
        let mut off = 0usize;
        let mut dec = Vec::new();
        for f in &table {
            let part = &out[off..off + f.compressed as usize];
            dec.extend(zstd::decode_all(part).unwrap());
            off += f.compressed as usize;
        }
        assert_eq!(dec, tar);
    }
}
