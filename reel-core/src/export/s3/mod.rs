//! S3 destinations: a multipart upload fed as the archive streams, with bounded memory.
//!
//! * Credentials come from the chain the AWS SDKs read ([`credentials`]: environment, shared
//!   config and credentials files with `AWS_PROFILE` (keys, `credential_process`, web identity,
//!   SSO), web identity / IRSA, ECS and EKS Pod Identity, IMDSv2); the region from
//!   `--s3-region`, `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile (else `us-east-1`; a
//!   bucket in another region is followed).
//! * `--s3-endpoint` (or `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`) points at an S3-compatible
//!   store and turns on path-style addressing; `--s3-ca` adds a private CA bundle (PEM) to the
//!   system's trusted roots. Requests are signed with SigV4 (`aws-sigv4`) and sent over hyper
//!   and rustls (ring).
//! * Parts: at least 8 MiB, and large enough that the expected size fits in 9,000 parts (S3
//!   allows 10,000), so a checkpoint of hundreds of GiB still fits; past part 9,000 the size
//!   doubles every 250 parts as a safety net. At most [`IN_FLIGHT`] parts upload at once while
//!   the next one fills: memory is bounded by `(IN_FLIGHT + 1) × part size`.
//! * Every request is retried with exponential backoff and jitter (the SDKs' standard
//!   strategy) on throttling, 5xx and connection errors. On any failure the upload is aborted, so no
//!   parts are left behind and no object appears; the object only exists once
//!   `CompleteMultipartUpload` succeeded, and `<key>.sha256` is written right after.

mod api;
pub mod credentials;
mod http;
mod sign;
mod xml;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::Method;
use bytes::Bytes;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{ExportError, Phase, Progress, Sink};
use crate::archive::format_sidecar;
use api::{S3Api, S3Failure};
use credentials::{Chain, CredentialCache};

/// Parts uploading at once (one more fills meanwhile). One keeps reel under 64 MiB; on a
/// loopback or same-region endpoint the upload of a part outruns the filling of the next.
pub const IN_FLIGHT: usize = 1;
/// The smallest part reel uses (S3's minimum is 5 MiB).
pub const MIN_PART_BYTES: u64 = 8 << 20;
/// S3's largest part.
pub const MAX_PART_BYTES: u64 = 5 << 30;
/// S3's part count limit.
pub const MAX_PARTS: i32 = 10_000;
const PLANNED_PARTS: u64 = 9_000;

/// Server-side encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3 (`AES256`).
    Aes256,
    /// SSE-KMS (`aws:kms`), with an optional key id.
    Kms,
}

impl Sse {
    /// `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    pub fn parse(s: &str) -> Result<Sse, ExportError> {
        match s {
            "AES256" | "aes256" => Ok(Sse::Aes256),
            "aws:kms" | "kms" => Ok(Sse::Kms),
            _ => Err(ExportError::UnknownSse {
                value: s.to_owned(),
            }),
        }
    }
}

/// How to reach S3.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub region: Option<String>,
    /// An S3-compatible endpoint URL (path-style addressing).
    pub endpoint: Option<String>,
    pub sse: Option<Sse>,
    pub sse_kms_key_id: Option<String>,
    /// A PEM bundle of extra trusted CAs.
    pub ca_bundle: Option<PathBuf>,
    /// Attempts per request (default 5).
    pub max_attempts: Option<u32>,
}

impl S3Options {
    /// Whether any option differs from the defaults (they only make sense for S3).
    pub fn is_set(&self) -> bool {
        self.region.is_some()
            || self.endpoint.is_some()
            || self.sse.is_some()
            || self.sse_kms_key_id.is_some()
            || self.ca_bundle.is_some()
    }

