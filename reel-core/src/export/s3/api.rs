//! S3 requests: addressed (virtual-hosted on AWS, path-style on a custom endpoint), signed with
//! SigV4 (`aws-sigv4`), and retried with exponential backoff and jitter on throttling, 5xx
//! answers and connection errors (as the SDKs' standard strategy does).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::credentials::{CredentialCache, CredentialError};
use super::http::{HttpClient, HttpError, Reply};
use super::sign::{sign_request, Payload};
use super::xml;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (SigV4's rule).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Every request may take this long, plus the time its body needs at a slow 1 MiB/s.
const BASE_DEADLINE: Duration = Duration::from_secs(120);

/// Why an S3 request failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Failure {
    /// S3 answered with an error.
    #[error("{}", status_text(*status, code, message))]
    Status {
        status: u16,
        code: Option<String>,
        message: Option<String>,
        /// `x-amz-bucket-region` of the answer (a bucket in another region).
        bucket_region: Option<String>,
    },
    /// No answer (after the retries).
    #[error("{0}")]
    Transport(HttpError),
    #[error("{0}")]
    Credentials(CredentialError),
    #[error("signing the request: {0}")]
    Signing(String),
}

fn status_text(status: u16, code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => format!("HTTP {status}"),
    }
}

impl S3Failure {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Failure::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where requests go.
#[derive(Debug, Clone)]
enum Addressing {
    /// `https://BUCKET.s3.REGION.amazonaws.com/KEY`.
    Aws,
    /// `ENDPOINT/BUCKET/KEY` (S3-compatible stores, and bucket names with dots).
    Path(String),
}

/// A signed, retrying S3 client.
pub struct S3Api {
    http: HttpClient,
    creds: CredentialCache,
    region: std::sync::RwLock<String>,
    addressing: Addressing,
    attempts: u32,
}

impl S3Api {
    pub fn new(
        http: HttpClient,
        creds: CredentialCache,
        region: String,
        endpoint: Option<String>,
        attempts: u32,
    ) -> S3Api {
        S3Api {
            http,
            creds,
            region: std::sync::RwLock::new(region),
            addressing: endpoint.map_or(Addressing::Aws, |e| {
                Addressing::Path(e.trim_end_matches('/').to_owned())
            }),
            attempts: attempts.max(1),
        }
    }

    fn region(&self) -> String {
        self.region
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Follows a bucket that lives in another region (AWS says which in
    /// `x-amz-bucket-region`); only for AWS itself.
    pub fn switch_region(&self, region: &str) -> bool {
        if !matches!(self.addressing, Addressing::Aws) || region == self.region() {
            return false;
        }
        *self.region.write().unwrap_or_else(|e| e.into_inner()) = region.to_owned();
        true
    }

    fn url(&self, bucket: &str, key: Option<&str>, query: &[(&str, &str)]) -> String {
        let mut path = String::from("/");
        if let Some(k) = key {
            let segs: Vec<String> = k
                .split('/')
                .map(|s| utf8_percent_encode(s, UNRESERVED).to_string())
                .collect();
            path.push_str(&segs.join("/"));
        }
        let base = match &self.addressing {
            Addressing::Path(e) => format!("{e}/{bucket}"),
            Addressing::Aws if bucket.contains('.') => {
                format!("https://s3.{}.amazonaws.com/{bucket}", self.region())
            }
            Addressing::Aws => format!("https://{bucket}.s3.{}.amazonaws.com", self.region()),
        };
        let mut url = if key.is_some()
            || matches!(self.addressing, Addressing::Aws) && !bucket.contains('.')
        {
            format!("{base}{path}")
        } else {
            base
        };
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        format!("{}=", utf8_percent_encode(k, UNRESERVED))
                    } else {
                        format!(
                            "{}={}",
                            utf8_percent_encode(k, UNRESERVED),
                            utf8_percent_encode(v, UNRESERVED)
                        )
                    }
                })
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        url
    }

