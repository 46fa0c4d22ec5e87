//! S3 destinations: a multipart upload fed as the archive streams, with bounded memory.
//!
//! * Credentials and region come from the AWS SDK's default chain (environment, shared config
//!   and credentials files with `AWS_PROFILE`, web identity / IRSA, ECS and EC2 instance
//!   metadata), unless `--s3-region` says otherwise.
//! * `--s3-endpoint` points at an S3-compatible store and turns on path-style addressing;
//!   `--s3-ca` adds a private CA bundle (PEM) to the trusted roots.
//! * Parts: at least 8 MiB, and large enough that the expected size fits in 9,000 parts (S3
//!   allows 10,000), so a checkpoint of hundreds of GiB still fits; past part 9,000 the size
//!   doubles every 250 parts as a safety net. At most [`IN_FLIGHT`] parts upload at once while
//!   the next one fills: memory is bounded by `(IN_FLIGHT + 1) × part size`.
//! * Every request is retried by the SDK's standard strategy (exponential backoff with jitter)
//!   on throttling, 5xx and connection errors. On any failure the upload is aborted, so no
//!   parts are left behind and no object appears; the object only exists once
//!   `CompleteMultipartUpload` succeeded, and `<key>.sha256` is written right after.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_sdk_s3::Client;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{ExportError, Phase, Progress, Sink};
use crate::archive::format_sidecar;

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
    fn encryption(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match self.sse {
            None => (None, None),
            Some(Sse::Aes256) => (Some(ServerSideEncryption::Aes256), None),
            Some(Sse::Kms) => (
                Some(ServerSideEncryption::AwsKms),
                self.sse_kms_key_id.clone(),
            ),
        }
    }
}

/// An S3 client with its own small runtime (one I/O thread).
pub struct S3Client {
    rt: Arc<Runtime>,
    client: Client,
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

/// rustls (ring) with the system's trusted roots, plus the PEM bundle `ca` when given.
fn https_client(
    ca: Option<&std::path::Path>,
) -> Result<aws_sdk_s3::config::SharedHttpClient, ExportError> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    let mut trust = tls::TrustStore::default();
    if let Some(ca) = ca {
        trust = trust.with_pem_certificate(read_pem(ca)?);
    }
    let ctx = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| ExportError::S3Setup(format!("TLS set-up: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(ctx)
        .build_https())
}

/// The part size for an archive of about `expected` bytes.
pub fn part_size(expected: Option<u64>) -> u64 {
    let want = expected.unwrap_or(0).div_ceil(PLANNED_PARTS);
    let mib = 1 << 20;
    (want.div_ceil(mib) * mib).clamp(MIN_PART_BYTES, MAX_PART_BYTES)
}

fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                _ => format!("{}", DisplayErrorContext(e)),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            let text = format!("{}", DisplayErrorContext(e));
            if untrusted_tls(&text) {
                format!(
                    "the endpoint's TLS certificate is not trusted (signed by a private CA?): {text}"
                )
            } else {
                format!("cannot reach the endpoint: {text}")
            }
        }
        _ => format!("{}", DisplayErrorContext(e)),
    }
}

/// Whether a dispatch failure is a TLS certificate the client does not trust.
fn untrusted_tls(text: &str) -> bool {
    ["certificate", "UnknownIssuer", "unknown issuer"]
        .iter()
        .any(|w| text.contains(w))
}

