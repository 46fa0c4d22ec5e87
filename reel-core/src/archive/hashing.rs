//! SHA-256 while data streams: a reader and a writer that hash (and count) what passes through.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A [`Read`] adapter that hashes and counts every byte read through it.
///
/// It also remembers whether the inner reader failed, so a caller that hands it to code mixing
/// reads and writes (like `tar::Builder::append`) can tell which side an error came from.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    failed: bool,
    /// Bytes at the start already in `hasher` (see [`HashingReader::resume`]).
    skip: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            failed: false,
            skip: 0,
        }
    }

    /// Wraps `inner` whose first `skip` bytes are already in `hasher` (hashed earlier): they
    /// are read and counted, and only what follows is hashed.
    pub fn resume(inner: R, hasher: Sha256, skip: u64) -> Self {
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

    /// The hex SHA-256 of everything read, the byte count, and the inner reader.
    pub fn finish(self) -> (String, u64, R) {
        (hex::encode(self.hasher.finalize()), self.bytes, self.inner)
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
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
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

    /// The hex SHA-256 of everything written, the byte count, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (hex::encode(self.hasher.finalize()), self.bytes, self.inner)
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