    /// Sends one S3 request, signed anew for each attempt, and returns a 2xx answer.
    /// `unsigned_payload` leaves the body out of the signature (large parts: TLS and the
    /// archive's own digest protect them; hashing every part again would cost a pass).
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        method: Method,
        bucket: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Bytes,
        unsigned_payload: bool,
    ) -> Result<Reply, S3Failure> {
        let deadline = BASE_DEADLINE + Duration::from_secs(body.len() as u64 >> 20);
        let mut backoff = INITIAL_BACKOFF;
        let mut attempt = 1;
        loop {
            let outcome = self
                .attempt(
                    &method,
                    bucket,
                    key,
                    query,
                    headers,
                    &body,
                    unsigned_payload,
                    deadline,
                )
                .await;
            let retry = match &outcome {
                Ok(r) if r.status.is_success() && !body_is_error(&method, r) => break outcome,
                Ok(r) => {
                    let code = xml::first_text(&r.text(), "Code");
                    if code.as_deref() == Some("ExpiredToken") {
                        self.creds.invalidate().await;
                    }
                    retryable_status(r.status.as_u16(), code.as_deref())
                }
                Err(S3Failure::Transport(e)) => !e.untrusted_tls(),
                Err(_) => false,
            };
            if !retry || attempt >= self.attempts {
                return match outcome {
                    Ok(r) => Err(failure_of(&r)),
                    Err(e) => Err(e),
                };
            }
            tracing::debug!(attempt, "S3 request failed, retrying");
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        method: &Method,
        bucket: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: &Bytes,
        unsigned_payload: bool,
        deadline: Duration,
    ) -> Result<Reply, S3Failure> {
        let creds = self.creds.get().await.map_err(S3Failure::Credentials)?;
        let url = self.url(bucket, key, query);
        let mut req = Request::builder().method(method.clone()).uri(&url);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        if !body.is_empty() || *method == Method::PUT || *method == Method::POST {
            req = req.header("content-length", body.len().to_string());
        }
        let mut req = req
            .body(Full::new(body.clone()))
            .map_err(|e| S3Failure::Signing(e.to_string()))?;
        let payload = if unsigned_payload {
            Payload::Unsigned
        } else {
            Payload::Signed(body)
        };
        sign_request(&mut req, &creds, &self.region(), "s3", payload)
            .map_err(S3Failure::Signing)?;
        self.http
            .send(req, deadline)
            .await
            .map_err(S3Failure::Transport)
    }
}

/// CompleteMultipartUpload may answer 200 with an `<Error>` body.
fn body_is_error(method: &Method, r: &Reply) -> bool {
    *method == Method::POST && xml::is_error(&r.text())
}

fn failure_of(r: &Reply) -> S3Failure {
    let text = r.text();
    S3Failure::Status {
        status: r.status.as_u16(),
        code: xml::first_text(&text, "Code"),
        message: xml::first_text(&text, "Message"),
        bucket_region: r.header("x-amz-bucket-region").map(str::to_owned),
    }
}

/// Throttling, server errors and the transient 400s S3 documents.
fn retryable_status(status: u16, code: Option<&str>) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
        || matches!(
            code,
            Some(
                "RequestTimeout"
                    | "SlowDown"
                    | "Throttling"
                    | "ThrottlingException"
                    | "RequestTimeTooSkewed"
                    | "ExpiredToken"
                    | "InternalError"
            )
        )
}

/// Full jitter: a random time up to `d` (the clock's nanoseconds are random enough here).
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_what_is_transient_only() {
        assert!(retryable_status(503, Some("SlowDown")));
        assert!(retryable_status(500, None));
        assert!(retryable_status(400, Some("RequestTimeout")));
        assert!(!retryable_status(403, Some("AccessDenied")));
        assert!(!retryable_status(404, Some("NoSuchBucket")));
        let j = jitter(Duration::from_secs(2));
        assert!(j >= Duration::from_secs(1) && j <= Duration::from_secs(2));
    }
}
