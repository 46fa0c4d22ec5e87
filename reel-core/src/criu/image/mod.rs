//! CRIU's image files: one reader (and writer) for every image type the pinned CRIU knows.
//!
//! An image is, after an optional first word ([`IMG_COMMON_MAGIC`], or [`IMG_SERVICE_MAGIC`]
//! for `stats-*` and `irmap-cache`; the inventory has none), the image's own magic, then
//! entries: a little-endian `u32` length and a protobuf message of that length. Some entries
//! carry a payload right after them, whose length the message gives:
//!
//! | image | entries | payload after an entry |
//! |---|---|---|
//! | `pipes-data.img`, `fifo-data.img` | `pipe_data_entry` | `bytes` |
//! | `sk-queues.img` | `sk_packet_entry` | `length` |
//! | `tcp-stream-*.img` | `tcp_stream_entry` | `inq_len` + `outq_len` (in, then out queue) |
//! | `bpfmap-data.img` | `bpfmap_data_entry` | `keys_bytes` + `values_bytes` |
//! | `ipcns-shm-*.img` | `ipc_shm_entry` | `size` rounded up to 4, unless `in_pagemaps` |
//! | `ipcns-sem-*.img` | `ipc_sem_entry` | `nsems` `u16`s, rounded up to 8 bytes |
//! | `ipcns-msg-*.img` | `ipc_msg_entry`, then `qnum` × `ipc_msg` | each `ipc_msg`: `msize` rounded up to 8 |
//! | `ghost-file-*.img` | `ghost_file_entry`, then with `chunks` `ghost_chunk_entry`s | the file's contents to the end of the image; with `chunks`, `len` bytes after each chunk |
//! | `pagemap-*.img` | `pagemap_head`, then `pagemap_entry`s | none |
//!
//! Raw images (`pages-*.img`, `tmpfs-*.tar.gz.img`, `ifaddr-*.img`, ...) have no framing at
//! all: [`ImageKind::is_raw`] tells them by their name, and they are read as plain bytes.
//!
//! [`ImageReader`] identifies an image by its magic ([`ImageKind`]; the name only tells
//! apart the kinds that share a magic) and yields its entries one at a time ([`Entry`]): the
//! message's bytes, its [`MessageType`], typed decoding, and the payload as a reader.
//! Images come from containers that may be compromised: an entry longer than
//! [`Limits::max_entry`] is refused before anything is allocated for it, buffers only grow
//! with bytes actually read, payloads are streamed and never buffered, and truncated or
//! garbage input is an [`ImageError`] naming the image, the offset and what was expected,
//! never a panic. [`ImageReader::from_bytes`] reads an image already in memory.
//!
//! [`ImageWriter`] writes images the same way (the image fix-ups of a checkpoint use it).

mod kind;
mod message;
pub mod vma;

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

pub use kind::{Header, ImageKind, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};
pub use message::{AnyMessage, ImageMessage, MessageType};

use criu_sys::proto;

/// The default cap on one entry's message (payloads are streamed and have no cap).
pub const DEFAULT_MAX_ENTRY: u32 = 16 << 20;
/// The default cap on the number of entries of one image.
pub const DEFAULT_MAX_ENTRIES: u64 = 1 << 22;

/// How much a reader accepts from one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest entry message, in bytes.
    pub max_entry: u32,
    /// The most entries.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entry: DEFAULT_MAX_ENTRY,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Why an image cannot be read or written. Every variant names the image (its file or