    /// Checks the options before anything runs: a KMS key only with aws:kms, an http(s)
    /// endpoint, a CA bundle that is a PEM file.
    pub fn validate(&self) -> Result<(), ExportError> {
        if self.sse_kms_key_id.is_some() && self.sse != Some(Sse::Kms) {
            return Err(ExportError::KmsKeyWithoutKms);
        }
        if let Some(ep) = &self.endpoint {
            if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                return Err(ExportError::BadEndpoint {
                    endpoint: ep.clone(),
                });
            }
        }
        if let Some(ca) = &self.ca_bundle {
            read_pem(ca)?;
        }
        Ok(())
    }

    /// The server-side encryption headers of every object reel writes: the algorithm, and the
    /// KMS key id with aws:kms.
    fn encryption(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        match self.sse {
            None => {}
            Some(Sse::Aes256) => h.push(("x-amz-server-side-encryption", "AES256".to_owned())),
            Some(Sse::Kms) => {
                h.push(("x-amz-server-side-encryption", "aws:kms".to_owned()));
                if let Some(k) = &self.sse_kms_key_id {
                    h.push(("x-amz-server-side-encryption-aws-kms-key-id", k.clone()));
                }
            }
        }
        h
    }
}

/// An S3 client with its own small runtime (one I/O thread).
pub struct S3Client {
    rt: Arc<Runtime>,
    api: Arc<S3Api>,
    opts: S3Options,
}

/// Reads a PEM bundle of CA certificates.
fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, ExportError> {
    let bad = |reason: String| ExportError::BadCaBundle {
        path: path.to_owned(),
        reason,
    };
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(bad(
            "not a PEM certificate bundle (no BEGIN CERTIFICATE block)".into(),
        ));
    }
    Ok(pem)
}

/// The part size for an archive of about `expected` bytes.
pub fn part_size(expected: Option<u64>) -> u64 {
    let want = expected.unwrap_or(0).div_ceil(PLANNED_PARTS);
    let mib = 1 << 20;
    (want.div_ceil(mib) * mib).clamp(MIN_PART_BYTES, MAX_PART_BYTES)
}

/// A failure in words for people: S3's code and message, or why the endpoint gave no answer.
fn describe(e: &S3Failure) -> String {
    match e {
        S3Failure::Transport(t) if t.untrusted_tls() => {
            format!("the endpoint's TLS certificate is not trusted (signed by a private CA?): {t}")
        }
        S3Failure::Transport(t) => format!("cannot reach the endpoint: {t}"),
        other => other.to_string(),
    }
}

/// The endpoint: `--s3-endpoint`, else `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (as the
/// SDKs read them).
fn endpoint(opts: &S3Options) -> Option<String> {
    opts.endpoint.clone().or_else(|| {
        ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    })
}

