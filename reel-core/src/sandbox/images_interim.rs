//! INTERIM: the little of CRIU's images a sandbox restore must read before CRIU runs (the inet
//! sockets and regular files of `files.img`, runc's `descriptors.json`). A minimal reader of CRIU's image
//! framing (magics, then `u32` size + protobuf message per entry), bounded and panic-free.
//!
//! To be replaced at merge by the project's one CRIU image reader (`reel_core::criu::image`),
//! which is being written in parallel: only [`inet_sockets`], [`regular_files`] and
//! [`descriptors`] are used by
//! the rest of the sandbox module.

use std::net::IpAddr;
use std::path::Path;

use protobuf::Message;

use super::SandboxError;

/// The first magic of every CRIU image but the service ones.
const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// `files.img`.
const FILES_MAGIC: u32 = 0x5630_3138;
/// The largest image this reader loads (`files.img` of a busy process is a few MiB).
const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// An inet socket of the checkpoint, as far as the sandbox's network cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetSocket {
    /// `SOCK_STREAM`, `SOCK_DGRAM`...
    pub kind: u32,
    /// The TCP state (`1` established, `10` listen; UDP: `1` connected, `7` unconnected).
    pub state: u32,
    pub local: Option<IpAddr>,
    pub local_port: u32,
    pub remote: Option<IpAddr>,
}

fn addr(family: u32, words: &[u32]) -> Option<IpAddr> {
    // CRIU stores addresses as the kernel's 32-bit words, in network byte order in memory.
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let a: IpAddr = match (family as i32, bytes.len()) {
        (libc::AF_INET, n) if n >= 4 => IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]),
        (libc::AF_INET6, 16) => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            let v6 = std::net::Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    (!a.is_unspecified()).then_some(a)
}

/// Every inet socket in `files.img` of `images` (none when the image is missing).
pub fn inet_sockets(images: &Path) -> Result<Vec<InetSocket>, SandboxError> {
    use criu_sys::proto::fdinfo::File_entry;
    let path = images.join("files.img");
    let mut out = Vec::new();
    for body in entries(&path, FILES_MAGIC)? {
        let e = File_entry::parse_from_bytes(&body)
            .map_err(|e| SandboxError::image(&path, format!("bad file entry: {e}")))?;
        if let Some(s) = e.isk.as_ref() {
            out.push(InetSocket {
                kind: s.type_(),
                state: s.state(),
                local: addr(s.family(), &s.src_addr),
                local_port: s.src_port(),
                remote: addr(s.family(), &s.dst_addr),
            });
        }
    }
    Ok(out)
}

/// The regular files the checkpoint's processes had open, with the size CRIU recorded (its
/// restore refuses a file whose size differs): (absolute path inside the container, size).
pub fn regular_files(images: &Path) -> Result<Vec<(String, u64)>, SandboxError> {
    use criu_sys::proto::fdinfo::File_entry;
    let path = images.join("files.img");
    let mut out = Vec::new();
    for body in entries(&path, FILES_MAGIC)? {
        let e = File_entry::parse_from_bytes(&body)
            .map_err(|e| SandboxError::image(&path, format!("bad file entry: {e}")))?;
        if let Some(r) = e.reg.as_ref().filter(|r| r.has_size()) {
            out.push((format!("/{}", r.name().trim_start_matches('/')), r.size()));
        }
    }
    Ok(out)
}

/// The payloads of the entries of a CRIU image with the given second magic.
fn entries(path: &Path, magic: u32) -> Result<Vec<Vec<u8>>, SandboxError> {
    use std::io::Read;
    let bytes = match std::fs::File::open(path) {
        Ok(f) => {
            let mut b = Vec::new();
            f.take(MAX_IMAGE_BYTES + 1)
                .read_to_end(&mut b)
                .map_err(|e| SandboxError::image(path, e.to_string()))?;
            if b.len() as u64 > MAX_IMAGE_BYTES {
                return Err(SandboxError::image(path, "larger than reel reads".into()));
            }
            b
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SandboxError::image(path, e.to_string())),
    };
    let word = |at: usize| -> Option<u32> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if word(0) != Some(IMG_COMMON_MAGIC) || word(4) != Some(magic) {
        return Err(SandboxError::image(path, "bad magic".into()));
    }
    let mut out = Vec::new();
    let mut at = 8usize;
    while at < bytes.len() {
        let len = word(at).ok_or_else(|| SandboxError::image(path, "truncated entry".into()))?;
        let start = at + 4;
        let end = start
            .checked_add(len as usize)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| SandboxError::image(path, format!("truncated entry at {at}")))?;
        out.push(bytes[start..end].to_vec());
        at = end;
    }
    Ok(out)
}

/// runc's `descriptors.json`: what fds 0, 1 and 2 of the init were (`pipe:[ino]`, a path...).
pub fn descriptors(images: &Path) -> Result<Vec<String>, SandboxError> {
    let path = images.join("descriptors.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SandboxError::image(&path, e.to_string())),
    };
    if text.len() > 1 << 20 {
        return Err(SandboxError::image(&path, "too large".into()));
    }
    serde_json::from_slice(&text).map_err(|e| SandboxError::image(&path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let v4 = u32::from_ne_bytes([10, 1, 2, 3]);
        assert_eq!(
            addr(libc::AF_INET as u32, &[v4]),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(addr(libc::AF_INET as u32, &[0]), None);
        assert_eq!(addr(libc::AF_INET6 as u32, &[1, 2]), None);
        let mapped: Vec<u32> = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 9]
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            addr(libc::AF_INET6 as u32, &mapped),
            Some("10.0.0.9".parse().unwrap())
        );
    }

    #[test]
    fn malformed_images_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(inet_sockets(dir.path()).unwrap().is_empty());
        for data in [
            b"xx".to_vec(),
            [IMG_COMMON_MAGIC.to_le_bytes(), FILES_MAGIC.to_le_bytes()].concat(),
            [
                IMG_COMMON_MAGIC.to_le_bytes(),
                FILES_MAGIC.to_le_bytes(),
                1000u32.to_le_bytes(),
            ]
            .concat(),
            [
                IMG_COMMON_MAGIC.to_le_bytes(),
                FILES_MAGIC.to_le_bytes(),
                u32::MAX.to_le_bytes(),
            ]
            .concat(),
        ] {
            std::fs::write(dir.path().join("files.img"), &data).unwrap();
            let _ = inet_sockets(dir.path());
        }
        std::fs::write(dir.path().join("files.img"), b"garbage!").unwrap();
        assert!(inet_sockets(dir.path()).is_err());
    }
}
