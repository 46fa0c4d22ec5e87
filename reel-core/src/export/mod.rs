//! Exporting a checkpoint as one archive to a file, a directory, standard output or S3.
//!
//! # The pipeline
//!
//! ```text
//!  CRIU images (staging dir) ─► ArchiveWriter ─► [tee: store .tar] ─► TarTracker ─► zstd ──┐
//!   page images hashed while     (1 MiB reads;      (--keep)         (frame per    (worker │
//!   CRIU writes them; each        member SHA-256s)                    member)     threads) │
//!   image deleted once archived                                                            │
//!                          destination ◄─ SHA-256 of the archive ◄─ [writer thread] ◄──────┘
//!              (temp file written with O_DIRECT + rename, or S3 multipart parts in flight)
//! ```
//!
//! With the container frozen, CRIU writes its images into a staging directory: the tar header
//! of a member needs the member's size, which is only known once CRIU closes the image, and
//! compressing while CRIU writes would take the core CRIU itself needs and lengthen the
//! freeze. The idle core is not wasted: a pre-hash thread ([`crate::archive::PreHasher`])
//! follows each `pages-*.img` as CRIU writes it and computes its SHA-256, so the largest
//! members need no hashing later. reel freezes only when CRIU announces the dump (its
//! pre-dump notification), so CRIU's own start-up does not count as frozen time.
//!
//! Once the container is thawed, everything else streams: each image is read once in large
//! reads, compressed by zstd's worker threads, hashed again as the archive and written by a
//! thread of its own (a file with direct I/O, so the disk works while zstd compresses and the
//! final `fsync` has little left to wait for) or uploaded in parts while the next bytes are
//! compressed; each image is deleted from the staging directory as soon as its member went
//! through. The archive's SHA-256 and every member's are computed on the way.
//!
//! The zstd layout (one frame per member, a seek table at the end) is described in [`frames`].

pub mod dest;
mod error;
pub mod frames;
pub mod local;
pub mod s3;
mod spec;
mod threaded;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use dest::{plan, Destination, Plan};
pub use error::ExportError;
pub use frames::Level;
pub(crate) use spec::open_sink;
pub use spec::{export_stored, ExportSpec};

use crate::archive::{HashingWriter, Manifest, CHECKPOINT_DIR};
use crate::checkpoint::{Dumped, Received};
use crate::store::{Pending, StoredArchive};
use frames::{Framed, Plain, TarTracker, ZstdFrames};
use threaded::Threaded;

/// Where the archive bytes go. Dropped without [`Sink::commit`], a sink leaves nothing that
/// looks complete (the temp file is removed, the multipart upload aborted).
pub trait Sink: Write + Send {
    /// The destination, for people (`/path/x.tar.zst`, `s3://bucket/key`, `-`).
    fn destination(&self) -> String;
    /// Makes the archive visible under its final name, with its `.sha256` beside it; returns
    /// the destination.
    fn commit(&mut self, sha256: &str, size: u64) -> Result<String, ExportError>;
    /// Undoes what was written after a failure; says what was done, or what could not be
    /// undone.
    fn abort(&mut self) -> Result<String, String>;
    /// Whether writes only queue the bytes for a transfer that runs in the background (S3):
    /// then the archive is hashed and handed over on the calling thread; other sinks get a
    /// writer thread, so their blocking writes overlap with compression.
    fn uploads_in_background(&self) -> bool {
        false
    }
    /// The checkpoint committed to the store, when the sink is the store.
    fn stored(&mut self) -> Option<StoredArchive> {
        None
    }
}

/// The phases the progress reporter sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Freezing and dumping the container.
    Dump,
    /// Archiving and compressing (bytes of tar in).
    Archive,
    /// Uploading (bytes acknowledged by the server).
    Upload,
}

/// Receives progress; every method has an empty default.
pub trait Progress: Send + Sync {
    fn start(&self, _phase: Phase, _total: Option<u64>) {}
    fn advance(&self, _phase: Phase, _bytes: u64) {}
    fn finish(&self, _phase: Phase) {}
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {}

/// How to encode.
#[derive(Clone)]
pub struct Encoding {
    pub level: Level,
    /// zstd worker threads (0: the calling thread compresses).
    pub workers: u32,