/// archive member name) and the offset in it where the problem is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Reading or writing failed.
    #[error("CRIU image {name}: I/O error at offset {offset}: {source}")]
    Io {
        /// The image.
        name: String,
        /// Where.
        offset: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The image ends in the middle of something.
    #[error(
        "CRIU image {name} is truncated at offset {offset}: {wanted} {what} expected, {got} found"
    )]
    Truncated {
        /// The image.
        name: String,
        /// Where the incomplete part starts.
        offset: u64,
        /// What was being read, with its unit ("bytes of entry", "ipc_msg entries", ...).
        what: &'static str,
        /// How many were expected.
        wanted: u64,
        /// How many there were.
        got: u64,
    },
    /// The magic is none the pinned CRIU knows.
    #[error(
        "{name} is not a CRIU {} image: unknown magic {magic:#010x} at offset {offset}",
        criu_sys::CRIU_VERSION
    )]
    UnknownMagic {
        /// The image.
        name: String,
        /// Where the magic is.
        offset: u64,
        /// The magic found.
        magic: u32,
    },
    /// The image is not of the kind the caller needs.
    #[error("CRIU image {name} is a {found} image, not {wanted}")]
    WrongKind {
        /// The image.
        name: String,
        /// Its kind.
        found: ImageKind,
        /// The kind wanted.
        wanted: ImageKind,
    },
    /// A raw image has no entries to read.
    #[error("CRIU image {name} is raw ({kind}): it has no entries, read its bytes as they are")]
    Raw {
        /// The image.
        name: String,
        /// Its kind.
        kind: ImageKind,
    },
    /// Something announced is longer than the limit.
    #[error("CRIU image {name}: the {what} at offset {offset} announces {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The image.
        name: String,
        /// Where.
        offset: u64,
        /// What (entry, payload).
        what: &'static str,
        /// The length announced.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// More entries than [`Limits::max_entries`].
    #[error("CRIU image {name} has more than {max} entries (at offset {offset})")]
    TooManyEntries {
        /// The image.
        name: String,
        /// Where the entry over the limit starts.
        offset: u64,
        /// The limit.
        max: u64,
    },
    /// An entry is not the message it must be.
    #[error("CRIU image {name}: the entry at offset {offset} is not a valid {message}: {source}")]
    Decode {
        /// The image.
        name: String,
        /// Where the entry starts.
        offset: u64,
        /// The message it must be (its name in CRIU's `.proto` files).
        message: &'static str,
        /// Why it does not decode.
        #[source]
        source: prost::DecodeError,
    },
    /// The caller asked for another message than the entry holds.
    #[error("CRIU image {name}: the entry at offset {offset} is a {found}, not a {wanted}")]
    WrongMessage {
        /// The image.
        name: String,
        /// Where the entry starts.
        offset: u64,
        /// The message the entry holds.
        found: &'static str,
        /// The message asked for.
        wanted: &'static str,
    },
}

/// Bytes of an entry's payload not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Bytes(u64),
    /// To the end of the image.
    ToEnd,
}

/// Reads the entries of one CRIU image (see the module's documentation).
#[derive(Debug)]
pub struct ImageReader<R> {
    inner: R,
    name: String,
    kind: ImageKind,
    limits: Limits,
    /// Bytes consumed from the start of the image.
    offset: u64,
    /// The current entry's message.
    buf: Vec<u8>,
    /// Where the current entry starts, and its type.
    current: (u64, MessageType),
    /// The message of the next entry.
    next: MessageType,
    /// `ipc_msg` entries left in the current message queue.
    queue_left: u32,
    entries: u64,
    pending: Pending,
    ended: bool,
}

impl ImageReader<BufReader<File>> {
    /// Opens the image at `path` (named by its path in errors).
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| ImageError::Io {
            name: name.clone(),
            offset: 0,
            source,
        })?;
        ImageReader::new(BufReader::new(file), name)
    }
}

impl<'a> ImageReader<&'a [u8]> {
    /// Reads an image already in memory (an archive member, a fuzzer's input).
    pub fn from_bytes(bytes: &'a [u8], name: impl Into<String>) -> Result<Self, ImageError> {
        ImageReader::new(bytes, name)
    }
}

impl<R: Read> ImageReader<R> {
    /// Reads the image's header from `inner` with the default [`Limits`]. `name` (a file
    /// or archive member name) names it in errors and tells raw images and the kinds that
    /// share a magic apart.
    pub fn new(inner: R, name: impl Into<String>) -> Result<Self, ImageError> {
        ImageReader::with_limits(inner, name, Limits::default())
    }

    /// [`ImageReader::new`] with other limits.
    pub fn with_limits(
        inner: R,
        name: impl Into<String>,
        limits: Limits,
    ) -> Result<Self, ImageError> {
        let name = name.into();
        if let Some(kind) = ImageKind::from_file_name(&name).filter(|k| k.is_raw()) {
            return Err(ImageError::Raw { name, kind });
        }
        let mut r = ImageReader {
            inner,
            name,
            kind: ImageKind::Inventory,
            limits,
            offset: 0,
            buf: Vec::new(),
            current: (0, MessageType::InventoryEntry),
            next: MessageType::InventoryEntry,
            queue_left: 0,
            entries: 0,
            pending: Pending::Bytes(0),
            ended: false,
        };
        let mut magic = r.word("bytes of magic")?;
        if magic == IMG_COMMON_MAGIC || magic == IMG_SERVICE_MAGIC {
            magic = r.word("bytes of image magic")?;
        }
        r.kind = ImageKind::identify(&r.name, magic).ok_or_else(|| ImageError::UnknownMagic {
            name: r.name.clone(),
            offset: r.offset - 4,
            magic,
        })?;
        // Only raw kinds have no first message, and they have no magic.
        r.next = r
            .kind
            .first_message()
            .unwrap_or(MessageType::InventoryEntry);
        Ok(r)
    }

