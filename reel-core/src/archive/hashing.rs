//! Digests while data streams: a reader and a writer that hash (and count) what passes
//! through, and the hashers of archive members.
//!
//! Every member's SHA-256 is in the manifest (the digest every tool can check); since this
//! schema its BLAKE3 is there too, which reel checks when it reads a member (it hashes at
//! about four times SHA-256's speed, so reading a member verified costs little more than
//! reading it). `reel verify` checks both.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Lower-case hex BLAKE3 of `data`.
pub fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// The running digests of a stream: SHA-256, BLAKE3, or both.
#[derive(Debug, Clone)]
pub struct Digests {
    sha256: Option<Sha256>,
    blake3: Option<blake3::Hasher>,
}

/// What [`Digests`] computed, lower-case hex.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestValues {
    pub sha256: Option<String>,
    pub blake3: Option<String>,
}

impl DigestValues {
    /// The value of kind `kind`, when it was computed.
    pub fn get(&self, kind: DigestKind) -> Option<&str> {
        match kind {
            DigestKind::Sha256 => self.sha256.as_deref(),
            DigestKind::Blake3 => self.blake3.as_deref(),
        }
    }
}

impl Digests {
    /// SHA-256 only (a whole archive, for its `.sha256` sidecar).
    pub fn sha256() -> Self {
        Self::only(DigestKind::Sha256)
    }

    /// SHA-256 and BLAKE3 (an archive member, for the manifest).
    pub fn member() -> Self {
        Digests {
            sha256: Some(Sha256::new()),
            blake3: Some(blake3::Hasher::new()),
        }
    }

    /// The one digest of kind `kind` (a member checked against the manifest).
    pub fn only(kind: DigestKind) -> Self {
        Digests {
            sha256: (kind == DigestKind::Sha256).then(Sha256::new),
            blake3: (kind == DigestKind::Blake3).then(blake3::Hasher::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = self.sha256.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.blake3.as_mut() {
            h.update(data);
        }
    }

    pub fn finish(self) -> DigestValues {
        DigestValues {
            sha256: self.sha256.map(|h| hex::encode(h.finalize())),
            blake3: self.blake3.map(|h| h.finalize().to_hex().to_string()),
        }
    }
}

/// Which recorded digest a reader checks members against: BLAKE3 when the manifest records
/// it for every member, else SHA-256 (archives of reel before BLAKE3 was recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    Sha256,
    Blake3,
}

impl DigestKind {
    /// A fresh hasher of this kind.
    pub fn hasher(self) -> Digests {
        Digests::only(self)
    }

    /// The name shown in messages (`sha256`, `blake3`).
    pub fn name(self) -> &'static str {
        match self {
            DigestKind::Sha256 => "sha256",
            DigestKind::Blake3 => "blake3",
        }
    }
}

/// A [`Read`] adapter that hashes and counts every byte read through it.
///
/// It also remembers whether the inner reader failed, so a caller that hands it to code mixing
/// reads and writes (like `tar::Builder::append`) can tell which side an error came from.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Digests,
    bytes: u64,
    failed: bool,
    /// Bytes at the start already in `hasher` (see [`HashingReader::resume`]).
    skip: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`, with SHA-256 only.
    pub fn new(inner: R) -> Self {
        Self::with(inner, Digests::sha256())
    }

    /// Wraps `inner`, with the digests `hasher` computes.
    pub fn with(inner: R, hasher: Digests) -> Self {
        HashingReader {
            inner,
            hasher,
            bytes: 0,
            failed: false,
            skip: 0,
        }
    }

    /// Wraps `inner` whose first `skip` bytes are already in `hasher` (hashed earlier): they
    /// are read and counted, and only what follows is hashed.
    pub fn resume(inner: R, hasher: Digests, skip: u64) -> Self {
        HashingReader {
            hasher,
            skip,
            ..HashingReader::new(inner)
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether a read from the inner reader returned an error.
    pub fn read_failed(&self) -> bool {
        self.failed
    }

    /// The hex SHA-256 of everything read (empty when it was not computed), the byte count,
    /// and the inner reader.
    pub fn finish(self) -> (String, u64, R) {
        let (d, bytes, inner) = self.finish_all();
        (d.sha256.unwrap_or_default(), bytes, inner)
    }

    /// Every digest computed, the byte count, and the inner reader.
    pub fn finish_all(self) -> (DigestValues, u64, R) {
        (self.hasher.finish(), self.bytes, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                let read = buf.get(..n).unwrap_or_default();
                // The part of this read past the bytes hashed earlier.
                let from = usize::try_from(self.skip.saturating_sub(self.bytes))
                    .unwrap_or(usize::MAX)
                    .min(n);
                self.hasher.update(read.get(from..).unwrap_or_default());
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}

/// A [`Write`] adapter that hashes and counts every byte the inner writer accepted.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Digests,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`, with SHA-256 only.
    pub fn new(inner: W) -> Self {
        Self::with(inner, Digests::sha256())
    }

    /// Wraps `inner`, with the digests `hasher` computes.
    pub fn with(inner: W, hasher: Digests) -> Self {
        HashingWriter {
            inner,
            hasher,
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, mutably. Bytes written to it directly are not hashed.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The hex SHA-256 of everything written (empty when it was not computed), the byte
    /// count, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        let (d, bytes, inner) = self.finish_all();
        (d.sha256.unwrap_or_default(), bytes, inner)
    }

    /// Every digest computed, the byte count, and the inner writer.
    pub fn finish_all(self) -> (DigestValues, u64, W) {
        (self.hasher.finish(), self.bytes, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