impl S3Client {
    /// Builds the client (reads the region; credentials are fetched by the first request).
    pub fn connect(opts: &S3Options) -> Result<S3Client, ExportError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("reel-s3")
            .enable_all()
            .build()
            .map_err(|e| ExportError::S3Setup(format!("starting the I/O runtime: {e}")))?;
        let pem = opts.ca_bundle.as_deref().map(read_pem).transpose()?;
        // One HTTPS client (rustls with ring) for the credential sources and for S3, with the
        // system's roots plus `--s3-ca`.
        let http = http::HttpClient::new(pem.as_deref(), Duration::from_secs(5))
            .map_err(|e| ExportError::S3Setup(e.to_string()))?;
        let region = opts
            .region
            .clone()
            .or_else(credentials::region_from_environment);
        let creds = CredentialCache::new(Chain::new(http.clone(), region.clone()));
        let api = S3Api::new(
            http,
            creds,
            region.unwrap_or_else(|| "us-east-1".into()),
            endpoint(opts),
            opts.max_attempts.unwrap_or(5),
        );
        Ok(S3Client {
            rt: Arc::new(rt),
            api: Arc::new(api),
            opts: opts.clone(),
        })
    }

    /// Checks that the bucket exists and the credentials may use it (before a dump starts).
    pub fn check_bucket(&self, bucket: &str) -> Result<(), ExportError> {
        let head = || {
            self.rt.block_on(self.api.call(
                Method::HEAD,
                bucket,
                None,
                &[],
                &[],
                Bytes::new(),
                false,
            ))
        };
        let mut r = head();
        // A bucket in another region: AWS says which; ask there.
        if let Err(S3Failure::Status {
            bucket_region: Some(other),
            ..
        }) = &r
        {
            if self.api.switch_region(other) {
                tracing::info!(region = %other, "the bucket is in another region");
                r = head();
            }
        }
        let target = format!("s3://{bucket}");
        match r {
            Ok(_) => Ok(()),
            Err(S3Failure::Transport(t)) if t.untrusted_tls() => Err(ExportError::S3Untrusted {
                target,
                message: describe(&S3Failure::Transport(t)),
            }),
            Err(e) => {
                let message = match e.status() {
                    Some(404) => "the bucket does not exist".to_owned(),
                    Some(403) => "access denied: check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) and the bucket policy".to_owned(),
                    Some(301) | Some(400) => format!(
                        "the bucket is in another region or the endpoint is wrong ({})",
                        describe(&e)
                    ),
                    _ => describe(&e),
                };
                Err(ExportError::S3 {
                    operation: "HeadBucket",
                    target,
                    message,
                })
            }
        }
    }

    /// Starts a multipart upload of `key`; `expected` sizes the parts.
    pub fn upload(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<u64>,
        progress: Arc<dyn Progress>,
    ) -> Result<S3Upload, ExportError> {
        let target = format!("s3://{bucket}/{key}");
        let mut headers = vec![("content-type", content_type(key).to_owned())];
        headers.extend(self.opts.encryption());
        let created = self
            .rt
            .block_on(self.api.call(
                Method::POST,
                bucket,
                Some(key),
                &[("uploads", "")],
                &headers,
                Bytes::new(),
                false,
            ))
            .map_err(|e| ExportError::S3 {
                operation: "CreateMultipartUpload",
                target: target.clone(),
                message: describe(&e),
            })?;
        let upload_id =
            xml::first_text(&created.text(), "UploadId").ok_or_else(|| ExportError::S3 {
                operation: "CreateMultipartUpload",
                target: target.clone(),
                message: "no upload id in the answer".into(),
            })?;
        tracing::info!(%target, %upload_id, "multipart upload started");
        let part = part_size(expected);
        progress.start(Phase::Upload, None);
        Ok(S3Upload {
            rt: self.rt.clone(),
            api: self.api.clone(),
            opts: self.opts.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            part_bytes: part,
            buf: Vec::new(),
            next_part: 1,
            sem: Arc::new(Semaphore::new(IN_FLIGHT)),
            tasks: Vec::new(),
            state: Arc::new(Mutex::new(Shared::default())),
            progress,
            finished: false,
        })
    }
}

fn content_type(key: &str) -> &'static str {
    if key.ends_with(".zst") || key.ends_with(".tzst") {
        "application/zstd"
    } else {
        "application/x-tar"
    }
}

#[derive(Default)]
struct Shared {
    /// (part number, ETag) of every uploaded part.
    parts: Vec<(i32, String)>,
    error: Option<String>,
}

/// A multipart upload being fed. Dropped before [`Sink::commit`] succeeded, it is aborted.
pub struct S3Upload {
    rt: Arc<Runtime>,
    api: Arc<S3Api>,
    opts: S3Options,
    bucket: String,
    key: String,
    upload_id: String,
    part_bytes: u64,
    buf: Vec<u8>,
    next_part: i32,
    sem: Arc<Semaphore>,
    tasks: Vec<JoinHandle<()>>,
    state: Arc<Mutex<Shared>>,
    progress: Arc<dyn Progress>,
    finished: bool,
}