    /// The image's kind.
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// Fails unless the image is of `kind`.
    pub fn expect_kind(&self, kind: ImageKind) -> Result<(), ImageError> {
        if self.kind == kind {
            return Ok(());
        }
        Err(ImageError::WrongKind {
            name: self.name.clone(),
            found: self.kind,
            wanted: kind,
        })
    }

    /// The name given to the reader.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entry, after skipping what is left of the previous one's payload; `None` at
    /// the end of the image.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_, R>>, ImageError> {
        self.skip_payload()?;
        if self.ended {
            return Ok(None);
        }
        let at = self.offset;
        let mut len = [0u8; 4];
        let got = self.read_full(&mut len)?;
        if got == 0 {
            self.ended = true;
            if self.queue_left > 0 {
                return Err(self.truncated(
                    at,
                    "more ipc_msg entries",
                    u64::from(self.queue_left),
                    0,
                ));
            }
            return Ok(None);
        }
        if got < len.len() {
            return Err(self.truncated(at, "bytes of entry length", 4, got as u64));
        }
        let len = u32::from_le_bytes(len);
        if len > self.limits.max_entry {
            return Err(ImageError::TooLarge {
                name: self.name.clone(),
                offset: at,
                what: "entry",
                len: u64::from(len),
                max: u64::from(self.limits.max_entry),
            });
        }
        if self.entries >= self.limits.max_entries {
            return Err(ImageError::TooManyEntries {
                name: self.name.clone(),
                offset: at,
                max: self.limits.max_entries,
            });
        }
        self.entries += 1;
        // Grows with the bytes actually there, not with the length announced.
        self.buf.clear();
        let got = (&mut self.inner)
            .take(u64::from(len))
            .read_to_end(&mut self.buf)
            .map_err(|source| self.io(source))?;
        self.offset += got as u64;
        if got < len as usize {
            return Err(self.truncated(at + 4, "bytes of entry", u64::from(len), got as u64));
        }
        let ty = self.next;
        self.current = (at, ty);
        self.pending = self.framing(ty, at)?;
        Ok(Some(Entry { reader: self }))
    }

    /// Every remaining entry, decoded as `M` (payloads are skipped). Fails on the first
    /// entry that is not an `M`.
    pub fn read_entries<M: ImageMessage>(&mut self) -> Result<Vec<M>, ImageError> {
        let mut out = Vec::new();
        while let Some(e) = self.next_entry()? {
            out.push(e.decode()?);
        }
        Ok(out)
    }

    /// What follows the entry just read (its payload), and the message of the next entry.
    fn framing(&mut self, ty: MessageType, at: u64) -> Result<Pending, ImageError> {
        use MessageType as M;
        let round = |n: u64, to: u64| n.div_ceil(to) * to;
        let bytes = match ty {
            M::PagemapHead => {
                self.next = M::PagemapEntry;
                0
            }
            M::GhostFileEntry => {
                if !self.decode_at::<proto::GhostFileEntry>(at)?.chunks() {
                    return Ok(Pending::ToEnd);
                }
                self.next = M::GhostChunkEntry;
                0
            }
            M::GhostChunkEntry => self.decode_at::<proto::GhostChunkEntry>(at)?.len,
            M::TcpStreamEntry => {
                let t = self.decode_at::<proto::TcpStreamEntry>(at)?;
                u64::from(t.inq_len) + u64::from(t.outq_len)
            }
            M::SkPacketEntry => u64::from(self.decode_at::<proto::SkPacketEntry>(at)?.length),
            M::PipeDataEntry => u64::from(self.decode_at::<proto::PipeDataEntry>(at)?.bytes),
            M::BpfmapDataEntry => {
                let b = self.decode_at::<proto::BpfmapDataEntry>(at)?;
                u64::from(b.keys_bytes) + u64::from(b.values_bytes)
            }
            M::IpcShmEntry => {
                let s = self.decode_at::<proto::IpcShmEntry>(at)?;
                if s.in_pagemaps() {
                    0
                } else if s.size > u64::MAX - 3 {
                    return Err(self.too_large(at, "payload", s.size));
                } else {
                    round(s.size, 4)
                }
            }
            M::IpcSemEntry => round(
                u64::from(self.decode_at::<proto::IpcSemEntry>(at)?.nsems) * 2,
                8,
            ),
            M::IpcMsgEntry => {
                self.queue_left = self.decode_at::<proto::IpcMsgEntry>(at)?.qnum;
                if self.queue_left > 0 {
                    self.next = M::IpcMsg;
                }
                0
            }
            M::IpcMsg => {
                let m = self.decode_at::<proto::IpcMsg>(at)?;
                self.queue_left = self.queue_left.saturating_sub(1);
                if self.queue_left == 0 {
                    self.next = M::IpcMsgEntry;
                }
                round(u64::from(m.msize), 8)
            }
            _ => 0,
        };
        Ok(Pending::Bytes(bytes))
    }

    /// Decodes the current entry as `M`, checking it is one.
    fn decode_at<M: ImageMessage>(&self, at: u64) -> Result<M, ImageError> {
        let found = self.current.1;
        if found != M::TYPE {
            return Err(ImageError::WrongMessage {
                name: self.name.clone(),
                offset: at,
                found: found.proto_name(),
                wanted: M::TYPE.proto_name(),
            });
        }
        M::decode(self.buf.as_slice()).map_err(|source| ImageError::Decode {
            name: self.name.clone(),
            offset: at,
            message: found.proto_name(),
            source,
        })
    }

    fn skip_payload(&mut self) -> Result<(), ImageError> {
        let at = self.offset;
        let want = match self.pending {
            Pending::Bytes(0) => return Ok(()),
            Pending::Bytes(n) => n,
            Pending::ToEnd => u64::MAX,
        };
        let got = io::copy(&mut Payload { reader: self }, &mut io::sink());
        match got {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let got = self.offset - at;
                Err(self.truncated(at, "bytes of payload", want, got))
            }
            Err(source) => Err(self.io(source)),
        }
    }

    /// Reads up to `buf.len()` bytes, fewer only at the end of the input.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, ImageError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.io(source)),
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    fn word(&mut self, what: &'static str) -> Result<u32, ImageError> {
        let at = self.offset;
        let mut w = [0u8; 4];
        let got = self.read_full(&mut w)?;
        if got < w.len() {
            return Err(self.truncated(at, what, 4, got as u64));
        }
        Ok(u32::from_le_bytes(w))
    }

    fn truncated(&self, offset: u64, what: &'static str, wanted: u64, got: u64) -> ImageError {
        ImageError::Truncated {
            name: self.name.clone(),
            offset,
            what,
            wanted,
            got,
        }
    }

    fn too_large(&self, offset: u64, what: &'static str, len: u64) -> ImageError {
        ImageError::TooLarge {
            name: self.name.clone(),
            offset,
            what,
            len,
            max: u64::MAX,
        }
    }

    fn io(&self, source: io::Error) -> ImageError {
        ImageError::Io {
            name: self.name.clone(),
            offset: self.offset,
            source,
        }
    }
}