    pub progress: Arc<dyn Progress>,
}

impl Encoding {
    /// `level` with one worker per core.
    pub fn new(level: Level) -> Encoding {
        Encoding {
            level,
            workers: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            progress: Arc::new(NoProgress),
        }
    }
}

/// A finished export.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// Where it is (`/path/x.tar.zst`, `s3://bucket/key`, `-`).
    pub destination: String,
    /// SHA-256 of the archive as written.
    pub sha256: String,
    /// Bytes written.
    pub archive_bytes: u64,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    pub compression: &'static str,
    /// zstd frames (0 for a plain tar).
    pub frames: usize,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    /// The copy kept in the store (`--keep`).
    #[serde(skip)]
    pub kept: Option<StoredArchive>,
}

enum Encoder<W: Write> {
    Plain(Plain<W>),
    Zstd(ZstdFrames<W>),
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(p) => p.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(p) => p.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

impl<W: Write> Framed for Encoder<W> {
    fn boundary(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(p) => p.boundary(),
            Encoder::Zstd(z) => z.boundary(),
        }
    }
}

impl<W: Write> Encoder<W> {
    fn new(out: W, enc: &Encoding) -> io::Result<Self> {
        Ok(match enc.level.zstd_level() {
            None => Encoder::Plain(Plain(out)),
            Some(l) => Encoder::Zstd(ZstdFrames::new(out, l, enc.workers)?),
        })
    }
    fn frames(&self) -> usize {
        match self {
            Encoder::Plain(_) => 0,
            Encoder::Zstd(z) => z.frames().len(),
        }
    }
    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(p) => Ok(p.0),
            Encoder::Zstd(z) => z.finish(),
        }
    }
    /// The output, without ending the stream (after a failure).
    fn abandon(self) -> W {
        match self {
            Encoder::Plain(p) => p.0,
            Encoder::Zstd(z) => z.abandon(),
        }
    }
}
/// Gathers small writes (tar writes 8 KiB at a time) into large ones, and flushes before a
/// frame boundary.
struct Gather<F: Framed> {
    inner: F,
    buf: Vec<u8>,
}

const GATHER_BYTES: usize = 1 << 20;

impl<F: Framed> Gather<F> {
    fn new(inner: F) -> Self {
        Gather {
            inner,
            buf: Vec::with_capacity(GATHER_BYTES),
        }
    }
    fn spill(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
    fn into_inner(mut self) -> io::Result<F> {
        self.spill()?;
        Ok(self.inner)
    }
    fn into_unflushed(self) -> F {
        self.inner
    }
}

impl<F: Framed> Write for Gather<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > GATHER_BYTES {
            self.spill()?;
        }
        if data.len() >= GATHER_BYTES {
            return self.inner.write(data);
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.spill()?;
        self.inner.flush()
    }
}

impl<F: Framed> Framed for Gather<F> {
    fn boundary(&mut self) -> io::Result<()> {
        self.spill()?;
        self.inner.boundary()
    }
}

