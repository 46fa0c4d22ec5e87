//! SigV4 signing of a request (AWS's own `aws-sigv4`), for S3 and for STS.

use std::time::SystemTime;

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::credentials::Credentials;

/// What the signature covers of the body.
pub enum Payload<'a> {
    /// The body's SHA-256 is signed.
    Signed(&'a [u8]),
    /// `UNSIGNED-PAYLOAD` (large S3 parts: TLS and the archive's own digest protect them).
    Unsigned,
}

/// Signs `req` for `service` in `region` with `creds` (headers: `authorization`,
/// `x-amz-date`, `x-amz-security-token`, and for S3 `x-amz-content-sha256`).
pub fn sign_request(
    req: &mut Request<Full<Bytes>>,
    creds: &Credentials,
    region: &str,
    service: &str,
    payload: Payload<'_>,
) -> Result<(), String> {
    let identity = aws_smithy_runtime_api::client::identity::Identity::from(
        aws_credential_types::Credentials::new(
            creds.access_key_id.clone(),
            creds.secret_access_key.clone(),
            creds.session_token.clone(),
            creds.expires,
            "reel",
        ),
    );
    let mut settings = SigningSettings::default();
    if service == "s3" {
        // S3 signs paths as sent (no double encoding, no normalisation) and wants the
        // payload's hash in a header.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let body = match payload {
        Payload::Signed(b) => SignableBody::Bytes(b),
        Payload::Unsigned => SignableBody::UnsignedPayload,
    };
    let signable = SignableRequest::new(req.method().as_str(), uri, headers.into_iter(), body)
        .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}
