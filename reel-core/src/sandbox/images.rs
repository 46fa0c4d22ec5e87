//! The little of CRIU's images a sandbox restore must read before CRIU runs: the inet sockets
//! and regular files of `files.img` (through the one image reader, [`crate::criu::image`]),
//! and runc's `descriptors.json`.

use std::net::IpAddr;
use std::path::Path;

use criu_sys::proto::FileEntry;

use super::SandboxError;
use crate::criu::image::{ImageKind, ImageReader};

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

/// The entries of `files.img` of `images` (none when the image is missing).
fn file_entries(images: &Path) -> Result<Vec<FileEntry>, SandboxError> {
    let path = images.join("files.img");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bad = |e: crate::criu::image::ImageError| SandboxError::image(&path, e.to_string());
    let mut image = ImageReader::open(&path).map_err(bad)?;
    if image.kind() != ImageKind::Files {
        return Err(SandboxError::image(&path, "not a files image".into()));
    }
    image.read_entries().map_err(bad)
}

/// Every inet socket in `files.img` of `images` (none when the image is missing).
pub fn inet_sockets(images: &Path) -> Result<Vec<InetSocket>, SandboxError> {
    Ok(file_entries(images)?
        .iter()
        .filter_map(|e| e.isk.as_ref())
        .map(|s| InetSocket {
            kind: s.r#type,
            state: s.state,
            local: addr(s.family, &s.src_addr),
            local_port: s.src_port,
            remote: addr(s.family, &s.dst_addr),
        })
        .collect())
}

/// The regular files the checkpoint's processes had open, with the size CRIU recorded (its
/// restore refuses a file whose size differs): (absolute path inside the container, size).
pub fn regular_files(images: &Path) -> Result<Vec<(String, u64)>, SandboxError> {
    Ok(file_entries(images)?
        .iter()
        .filter_map(|e| e.reg.as_ref())
        .filter_map(|r| Some((format!("/{}", r.name.trim_start_matches('/')), r.size?)))
        .collect())
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
            &b"xx"[..],
            b"garbage!",
            &[0x19, 0x43, 0x56, 0x54, 0, 0, 0, 0],
        ] {
            std::fs::write(dir.path().join("files.img"), data).unwrap();
            assert!(inet_sockets(dir.path()).is_err());
        }
    }
}