/// Counts the tar bytes going in, for the progress bar.
struct Counting<W: Write> {
    inner: W,
    progress: Arc<dyn Progress>,
    pending: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if crate::signals::interrupted() {
            // Not `ErrorKind::Interrupted`: `write_all` would retry that forever.
            return Err(io::Error::other("interrupted by a signal (SIGINT/SIGTERM)"));
        }
        let n = self.inner.write(buf)?;
        self.pending += n as u64;
        if self.pending >= 4 << 20 {
            self.progress.advance(Phase::Archive, self.pending);
            self.pending = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Large buffers (zstd's, S3 parts) come and go on several threads: with glibc's adaptive mmap
/// threshold they end up in arenas that never shrink. A fixed 1 MiB threshold maps and unmaps
/// them, so the peak memory of a process that exports stays what is in use. A process-wide
/// setting: the program calls it once at start, before any worker thread runs (the library
/// never does).
pub fn return_large_buffers() {
    // SAFETY: mallopt only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Writes every byte to the store's pending archive too (`--keep`).
struct Tee<'a, W: Write> {
    inner: W,
    keep: Option<&'a mut Pending>,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(k) = self.keep.as_mut() {
            k.write_all(&buf[..n])?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The end of the chain: the archive's SHA-256 and the sink, on the calling thread or on a
/// writer thread of their own (local files and standard output, whose writes block: the
/// calling thread goes on compressing meanwhile). An S3 upload already runs in the background,
/// and a writer thread's buffers would count against its memory bound.
enum Out {
    Inline(HashingWriter<Box<dyn Sink>>),
    Threaded(Threaded<HashingWriter<Box<dyn Sink>>>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Inline(w) => w.write(buf),
            Out::Threaded(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Inline(w) => w.flush(),
            Out::Threaded(w) => w.flush(),
        }
    }
}

impl Out {
    fn finish(self) -> io::Result<HashingWriter<Box<dyn Sink>>> {
        match self {
            Out::Inline(w) => Ok(w),
            Out::Threaded(w) => w.finish(),
        }
    }
    fn abandon(self) -> Option<HashingWriter<Box<dyn Sink>>> {
        match self {
            Out::Inline(w) => Some(w),
            Out::Threaded(w) => w.abandon(),
        }
    }
}

type Chain = TarTracker<Gather<Encoder<Out>>>;

fn chain(sink: Box<dyn Sink>, enc: &Encoding) -> io::Result<Chain> {
    let hashing = HashingWriter::new(sink);
    let out = if !hashing.get_ref().uploads_in_background() {
        Out::Threaded(Threaded::spawn(hashing)?)
    } else {
        Out::Inline(hashing)
    };
    Ok(TarTracker::new(Gather::new(Encoder::new(out, enc)?)))
}

/// Ends the encoding and commits the sink; on failure, aborts the sink instead.
fn conclude(chain: Chain, failed: Option<crate::Error>, enc: &Encoding) -> crate::Result<Exported> {
    let tar_bytes = chain.bytes();
    enc.progress.finish(Phase::Archive);
    let gather = chain.into_inner();
    if let Some(err) = failed {
        return Err(match gather.into_unflushed().abandon().abandon() {
            Some(hashing) => abort_into(err, hashing.finish().2),
            // The writer thread panicked: the sink was dropped, which removed or aborted it.
            None => err,
        });
    }
    let (frames, hashing) = match gather.into_inner().and_then(|e| {
        let frames = e.frames();
        e.finish().and_then(Out::finish).map(|h| (frames, h))
    }) {
        Ok(x) => x,
        // The sink went down with the encoder: dropping it removed or aborted it.
        Err(e) => return Err(write_err(e)),
    };
    let (sha256, size, mut sink) = hashing.finish();
    match sink.commit(&sha256, size) {
        Ok(destination) => {
            enc.progress.finish(Phase::Upload);
            Ok(Exported {
                destination,
                sha256,
                archive_bytes: size,
                tar_bytes,
                compression: enc.level.as_str(),
                frames,
                manifest: None,
                kept: sink.stored(),
            })
        }
        Err(e) => Err(abort_into(e.into(), sink)),
    }
}

fn write_err(source: io::Error) -> crate::Error {
    ExportError::Write {
        what: "the archive".into(),
        source,
    }
    .into()
}

fn abort_into(err: crate::Error, mut sink: Box<dyn Sink>) -> crate::Error {
    match sink.abort() {
        Ok(note) => ExportError::Aborted {
            error: Box::new(err),
            note,
        },
        Err(note) => ExportError::AbortFailed {
            error: Box::new(err),
            note,
        },
    }
    .into()
}

/// Writes a freshly dumped checkpoint to `sink` (and to the store, with `keep`), deleting each
/// staged image once it is in the archive.
pub fn write_dumped(
    dumped: &Dumped,
    sink: Box<dyn Sink>,
    keep: Option<Pending>,
    enc: &Encoding,
) -> crate::Result<Exported> {
    let stage = dumped.stage_dir().to_owned();
    let total = dir_bytes(&stage) + 16 * 1024;
    write_archive(sink, keep, enc, total, Some(stage), |out| {
        dumped.write_archive(out).map(|(m, _)| m)
    })
}

/// Writes an archive a runtime produced (`crio`, `k8s-api`) to `sink` (and to the store, with
/// `keep`): each member copied as received (and hashed on the way), images first, then reel's
/// manifest, through the same chain as a dumped checkpoint.
pub fn write_imported(
    received: &Received,
    sink: Box<dyn Sink>,
    keep: Option<Pending>,
    enc: &Encoding,
) -> crate::Result<Exported> {
    let total = received.archive_bytes() + 16 * 1024;
    write_archive(sink, keep, enc, total, None, |out| {
        received.write_archive(out)
    })
}

/// The chain shared by every checkpoint: `write` streams the archive into it; with `stage`,
/// each staged file is removed once its member went through.
fn write_archive(
    sink: Box<dyn Sink>,
    mut keep: Option<Pending>,
    enc: &Encoding,
    total: u64,
    stage: Option<PathBuf>,
    write: impl FnOnce(&mut dyn Write) -> crate::Result<Manifest>,
) -> crate::Result<Exported> {
    enc.progress.start(Phase::Archive, Some(total));
    let mut tracker = chain(sink, enc).map_err(|e| ExportError::Write {
        what: "zstd".into(),
        source: e,
    })?;
    if let Some(stage) = stage {
        tracker = tracker.on_member(move |name, _| remove_staged(&stage, name));
    }
    let mut counting = Counting {
        inner: Tee {
            inner: tracker,
            keep: keep.as_mut(),
        },
        progress: enc.progress.clone(),
        pending: 0,
    };
    let written = write(&mut counting);
    let manifest = written.as_ref().ok().cloned();
    let Counting {
        inner: Tee { inner: tracker, .. },
        ..
    } = counting;
    let mut exported = conclude(tracker, written.err(), enc)?;
    exported.manifest = manifest;
    if let Some(p) = keep {
        exported.kept = Some(p.commit()?);
    }
    Ok(exported)
}

/// Re-encodes the stored archive at `path` (a plain tar) into `sink`.
pub fn write_stored(path: &Path, sink: Box<dyn Sink>, enc: &Encoding) -> crate::Result<Exported> {
    let mut file = fs::File::open(path).map_err(|e| ExportError::io("opening", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| ExportError::io("inspecting", path, e))?
        .len();
    enc.progress.start(Phase::Archive, Some(len));
    let mut counting = Counting {
        inner: chain(sink, enc).map_err(|e| ExportError::Write {
            what: "zstd".into(),
            source: e,
        })?,
        progress: enc.progress.clone(),
        pending: 0,
    };
    let mut buf = vec![0u8; 1 << 20];
    let copied: Result<(), crate::Error> = (|| {
        loop {
            let n = match io::Read::read(&mut file, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ExportError::io("reading", path, e).into()),
            };
            counting.write_all(&buf[..n]).map_err(write_err)?;
        }
        Ok(())
    })();
    conclude(counting.inner, copied.err(), enc)
}

/// Removes a staged file once its member is in the archive (it is no longer needed, and the
/// space goes back before the next image is read).
fn remove_staged(stage: &Path, member: &str) {
    let rel = match member.strip_prefix(CHECKPOINT_DIR) {
        Some("") => return,
        Some(img) => Path::new("checkpoint").join(img),
        None => PathBuf::from(member),
    };
    if rel.components().count() > 2 || member.contains("..") {
        return;
    }
    let p = stage.join(rel);
    match fs::remove_file(&p) {
        Ok(()) => tracing::trace!(path = %p.display(), "staged file consumed"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::debug!(path = %p.display(), error = %e, "cannot remove staged file"),
    }
}

/// Total size of the regular files under `dir` (two levels).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += dir_bytes(&e.path());
        } else {
            total += m.len();
        }
    }
    total
}