/// The `CompleteMultipartUpload` document.
fn complete_body(parts: &[(i32, String)]) -> String {
    let mut x =
        String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (n, etag) in parts {
        let etag = etag
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        x.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    x.push_str("</CompleteMultipartUpload>");
    x
}

impl S3Upload {
    /// The upload id.
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    fn target(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn failed(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
    }

    fn object(&self, method: Method, key: &str, query: &[(&str, &str)]) -> Result<(), S3Failure> {
        self.rt
            .block_on(self.api.call(
                method,
                &self.bucket,
                Some(key),
                query,
                &[],
                Bytes::new(),
                false,
            ))
            .map(|_| ())
    }

    /// Hands the filled buffer to an upload task (waiting while [`IN_FLIGHT`] are running).
    fn ship(&mut self) -> io::Result<()> {
        if let Some(e) = self.failed() {
            return Err(io::Error::other(e));
        }
        let number = self.next_part;
        if number > MAX_PARTS {
            return Err(io::Error::other(format!(
                "the archive needs more than {MAX_PARTS} parts"
            )));
        }
        self.next_part += 1;
        if number as u64 >= PLANNED_PARTS && (number as u64 - PLANNED_PARTS).is_multiple_of(250) {
            self.part_bytes = (self.part_bytes * 2).min(MAX_PART_BYTES);
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let len = data.len() as u64;
        let permit = self
            .rt
            .block_on(self.sem.clone().acquire_owned())
            .map_err(|e| io::Error::other(e.to_string()))?;
        if let Some(e) = self.failed() {
            return Err(io::Error::other(e));
        }
        let api = self.api.clone();
        let (bucket, key, upload_id) = (
            self.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
        );
        let state = self.state.clone();
        let progress = self.progress.clone();
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(self.rt.spawn(async move {
            let n = number.to_string();
            let r = api
                .call(
                    Method::PUT,
                    &bucket,
                    Some(&key),
                    &[("partNumber", &n), ("uploadId", &upload_id)],
                    &[],
                    data,
                    true,
                )
                .await;
            drop(permit);
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            match r {
                Ok(reply) => match reply.header("etag") {
                    Some(etag) => {
                        st.parts.push((number, etag.to_owned()));
                        drop(st);
                        progress.advance(Phase::Upload, len);
                    }
                    None => {
                        st.error
                            .get_or_insert(format!("UploadPart {number}: no ETag in the answer"));
                    }
                },
                Err(e) => {
                    let msg = format!("UploadPart {number}: {}", describe(&e));
                    tracing::warn!(error = %msg, "part upload failed");
                    st.error.get_or_insert(msg);
                }
            }
        }));
        Ok(())
    }

    fn wait_tasks(&mut self, limit: Duration) {
        let tasks = std::mem::take(&mut self.tasks);
        let _ = self.rt.block_on(async {
            tokio::time::timeout(limit, async {
                for t in tasks {
                    let _ = t.await;
                }
            })
            .await
        });
    }

    fn put_sidecar(&self, sha256: &str) -> Result<(), String> {
        let name = self.key.rsplit('/').next().unwrap_or(&self.key);
        let body = format_sidecar(sha256, name);
        let key = format!("{}.sha256", self.key);
        let mut headers = vec![("content-type", "text/plain".to_owned())];
        headers.extend(self.opts.encryption());
        self.rt
            .block_on(self.api.call(
                Method::PUT,
                &self.bucket,
                Some(&key),
                &[],
                &headers,
                Bytes::from(body.into_bytes()),
                false,
            ))
            .map(|_| ())
            .map_err(|e| format!("PutObject {key}: {}", describe(&e)))
    }
}

impl Write for S3Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("upload already finished"));
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.part_bytes as usize);
        }
        // (S3 parts are allocated whole: with reel's 1 MiB mmap threshold each is its own
        // mapping, returned to the system when its upload ends.)
        let room = self.part_bytes as usize - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() as u64 >= self.part_bytes {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.failed() {
            Some(e) => Err(io::Error::other(e)),
            None => Ok(()),
        }
    }
}