/// One entry of an image, borrowed from its [`ImageReader`].
#[derive(Debug)]
pub struct Entry<'a, R> {
    reader: &'a mut ImageReader<R>,
}

impl<R: Read> Entry<'_, R> {
    /// The message the entry holds.
    pub fn message_type(&self) -> MessageType {
        self.reader.current.1
    }

    /// Where the entry (its length word) starts in the image.
    pub fn offset(&self) -> u64 {
        self.reader.current.0
    }

    /// The encoded message.
    pub fn bytes(&self) -> &[u8] {
        &self.reader.buf
    }

    /// Decodes the message as `M`; fails when the entry holds another message.
    pub fn decode<M: ImageMessage>(&self) -> Result<M, ImageError> {
        self.reader.decode_at(self.offset())
    }

    /// Decodes the message as whatever it is.
    pub fn decode_any(&self) -> Result<AnyMessage, ImageError> {
        let ty = self.message_type();
        ty.decode(self.bytes())
            .map_err(|source| ImageError::Decode {
                name: self.reader.name.clone(),
                offset: self.offset(),
                message: ty.proto_name(),
                source,
            })
    }

    /// The length of the payload after the entry, not read yet: `Some(0)` when it has none,
    /// `None` when it runs to the end of the image (a ghost file's contents).
    pub fn payload_len(&self) -> Option<u64> {
        match self.reader.pending {
            Pending::Bytes(n) => Some(n),
            Pending::ToEnd => None,
        }
    }

    /// The payload as a reader; a payload cut short fails with `UnexpectedEof`. What is not
    /// read is skipped by the next [`ImageReader::next_entry`].
    pub fn payload(&mut self) -> Payload<'_, R> {
        Payload {
            reader: self.reader,
        }
    }

    /// The whole payload, when it is at most `max` bytes.
    pub fn read_payload(&mut self, max: u64) -> Result<Vec<u8>, ImageError> {
        let at = self.reader.offset;
        if let Some(len) = self.payload_len().filter(|&len| len > max) {
            return Err(ImageError::TooLarge {
                name: self.reader.name.clone(),
                offset: at,
                what: "payload",
                len,
                max,
            });
        }
        let mut out = Vec::new();
        // One byte more than allowed, to tell a payload to the end that is too long.
        let got = self
            .payload()
            .take(max.saturating_add(1))
            .read_to_end(&mut out);
        match got {
            Ok(n) if n as u64 > max => Err(ImageError::TooLarge {
                name: self.reader.name.clone(),
                offset: at,
                what: "payload",
                len: n as u64,
                max,
            }),
            Ok(_) => Ok(out),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.reader.truncated(
                at,
                "bytes of payload",
                out.len() as u64 + self.payload_len().unwrap_or(0),
                out.len() as u64,
            )),
            Err(source) => Err(self.reader.io(source)),
        }
    }
}

