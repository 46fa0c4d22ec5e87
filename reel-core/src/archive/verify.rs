//! Verifying an archive against its manifest (and a file against its `.sha256` sidecar).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use super::reader::{decoded, parse_manifest};
use super::{
    parse_sidecar, sidecar_path, ArchiveError, Compression, DigestValues, Digests, HashingReader,
    HashingWriter, Manifest, MANIFEST_NAME,
};

/// A member whose size or digest differs from the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberMismatch {
    /// Member name.
    pub name: String,
    /// Size in the manifest.
    pub expected_size: u64,
    /// Size in the archive.
    pub actual_size: u64,
    /// SHA-256 in the manifest.
    pub expected_sha256: String,
    /// SHA-256 of the member's content in the archive.
    pub actual_sha256: String,
    /// BLAKE3 in the manifest, when it records one.
    pub expected_blake3: Option<String>,
    /// BLAKE3 of the member's content, when the manifest records one.
    pub actual_blake3: Option<String>,
}

/// The outcome of checking the whole file against `<file>.sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarCheck {
    /// Verifying a stream: there is no sidecar to look for.
    NotChecked,
    /// No sidecar next to the file.
    Absent,
    /// The file's SHA-256 matches the sidecar.
    Match,
    /// The file's SHA-256 differs from the sidecar's.
    Mismatch {
        /// The sidecar's digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// The sidecar exists but cannot be read or parsed.
    Unreadable(String),
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Compression of the archive.
    pub compression: Compression,
    /// The manifest, if the archive has a usable one.
    pub manifest: Option<Manifest>,
    /// Why there is no usable manifest.
    pub manifest_problem: Option<String>,
    /// Members (other than the manifest) read and hashed.
    pub members_checked: usize,
    /// Members whose size or SHA-256 differs from the manifest.
    pub mismatched: Vec<MemberMismatch>,
    /// Members in the manifest but not in the archive.
    pub missing: Vec<String>,
    /// Members in the archive but not in the manifest.
    pub extra: Vec<String>,
    /// Member names that occur more than once.
    pub duplicates: Vec<String>,
    /// SHA-256 of the archive's bytes as stored (compressed, if it is).
    pub archive_sha256: String,
    /// Size of the archive as stored.
    pub archive_bytes: u64,
    /// The sidecar check.
    pub sidecar: SidecarCheck,
}

impl VerifyReport {
    /// True when the manifest is present, every member matches it, nothing is missing or extra,
    /// and the sidecar (if there is one) matches.
    pub fn is_ok(&self) -> bool {
        self.manifest.is_some()
            && self.mismatched.is_empty()
            && self.missing.is_empty()
            && self.extra.is_empty()
            && self.duplicates.is_empty()
            && matches!(
                self.sidecar,
                SidecarCheck::NotChecked | SidecarCheck::Absent | SidecarCheck::Match
            )
    }

    /// The names of every member that failed (mismatched, missing, extra or duplicated), sorted.
    pub fn failed_members(&self) -> Vec<&str> {
        let mut names: BTreeSet<&str> = self.mismatched.iter().map(|m| m.name.as_str()).collect();
        names.extend(self.missing.iter().map(String::as_str));
        names.extend(self.extra.iter().map(String::as_str));
        names.extend(self.duplicates.iter().map(String::as_str));
        names.into_iter().collect()
    }
}

/// Verifies the archive file at `path` (plain or zstd tar): every member against the manifest,
/// and the whole file against `<path>.sha256` when that sidecar exists.
pub fn verify(path: &Path) -> Result<VerifyReport, ArchiveError> {
    let file = File::open(path).map_err(|e| ArchiveError::io("opening", path, e))?;
    let mut report = verify_stream(file, path)?;
    let sidecar = sidecar_path(path);
    report.sidecar = match fs::read_to_string(&sidecar) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => SidecarCheck::Absent,
        Err(e) => {
            tracing::warn!(path = %sidecar.display(), error = %e, "cannot read sidecar");
            SidecarCheck::Unreadable(e.to_string())
        }
        Ok(content) => match parse_sidecar(&content) {
            None => SidecarCheck::Unreadable("not a `<sha256>  <file>` line".to_owned()),
            Some(expected) if expected == report.archive_sha256 => SidecarCheck::Match,
            Some(expected) => SidecarCheck::Mismatch {
                expected,
                actual: report.archive_sha256.clone(),
            },
        },
    };
    Ok(report)
}

/// Verifies an archive stream (plain or zstd tar) against its manifest.
pub fn verify_reader<R: Read>(r: R) -> Result<VerifyReport, ArchiveError> {
    verify_stream(r, Path::new("<stream>"))
}

fn verify_stream<R: Read>(r: R, path: &Path) -> Result<VerifyReport, ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    };
    let mut raw = HashingReader::new(r);
    let mut seen: BTreeMap<String, (u64, DigestValues)> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let mut manifest: Result<Manifest, String> = Err(format!("no {MANIFEST_NAME} member"));
    let compression = {
        let (compression, mut body) = decoded(&mut raw).map_err(read_err)?;
        {
            let mut archive = tar::Archive::new(&mut body);
            for entry in archive.entries().map_err(read_err)? {
                let mut entry = entry.map_err(read_err)?;
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                if name == MANIFEST_NAME && !seen.contains_key(&name) {
                    manifest = parse_manifest(&mut entry, path).map_err(|e| e.to_string());
                    seen.insert(name, (0, DigestValues::default()));
                    continue;
                }
                // Both digests: the manifest (usually the last member) says which it records.
                let mut sink = HashingWriter::with(io::sink(), Digests::member());
                io::copy(&mut entry, &mut sink).map_err(read_err)?;
                let (digests, size, _) = sink.finish_all();
                if seen.insert(name.clone(), (size, digests)).is_some() {
                    duplicates.push(name);
                }
            }
        }
        // Read to the end so the whole-archive digest covers every byte.
        io::copy(&mut body, &mut io::sink()).map_err(read_err)?;
        compression
    };
    io::copy(&mut raw, &mut io::sink()).map_err(read_err)?;
    let (archive_sha256, archive_bytes, _) = raw.finish();
    seen.remove(MANIFEST_NAME);

    let mut report = VerifyReport {
        compression,
        manifest: None,
        manifest_problem: None,
        members_checked: seen.len(),
        mismatched: Vec::new(),
        missing: Vec::new(),
        extra: Vec::new(),
        duplicates,
        archive_sha256,
        archive_bytes,
        sidecar: SidecarCheck::NotChecked,
    };
    match manifest {
        Err(problem) => {
            report.extra = seen.into_keys().collect();
            report.manifest_problem = Some(problem);
        }
        Ok(m) => {
            for want in &m.members {
                match seen.remove(&want.name) {
                    None => report.missing.push(want.name.clone()),
                    Some((size, got))
                        if size != want.size
                            || got.sha256.as_deref() != Some(want.sha256.as_str())
                            || want.blake3.is_some() && got.blake3 != want.blake3 =>
                    {
                        report.mismatched.push(MemberMismatch {
                            name: want.name.clone(),
                            expected_size: want.size,
                            actual_size: size,
                            expected_sha256: want.sha256.clone(),
                            actual_sha256: got.sha256.unwrap_or_default(),
                            expected_blake3: want.blake3.clone(),
                            actual_blake3: want.blake3.as_ref().and(got.blake3),
                        })
                    }
                    Some(_) => {}
                }
            }
            report.extra = seen.into_keys().collect();
            report.manifest = Some(m);
        }
    }
    Ok(report)
}
