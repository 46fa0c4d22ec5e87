//! [`Threaded`]: hands the encoder's output to a thread of its own, which hashes and writes it.
//!
//! The calling thread reads the images, hashes each member and feeds zstd; the archive's
//! SHA-256 and the writes (direct-I/O blocks that wait for the disk) would otherwise take turns
//! with that work. A few recycled buffers go back and forth, so memory stays bounded and no
//! buffer is allocated (and faulted in) twice.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

/// Bytes per hand-over.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks queued for the writer (one more is being written, one more filled).
const DEPTH: usize = 1;

/// A [`Write`] whose bytes are written to `W` on another thread, in order.
///
/// [`finish`](Self::finish) returns `W` once everything is written. A failure of the writer
/// thread is reported by the next write (or by `finish`), and `W` can still be recovered with
/// [`abandon`](Self::abandon) to clean up.
pub struct Threaded<W: Write + Send + 'static> {
    tx: Option<SyncSender<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    handle: Option<JoinHandle<(W, io::Result<()>)>>,
    /// `W` after the thread ended early.
    ended: Option<W>,
}

impl<W: Write + Send + 'static> Threaded<W> {
    /// Starts the writer thread.
    pub fn spawn(inner: W) -> io::Result<Self> {
        let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
        let (back, recycled) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let handle = thread::Builder::new()
            .name("reel-archive-out".into())
            .spawn(move || {
                let mut inner = inner;
                for mut chunk in rx {
                    if let Err(e) = inner.write_all(&chunk) {
                        // Dropping `rx` makes the next send fail.
                        return (inner, Err(e));
                    }
                    chunk.clear();
                    let _ = back.try_send(chunk);
                }
                let flushed = inner.flush();
                (inner, flushed)
            })?;
        Ok(Threaded {
            tx: Some(tx),
            recycled,
            buf: Vec::with_capacity(CHUNK_BYTES),
            handle: Some(handle),
            ended: None,
        })
    }

    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES));
        let full = std::mem::replace(&mut self.buf, next);
        let sent = match &self.tx {
            Some(tx) => tx.send(full).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread ended: its error says why.
        match self.join() {
            Err(e) => Err(e),
            Ok(()) => Err(io::Error::other("the archive writer stopped")),
        }
    }

    /// Waits for the thread; keeps `W` in `ended`.
    fn join(&mut self) -> io::Result<()> {
        self.tx = None;
        let Some(handle) = self.handle.take() else {
            return Err(io::Error::other("the archive writer stopped"));
        };
        match handle.join() {
            Ok((inner, result)) => {
                self.ended = Some(inner);
                result
            }
            Err(_) => Err(io::Error::other("the archive writer thread panicked")),
        }
    }

    /// Writes what is left, waits for the thread and returns `W`.
    pub fn finish(mut self) -> io::Result<W> {
        self.hand_over()?;
        self.join()?;
        self.ended
            .take()
            .ok_or_else(|| io::Error::other("the archive writer stopped"))
    }

    /// Stops without writing what is buffered; `W` for cleaning up (`None` if the thread
    /// panicked, in which case `W` was dropped).
    pub fn abandon(mut self) -> Option<W> {
        self.buf.clear();
        let _ = self.join();
        self.ended.take()
    }
}

impl<W: Write + Send + 'static> Write for Threaded<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_none() {
            return Err(io::Error::other("the archive writer stopped"));
        }
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.hand_over()?;
        }
        Ok(n)
    }
    /// Hands over what is buffered (the thread writes it in order).
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl<W: Write + Send + 'static> Drop for Threaded<W> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order() {
        let mut t = Threaded::spawn(Vec::new()).unwrap();
        let mut expected = Vec::new();
        for i in 0..5000u32 {
            let piece = vec![(i % 251) as u8; (i as usize * 37) % 9000];
            t.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        assert_eq!(t.finish().unwrap(), expected);
    }

    struct Failing(usize);
    impl Write for Failing {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.0 < b.len() {
                return Err(io::Error::other("disk full"));
            }
            self.0 -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_is_reported_and_recoverable() {
        let mut t = Threaded::spawn(Failing(3 << 20)).unwrap();
        let chunk = vec![7u8; 1 << 20];
        let mut err = None;
        for _ in 0..16 {
            if let Err(e) = t.write_all(&chunk) {
                err = Some(e);
                break;
            }
        }
        let err = err
            .or_else(|| t.flush().err())
            .expect("the failure must surface");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(t.abandon().is_some());
    }
}
