//! [`PreHasher`]: hashes CRIU's page images while CRIU is still writing them.
//!
//! While the container is frozen, CRIU keeps one core busy writing pages and the other core
//! idles. A pre-hasher thread follows each `pages-*.img` as it grows (it reads from the page
//! cache what CRIU just wrote) and computes its SHA-256 on that idle core. Once the dump is
//! over, the archive writer uses those digests instead of hashing the largest members again
//! on the critical path: see [`ArchiveWriter::use_known_digests`](super::ArchiveWriter::use_known_digests).
//! A digest is used only if the file is still the one that was hashed (same inode, size and
//! modification time); otherwise the writer hashes as usual.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How long the thread sleeps when CRIU has written nothing new.
const POLL: Duration = Duration::from_millis(2);
/// Bytes read at a time.
const READ_BYTES: usize = 1 << 20;

/// The SHA-256 of a file as it was when hashed, with what identifies that version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDigest {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    dev: u64,
    ino: u64,
    mtime_ns: i128,
}

impl KnownDigest {
    /// Whether `meta` (of the file at [`path`](Self::path)) is still the version hashed.
    pub fn matches(&self, meta: &fs::Metadata) -> bool {
        meta.dev() == self.dev
            && meta.ino() == self.ino
            && meta.len() == self.size
            && mtime_ns(meta) == self.mtime_ns
    }
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Follows the `pages-*.img` files of an images directory on a thread of its own.
pub struct PreHasher {
    done: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<KnownDigest>>>,
}

struct Followed {
    file: File,
    hasher: Sha256,
    read: u64,
    failed: bool,
}

impl PreHasher {
    /// Starts following `images_dir` (which CRIU is about to fill).
    pub fn start(images_dir: &Path) -> io::Result<PreHasher> {
        let done = Arc::new(AtomicBool::new(false));
        let dir = images_dir.to_owned();
        let flag = done.clone();
        let handle = thread::Builder::new()
            .name("reel-prehash".into())
            .spawn(move || follow(&dir, &flag))?;
        Ok(PreHasher {
            done,
            handle: Some(handle),
        })
    }

    /// Says that the writer is done (CRIU returned), hashes what is left and returns the
    /// digests of the files followed to their end.
    pub fn finish(mut self) -> Vec<KnownDigest> {
        self.done.store(true, Ordering::SeqCst);
        let waited = std::time::Instant::now();
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(digests)) => {
                tracing::debug!(
                    files = digests.len(),
                    waited_ms = waited.elapsed().as_millis() as u64,
                    "page images pre-hashed"
                );
                digests
            }
            _ => {
                tracing::warn!("the pre-hash thread failed; members are hashed while archiving");
                Vec::new()
            }
        }
    }
}

impl Drop for PreHasher {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        // Not joined: after an error nobody needs the digests, and the thread ends on its own
        // once the files are read (or removed with the staging directory).
    }
}

fn is_pages_image(name: &str) -> bool {
    name.starts_with("pages-") && name.ends_with(".img")
}

fn follow(dir: &Path, done: &AtomicBool) -> Vec<KnownDigest> {
    let mut files: BTreeMap<String, Followed> = BTreeMap::new();
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        // Read the flag first: once it is set, CRIU has finished, so the pass below sees every
        // file whole.
        let last_pass = done.load(Ordering::SeqCst);
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                if !is_pages_image(&name) || files.contains_key(&name) {
                    continue;
                }
                if let Ok(file) = File::open(e.path()) {
                    files.insert(
                        name,
                        Followed {
                            file,
                            hasher: Sha256::new(),
                            read: 0,
                            failed: false,
                        },
                    );
                }
            }
        }
        let mut progressed = false;
        for f in files.values_mut().filter(|f| !f.failed) {
            loop {
                match f.file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        f.hasher.update(&buf[..n]);
                        f.read += n as u64;
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "pre-hash read failed; hashing later");
                        f.failed = true;
                        break;
                    }
                }
            }
        }
        if last_pass {
            break;
        }
        if !progressed {
            thread::sleep(POLL);
        }
    }
    files
        .into_iter()
        .filter(|(_, f)| !f.failed)
        .filter_map(|(name, f)| {
            let meta = f.file.metadata().ok()?;
            (meta.len() == f.read).then(|| KnownDigest {
                path: dir.join(name),
                size: f.read,
                sha256: hex::encode(f.hasher.finalize()),
                dev: meta.dev(),
                ino: meta.ino(),
                mtime_ns: mtime_ns(&meta),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn follows_files_as_they_grow() {
        let dir = tempfile::tempdir().unwrap();
        let p = PreHasher::start(dir.path()).unwrap();
        let path = dir.path().join("pages-1.img");
        let mut f = File::create(&path).unwrap();
        let mut all = Vec::new();
        for i in 0..50u8 {
            let chunk = vec![i; 100_000];
            f.write_all(&chunk).unwrap();
            all.extend_from_slice(&chunk);
            thread::sleep(Duration::from_millis(1));
        }
        fs::write(dir.path().join("core-1.img"), b"not followed").unwrap();
        drop(f);
        let digests = p.finish();
        assert_eq!(digests.len(), 1, "{digests:?}");
        let d = &digests[0];
        assert_eq!(d.path, path);
        assert_eq!(d.size, all.len() as u64);
        assert_eq!(d.sha256, crate::archive::sha256_hex(&all));
        assert!(d.matches(&fs::metadata(&path).unwrap()));
        // Any later change makes the digest unusable.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert!(!d.matches(&fs::metadata(&path).unwrap()));
    }
}