/// The payload of an entry (see [`Entry::payload`]).
#[derive(Debug)]
pub struct Payload<'a, R> {
    reader: &'a mut ImageReader<R>,
}

impl<R: Read> Read for Payload<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        let max = match r.pending {
            Pending::Bytes(0) => return Ok(0),
            Pending::Bytes(n) => buf.len().min(usize::try_from(n).unwrap_or(usize::MAX)),
            Pending::ToEnd => buf.len(),
        };
        let n = r.inner.read(&mut buf[..max])?;
        r.offset += n as u64;
        match &mut r.pending {
            Pending::Bytes(left) if n == 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: {left} bytes of payload missing", r.name),
                ))
            }
            Pending::Bytes(left) => *left -= n as u64,
            Pending::ToEnd if n == 0 => {
                r.pending = Pending::Bytes(0);
                r.ended = true;
            }
            Pending::ToEnd => {}
        }
        Ok(n)
    }
}

/// Writes a CRIU image: the header of its kind, then entries and payloads in the order the
/// caller gives them.
#[derive(Debug)]
pub struct ImageWriter<W> {
    inner: W,
    name: String,
    offset: u64,
}

impl<W: Write> ImageWriter<W> {
    /// Writes the header of a `kind` image (`name` names it in errors).
    pub fn new(inner: W, kind: ImageKind, name: impl Into<String>) -> Result<Self, ImageError> {
        let name = name.into();
        let Some(magic) = kind.magic() else {
            return Err(ImageError::Raw { name, kind });
        };
        let mut w = ImageWriter {
            inner,
            name,
            offset: 0,
        };
        match kind.header() {
            Header::Common => w.put(&IMG_COMMON_MAGIC.to_le_bytes())?,
            Header::Service => w.put(&IMG_SERVICE_MAGIC.to_le_bytes())?,
            Header::None => {}
        }
        w.put(&magic.to_le_bytes())?;
        Ok(w)
    }

    /// Writes one entry.
    pub fn write_entry<M: ImageMessage>(&mut self, message: &M) -> Result<(), ImageError> {
        self.write_raw_entry(&message.encode_to_vec())
    }

    /// Writes one entry whose message is already encoded (kept byte for byte).
    pub fn write_raw_entry(&mut self, message: &[u8]) -> Result<(), ImageError> {
        let len = u32::try_from(message.len()).map_err(|_| ImageError::TooLarge {
            name: self.name.clone(),
            offset: self.offset,
            what: "entry",
            len: message.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        self.put(&len.to_le_bytes())?;
        self.put(message)
    }

    /// Writes the payload of the entry just written.
    pub fn write_payload(&mut self, payload: &[u8]) -> Result<(), ImageError> {
        self.put(payload)
    }

    /// Flushes and returns the destination.
    pub fn finish(mut self) -> Result<W, ImageError> {
        let offset = self.offset;
        self.inner.flush().map_err(|source| ImageError::Io {
            name: self.name.clone(),
            offset,
            source,
        })?;
        Ok(self.inner)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.inner
            .write_all(bytes)
            .map_err(|source| ImageError::Io {
                name: self.name.clone(),
                offset: self.offset,
                source,
            })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