impl Sink for S3Upload {
    fn destination(&self) -> String {
        self.target()
    }
    fn uploads_in_background(&self) -> bool {
        true
    }

    fn commit(&mut self, sha256: &str, _size: u64) -> Result<String, ExportError> {
        let target = self.target();
        let s3err = |operation, message| ExportError::S3 {
            operation,
            target: target.clone(),
            message,
        };
        if !self.buf.is_empty() || self.next_part == 1 {
            self.ship()
                .map_err(|e| s3err("UploadPart", e.to_string()))?;
        }
        self.wait_tasks(Duration::from_secs(24 * 3600));
        if let Some(e) = self.failed() {
            return Err(s3err("UploadPart", e));
        }
        let mut parts =
            std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).parts);
        parts.sort_by_key(|p| p.0);
        let expected = (self.next_part - 1) as usize;
        if parts.len() != expected {
            return Err(s3err(
                "UploadPart",
                format!("{} of {expected} parts uploaded", parts.len()),
            ));
        }
        let done = self.rt.block_on(self.api.call(
            Method::POST,
            &self.bucket,
            Some(&self.key),
            &[("uploadId", &self.upload_id)],
            &[("content-type", "application/xml".to_owned())],
            Bytes::from(complete_body(&parts)),
            false,
        ));
        if let Err(e) = done {
            return Err(s3err("CompleteMultipartUpload", describe(&e)));
        }
        self.finished = true;
        if let Err(e) = self.put_sidecar(sha256) {
            // Without its digest the object must not look complete either.
            let key = self.key.clone();
            let note = match self.object(Method::DELETE, &key, &[]) {
                Ok(()) => "the object was deleted again".to_owned(),
                Err(d) => format!("deleting the object failed too: {}", describe(&d)),
            };
            return Err(s3err("PutObject", format!("{e}; {note}")));
        }
        tracing::info!(target = %self.target(), "multipart upload completed");
        Ok(self.target())
    }

    fn abort(&mut self) -> Result<String, String> {
        if self.finished {
            return Ok("nothing to abort".into());
        }
        self.finished = true;
        self.buf = Vec::new();
        // Parts still uploading would otherwise outlive the abort.
        self.wait_tasks(Duration::from_secs(120));
        let key = self.key.clone();
        let id = self.upload_id.clone();
        match self.object(Method::DELETE, &key, &[("uploadId", &id)]) {
            Ok(()) => {
                tracing::info!(target = %self.target(), upload_id = %self.upload_id, "multipart upload aborted");
                Ok(format!(
                    "multipart upload {} aborted: no object was created",
                    self.upload_id
                ))
            }
            Err(e) if e.status() == Some(404) => Ok(format!(
                "multipart upload {} is gone: no object was created",
                self.upload_id
            )),
            Err(e) => Err(format!(
                "aborting multipart upload {} of {}: {}; remove it with `aws s3api abort-multipart-upload --bucket {} --key {} --upload-id {}` (or a bucket lifecycle rule)",
                self.upload_id,
                self.target(),
                describe(&e),
                self.bucket,
                self.key,
                self.upload_id
            )),
        }
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = self.abort() {
                tracing::error!(error = %e, "multipart upload left behind");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fit_and_the_completion_document_is_escaped() {
        assert_eq!(part_size(None), MIN_PART_BYTES);
        assert!(part_size(Some(400 << 30)) * PLANNED_PARTS >= 400 << 30);
        let x = complete_body(&[(1, "\"a&b\"".into()), (2, "\"c\"".into())]);
        assert!(
            x.contains("<PartNumber>1</PartNumber><ETag>&quot;a&amp;b&quot;</ETag>"),
            "{x}"
        );
        assert_eq!(xml::first_text(&x, "ETag").as_deref(), Some("\"a&b\""));
    }
}
