//! The HTTP(S) client under S3 and the credential sources: hyper over rustls (ring), with the
//! system's trusted roots plus a private CA bundle, a connect timeout and a per-request
//! deadline.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::error_chain;

/// The largest answer reel reads (S3's and the credential services' answers are small XML or
/// JSON documents; reel never downloads objects).
const MAX_ANSWER: usize = 1 << 20;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be sent or its answer not read (refused, reset, DNS, TLS).
    #[error("{0}")]
    Transport(String),
    /// No complete answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer's body is larger than any answer reel expects.
    #[error("the answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
    /// The client could not be set up (trusted roots, CA bundle).
    #[error("{0}")]
    Setup(String),
}

impl HttpError {
    /// Whether the endpoint's certificate is not trusted (a private CA not given).
    pub fn untrusted_tls(&self) -> bool {
        match self {
            HttpError::Transport(t) => ["certificate", "UnknownIssuer", "unknown issuer"]
                .iter()
                .any(|w| t.contains(w)),
            _ => false,
        }
    }
}

/// An answer: status, headers and the whole (bounded) body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as text (lossy: answers are XML or JSON).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A pooled HTTP/1.1 client for `http://` and `https://` URLs.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client trusting the system's roots and the certificates of `extra_pem`.
    pub fn new(extra_pem: Option<&[u8]>, connect_timeout: Duration) -> Result<Self, HttpError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A system root rustls cannot parse is skipped, as every rustls client does.
            let _ = roots.add(cert);
        }
        if let Some(pem) = extra_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| HttpError::Setup(format!("the CA bundle: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| HttpError::Setup(format!("the CA bundle: {e}")))?;
            }
        }
        if roots.is_empty() {
            return Err(HttpError::Setup(
                "no trusted root certificates (install ca-certificates or give a CA bundle)".into(),
            ));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Setup(format!("TLS set-up: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(HttpClient { inner })
    }

    /// Sends `req` and reads its whole answer, all within `deadline`.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        deadline: Duration,
    ) -> Result<Reply, HttpError> {
        let work = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| HttpError::Transport(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let limited = http_body_util::Limited::new(body, MAX_ANSWER);
            let body = limited.collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::TooLarge
                } else {
                    HttpError::Transport(error_chain(e.as_ref()))
                }
            })?;
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: body.to_bytes(),
            })
        };
        tokio::time::timeout(deadline, work)
            .await
            .map_err(|_| HttpError::Timeout(deadline))?
    }
}
