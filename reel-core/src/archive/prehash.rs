//! [`PreHasher`]: hashes CRIU's page images while CRIU is still writing them.
//!
//! While the container is frozen, CRIU keeps one core busy writing pages and the other core
//! idles. A pre-hasher thread follows each `pages-*.img` as it grows (it reads from the page
//! cache what CRIU just wrote) and feeds its digests on that idle core. When the dump is over
//! it stops at once, wherever it is: the archive writer takes each hash state over and hashes
//! only the rest of the file (CRIU only appends to an image), so the largest members cost
//! little hashing after the thaw and nothing waits for the pre-hasher: see
//! [`ArchiveWriter::use_prefix_digests`](super::ArchiveWriter::use_prefix_digests). A state is
//! used only for the same file (device and inode) at least as long as what was hashed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::Digests;

/// How long the thread sleeps when CRIU has written nothing new.
const POLL: Duration = Duration::from_millis(2);
/// Bytes read at a time.
const READ_BYTES: usize = 1 << 20;

/// The digest states (SHA-256 and BLAKE3) of a file's first [`hashed`](Self::hashed) bytes.
#[derive(Debug, Clone)]
pub struct PrefixDigest {
    pub path: PathBuf,
    /// Bytes hashed from the start of the file.
    pub hashed: u64,
    hasher: Digests,
    dev: u64,
    ino: u64,
}

impl PrefixDigest {
    /// Whether `meta` (of the file at [`path`](Self::path)) is the file hashed, grown or not.
    pub fn applies_to(&self, meta: &fs::Metadata) -> bool {
        meta.dev() == self.dev && meta.ino() == self.ino && meta.len() >= self.hashed
    }

    /// The hash state, to feed the rest of the file into.
    pub fn into_hasher(self) -> Digests {
        self.hasher
    }
}

/// Follows the `pages-*.img` files of an images directory on a thread of its own.
pub struct PreHasher {
    done: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<PrefixDigest>>>,
}

struct Followed {
    file: File,
    hasher: Digests,
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

    /// Stops (CRIU returned) and returns how far each file was hashed.
    pub fn finish(mut self) -> Vec<PrefixDigest> {
        self.done.store(true, Ordering::SeqCst);
        let waited = std::time::Instant::now();
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(digests)) => {
                tracing::debug!(
                    files = digests.len(),
                    bytes = digests.iter().map(|d| d.hashed).sum::<u64>(),
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

fn follow(dir: &Path, done: &AtomicBool) -> Vec<PrefixDigest> {
    let mut files: BTreeMap<String, Followed> = BTreeMap::new();
    let mut buf = vec![0u8; READ_BYTES];
    'follow: while !done.load(Ordering::SeqCst) {
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
                            hasher: Digests::member(),
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
                // Checked between reads: once CRIU is done, the archive writer hashes the rest.
                if done.load(Ordering::SeqCst) {
                    break 'follow;
                }
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
        if !progressed {
            thread::sleep(POLL);
        }
    }
    files
        .into_iter()
        .filter(|(_, f)| !f.failed && f.read > 0)
        .filter_map(|(name, f)| {
            let meta = f.file.metadata().ok()?;
            Some(PrefixDigest {
                path: dir.join(name),
                hashed: f.read,
                hasher: f.hasher,
                dev: meta.dev(),
                ino: meta.ino(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_prefix_hashed_while_written_resumes_to_the_whole_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = PreHasher::start(dir.path()).unwrap();
        let path = dir.path().join("pages-1.img");
        let mut f = File::create(&path).unwrap();
        let mut all = Vec::new();
        for i in 0..30u8 {
            let chunk = vec![i; 100_000];
            f.write_all(&chunk).unwrap();
            all.extend_from_slice(&chunk);
            thread::sleep(Duration::from_millis(2));
        }
        fs::write(dir.path().join("core-1.img"), b"not followed").unwrap();
        // Give the thread time to catch up, stop it, then the file grows on.
        thread::sleep(Duration::from_millis(100));
        let digests = p.finish();
        for i in 0..10u8 {
            let chunk = vec![i ^ 0x5a; 70_000];
            f.write_all(&chunk).unwrap();
            all.extend_from_slice(&chunk);
        }
        drop(f);
        assert_eq!(digests.len(), 1, "{digests:?}");
        let d = digests.into_iter().next().unwrap();
        assert_eq!(d.path, path);
        assert!(d.hashed > 0 && d.hashed <= all.len() as u64, "{}", d.hashed);
        assert!(d.applies_to(&fs::metadata(&path).unwrap()));
        let hashed = d.hashed as usize;
        let mut h = d.into_hasher();
        h.update(&all[hashed..]);
        let d = h.finish();
        assert_eq!(d.sha256.unwrap(), crate::archive::sha256_hex(&all));
        assert_eq!(d.blake3.unwrap(), crate::archive::blake3_hex(&all));
        // Another file under the same name is not the one hashed.
        fs::remove_file(&path).unwrap();
        fs::write(&path, &all).unwrap();
        let again = PreHasher::start(dir.path()).unwrap().finish();
        assert!(again.iter().all(|d| d.hashed <= all.len() as u64));
    }
}