impl S3Client {
    /// Builds the client (reads the credential and region chain; no request is sent yet).
    pub fn connect(opts: &S3Options) -> Result<S3Client, ExportError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("reel-s3")
            .enable_all()
            .build()
            .map_err(|e| ExportError::S3Setup(format!("starting the I/O runtime: {e}")))?;
        let attempts = opts.max_attempts.unwrap_or(5).max(1);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(250))
                    .with_max_backoff(Duration::from_secs(8)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        // One HTTPS client (rustls with ring) for the credential chain (STS, SSO, IMDS, ECS)
        // and for S3, with the system's roots plus `--s3-ca`.
        loader = loader.http_client(https_client(opts.ca_bundle.as_deref())?);
        let sdk = rt.block_on(loader.load());
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if sdk.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        if let Some(ep) = &opts.endpoint {
            b = b.endpoint_url(ep.clone()).force_path_style(true);
        }
        Ok(S3Client {
            rt: Arc::new(rt),
            client: Client::from_conf(b.build()),
            opts: opts.clone(),
        })
    }

    /// Checks that the bucket exists and the credentials may use it (before a dump starts).
    pub fn check_bucket(&self, bucket: &str) -> Result<(), ExportError> {
        let r = self
            .rt
            .block_on(self.client.head_bucket().bucket(bucket).send());
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let message = match status {
                    Some(404) => "the bucket does not exist".to_owned(),
                    Some(403) => "access denied: check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) and the bucket policy".to_owned(),
                    Some(301) | Some(400) => format!(
                        "the bucket is in another region or the endpoint is wrong ({})",
                        describe(&e)
                    ),
                    _ => describe(&e),
                };
                let target = format!("s3://{bucket}");
                if matches!(e, SdkError::DispatchFailure(_))
                    && untrusted_tls(&format!("{}", DisplayErrorContext(&e)))
                {
                    return Err(ExportError::S3Untrusted { target, message });
                }
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
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type(key));
        let (sse, kms_key) = self.opts.encryption();
        req = req
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key);
        let created = self.rt.block_on(req.send()).map_err(|e| ExportError::S3 {
            operation: "CreateMultipartUpload",
            target: target.clone(),
            message: describe(&e),
        })?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| ExportError::S3 {
                operation: "CreateMultipartUpload",
                target: target.clone(),
                message: "no upload id in the answer".into(),
            })?
            .to_owned();
        tracing::info!(%target, %upload_id, "multipart upload started");
        let part = part_size(expected);
        progress.start(Phase::Upload, None);
        Ok(S3Upload {
            rt: self.rt.clone(),
            client: self.client.clone(),
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
    parts: Vec<CompletedPart>,
    error: Option<String>,
}

/// A multipart upload being fed. Dropped before [`Sink::commit`] succeeded, it is aborted.
pub struct S3Upload {
    rt: Arc<Runtime>,
    client: Client,
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
        let data = std::mem::take(&mut self.buf);
        let len = data.len() as u64;
        let permit = self
            .rt
            .block_on(self.sem.clone().acquire_owned())
            .map_err(|e| io::Error::other(e.to_string()))?;
        if let Some(e) = self.failed() {
            return Err(io::Error::other(e));
        }
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(len as i64)
            .body(ByteStream::from(data));
        let state = self.state.clone();
        let progress = self.progress.clone();
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(self.rt.spawn(async move {
            let r = req.send().await;
            drop(permit);
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            match r {
                Ok(out) => {
                    st.parts.push(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(out.e_tag().map(str::to_owned))
                            .build(),
                    );
                    drop(st);
                    progress.advance(Phase::Upload, len);
                }
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

    /// The object's size, if it exists.
    fn object_size(&self) -> Option<u64> {
        let r = self.rt.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .send(),
        );
        r.ok()?.content_length().and_then(|n| u64::try_from(n).ok())
    }

    fn put_sidecar(&self, sha256: &str) -> Result<(), String> {
        let name = self.key.rsplit('/').next().unwrap_or(&self.key);
        let body = format_sidecar(sha256, name);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}.sha256", self.key))
            .content_type("text/plain")
            .body(ByteStream::from(body.into_bytes()));
        let (sse, kms_key) = self.opts.encryption();
        req = req
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key);
        self.rt
            .block_on(req.send())
            .map(|_| ())
            .map_err(|e| format!("PutObject {}.sha256: {}", self.key, describe(&e)))
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

    fn commit(&mut self, sha256: &str, size: u64) -> Result<String, ExportError> {
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
        parts.sort_by_key(|p| p.part_number());
        let expected = (self.next_part - 1) as usize;
        if parts.len() != expected {
            return Err(s3err(
                "UploadPart",
                format!("{} of {expected} parts uploaded", parts.len()),
            ));
        }
        let req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if let Err(e) = self.rt.block_on(req.send()) {
            // Some S3-compatible servers (moto) answer with a differently named XML root that
            // the SDK refuses to parse. A 200 whose body is no <Error> is accepted only when
            // the object is then there with exactly the size written.
            let ok_body = e.raw_response().is_some_and(|r| {
                r.status().as_u16() == 200
                    && r.body().bytes().is_some_and(|b| {
                        let t = String::from_utf8_lossy(b);
                        t.contains("<CompleteMultipartUpload") && !t.contains("<Error>")
                    })
            });
            if !(ok_body && self.object_size() == Some(size)) {
                return Err(s3err("CompleteMultipartUpload", describe(&e)));
            }
            tracing::debug!(
                "CompleteMultipartUpload answer not parsed; object checked with HeadObject"
            );
        }
        self.finished = true;
        if let Err(e) = self.put_sidecar(sha256) {
            // Without its digest the object must not look complete either.
            let del = self.rt.block_on(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .send(),
            );
            let note = match del {
                Ok(_) => "the object was deleted again".to_owned(),
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
        let r = self.rt.block_on(
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .send(),
        );
        match r {
            Ok(_) => {
                tracing::info!(target = %self.target(), upload_id = %self.upload_id, "multipart upload aborted");
                Ok(format!(
                    "multipart upload {} aborted: no object was created",
                    self.upload_id
                ))
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(404) {
                    return Ok(format!(
                        "multipart upload {} is gone: no object was created",
                        self.upload_id
                    ));
                }
                Err(format!(
                    "aborting multipart upload {} of {}: {}; remove it with `aws s3api abort-multipart-upload --bucket {} --key {} --upload-id {}` (or a bucket lifecycle rule)",
                    self.upload_id,
                    self.target(),
                    describe(&e),
                    self.bucket,
                    self.key,
                    self.upload_id
                ))
            }
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
