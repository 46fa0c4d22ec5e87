//! AWS credentials for S3 exports, from the sources a tool on a Kubernetes node is expected to
//! read, in the order the AWS SDKs read them:
//!
//! 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//! 2. the shared config and credentials files (`AWS_CONFIG_FILE`, `~/.aws/config`,
//!    `AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials`), profile `AWS_PROFILE` or `default`:
//!    static keys, `credential_process`, roles (`role_arn` with `source_profile`,
//!    `credential_source` or `web_identity_token_file`, assumed at STS), and IAM Identity Center
//!    (SSO) through the token `aws sso login` cached;
//! 3. web identity (IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`, exchanged at STS
//!    (`AssumeRoleWithWebIdentity`);
//! 4. the container credentials endpoint: ECS (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`) and EKS
//!    Pod Identity (`AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`);
//! 5. the EC2 instance metadata service, IMDSv2 only (session token first), unless
//!    `AWS_EC2_METADATA_DISABLED=true`.
//!
//! Endpoints can be redirected as the SDKs allow (`AWS_ENDPOINT_URL_STS`,
//! `AWS_ENDPOINT_URL_SSO`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`). Temporary credentials carry
//! their expiry; [`CredentialCache`] fetches new ones shortly before it. Nothing secret is
//! logged: only which source answered.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde::Deserialize;

use super::http::{HttpClient, HttpError};

/// How long a credential service may take to answer.
const SERVICE_DEADLINE: Duration = Duration::from_secs(10);
/// The instance metadata service answers within a second where it exists.
const IMDS_DEADLINE: Duration = Duration::from_secs(2);
/// Temporary credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// A set of AWS credentials.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// When temporary credentials expire.
    pub expires: Option<SystemTime>,
    /// Which source they came from (for messages; never the secret).
    pub source: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .field("expires", &self.expires)
            .field("source", &self.source)
            .finish()
    }
}

/// Why no credentials could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (~/.aws/config, ~/.aws/credentials), or AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, or run where a role is given (ECS, EKS Pod Identity, EC2 instance profile)")]
    NotFound,
    #[error("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")]
    HalfEnvironment,
    #[error("AWS profile {profile:?}: {reason}")]
    Profile { profile: String, reason: String },
    #[error("{source_name}: {reason}")]
    Source {
        source_name: &'static str,
        reason: String,
    },
}

fn source_err(source_name: &'static str, reason: impl fmt::Display) -> CredentialError {
    CredentialError::Source {
        source_name,
        reason: reason.to_string(),
    }
}

/// Reads the process environment (empty values count as unset, as in the SDKs).
fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn home() -> PathBuf {
    env("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// The credential chain; see the module documentation.
pub struct Chain {
    http: HttpClient,
    /// The region STS is called in (web identity).
    region: Option<String>,
}

impl Chain {
    pub fn new(http: HttpClient, region: Option<String>) -> Chain {
        Chain { http, region }
    }

    /// The first source that has credentials gives them; a source that is configured but
    /// fails stops the chain with its error (as the SDKs do), so a broken profile is not
    /// silently replaced by the instance's role.
    pub async fn resolve(&self) -> Result<Credentials, CredentialError> {
        if let Some(c) = from_environment()? {
            return Ok(c);
        }
        if let Some(c) = self.profile_credentials().await? {
            return Ok(c);
        }
        if let (Some(token_file), Some(role)) =
            (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"))
        {
            return self
                .web_identity(Path::new(&token_file), &role, env("AWS_ROLE_SESSION_NAME"))
                .await;
        }
        if let Some(c) = self.container_credentials().await? {
            return Ok(c);
        }
        if let Some(c) = self.imds_credentials().await? {
            return Ok(c);
        }
        Err(CredentialError::NotFound)
    }

    async fn profile_credentials(&self) -> Result<Option<Credentials>, CredentialError> {
        let explicit = env("AWS_PROFILE");
        let name = explicit.clone().unwrap_or_else(|| "default".into());
        let files = ProfileFiles::load()?;
        if files.profile(&name).is_none() && explicit.is_none() {
            return Ok(None);
        }
        self.named_profile(&files, &name, explicit.is_some(), 0)
            .await
    }

    /// The credentials of profile `name`; `required`: a profile without any is an error
    /// (the one `AWS_PROFILE` names, and every `source_profile`). `depth` bounds role chains.
    fn named_profile<'a>(
        &'a self,
        files: &'a ProfileFiles,
        name: &'a str,
        required: bool,
        depth: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Credentials>, CredentialError>> + Send + 'a>>
    {
        Box::pin(async move {
            let perr = |reason: String| CredentialError::Profile {
                profile: name.to_owned(),
                reason,
            };
            let Some(p) = files.profile(name) else {
                return Err(perr(format!(
                    "not found in {} or {}",
                    files.config_path.display(),
                    files.credentials_path.display()
                )));
            };
            let keys = match (p.get("aws_access_key_id"), p.get("aws_secret_access_key")) {
                (Some(id), Some(secret)) => Some(Credentials {
                    access_key_id: id.clone(),
                    secret_access_key: secret.clone(),
                    session_token: p.get("aws_session_token").cloned(),
                    expires: None,
                    source: format!("profile {name}"),
                }),
                _ => None,
            };
            if let Some(role) = p.get("role_arn") {
                if let Some(token_file) = p.get("web_identity_token_file") {
                    return self
                        .web_identity(
                            Path::new(token_file),
                            role,
                            p.get("role_session_name").cloned(),
                        )
                        .await
                        .map(Some);
                }
                if p.contains_key("mfa_serial") {
                    return Err(perr("roles that need an MFA code are not supported: give the role's credentials another way (credential_process, environment)".into()));
                }
                let source = match (p.get("source_profile"), p.get("credential_source")) {
                    // A profile that is its own source uses its keys.
                    (Some(src), _) if src == name => keys.clone().ok_or_else(|| {
                        perr("source_profile is itself but it has no keys".into())
                    })?,
                    (Some(src), _) => {
                        if depth >= 5 {
                            return Err(perr("more than 5 roles chained by source_profile".into()));
                        }
                        self.named_profile(files, src, true, depth + 1)
                            .await?
                            .ok_or_else(|| perr(format!("source_profile {src} has no credentials")))?
                    }
                    (None, Some(cs)) => self.credential_source(cs).await.map_err(perr)?,
                    (None, None) => {
                        return Err(perr(
                            "role_arn needs source_profile, credential_source or web_identity_token_file".into(),
                        ))
                    }
                };
                let mut form = vec![
                    ("Action", "AssumeRole".to_owned()),
                    ("RoleArn", role.clone()),
                    ("RoleSessionName", session_name(p.get("role_session_name"))),
                ];
                if let Some(x) = p.get("external_id") {
                    form.push(("ExternalId", x.clone()));
                }
                if let Some(d) = p.get("duration_seconds") {
                    form.push(("DurationSeconds", d.clone()));
                }
                return self
                    .sts(&form, Some(&source), role, "profile role (source_profile)")
                    .await
                    .map(Some);
            }
            if keys.is_some() {
                return Ok(keys);
            }
            if let Some(cmd) = p.get("credential_process") {
                return credential_process(cmd).map(Some).map_err(perr);
            }
            if p.contains_key("sso_account_id") || p.contains_key("sso_session") {
                return self.sso(name, &p, files).await.map(Some).map_err(perr);
            }
            if required {
                return Err(perr("it holds no credentials (no aws_access_key_id, credential_process, role_arn or sso_* settings)".into()));
            }
            Ok(None)
        })
    }

    /// A profile's `credential_source`: where the credentials that assume its role are.
    async fn credential_source(&self, cs: &str) -> Result<Credentials, String> {
        let found = match cs {
            "Environment" => from_environment().map_err(|e| e.to_string())?,
            "Ec2InstanceMetadata" => self.imds_credentials().await.map_err(|e| e.to_string())?,
            "EcsContainer" => self
                .container_credentials()
                .await
                .map_err(|e| e.to_string())?,
            other => {
                return Err(format!(
                "credential_source {other:?}: use Environment, Ec2InstanceMetadata or EcsContainer"
            ))
            }
        };
        found.ok_or_else(|| format!("credential_source {cs} has no credentials"))
    }

    /// STS `AssumeRoleWithWebIdentity` (unsigned: the token is the proof).
    async fn web_identity(
        &self,
        token_file: &Path,
        role: &str,
        session: Option<String>,
    ) -> Result<Credentials, CredentialError> {
        const WHAT: &str = "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)";
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| source_err(WHAT, format!("{}: {e}", token_file.display())))?;
        let form = [
            ("Action", "AssumeRoleWithWebIdentity".to_owned()),
            ("RoleArn", role.to_owned()),
            ("RoleSessionName", session_name(session.as_ref())),
            ("WebIdentityToken", token.trim().to_owned()),
        ];
        self.sts(&form, None, role, WHAT).await
    }

    /// One STS call (`form` plus the API version), signed with `signer` when given; its
    /// `Credentials`.
    async fn sts(
        &self,
        form: &[(&str, String)],
        signer: Option<&Credentials>,
        role: &str,
        what: &'static str,
    ) -> Result<Credentials, CredentialError> {
        let region = self.region.clone().unwrap_or_else(|| "us-east-1".into());
        let endpoint = env("AWS_ENDPOINT_URL_STS")
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        let body = {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            ser.append_pair("Version", "2011-06-15");
            for (k, v) in form {
                ser.append_pair(k, v);
            }
            ser.finish()
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/", endpoint.trim_end_matches('/')))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body.clone())))
            .map_err(|e| source_err(what, e))?;
        if let Some(c) = signer {
            super::sign::sign_request(
                &mut req,
                c,
                &region,
                "sts",
                super::sign::Payload::Signed(body.as_bytes()),
            )
            .map_err(|e| source_err(what, format!("signing for STS: {e}")))?;
        }
        let reply = self
            .http
            .send(req, SERVICE_DEADLINE)
            .await
            .map_err(|e| source_err(what, format!("STS at {endpoint}: {e}")))?;
        let text = reply.text();
        if !reply.status.is_success() {
            let why = super::xml::error_text(&text).unwrap_or_else(|| reply.status.to_string());
            return Err(source_err(what, format!("STS refused role {role}: {why}")));
        }
        let field = |tag: &str| super::xml::first_text(&text, tag);
        match (field("AccessKeyId"), field("SecretAccessKey")) {
            (Some(id), Some(secret)) => Ok(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: field("SessionToken"),
                expires: field("Expiration").and_then(|t| parse_time(&t)),
                source: format!("role {role}"),
            }),
            _ => Err(source_err(what, "STS answered without credentials")),
        }
    }

    /// ECS task roles and EKS Pod Identity.
    async fn container_credentials(&self) -> Result<Option<Credentials>, CredentialError> {
        const WHAT: &str = "the container credentials endpoint";
        let url = if let Some(rel) = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            format!("http://169.254.170.2{rel}")
        } else if let Some(full) = env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            full
        } else {
            return Ok(None);
        };
        let auth = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(f) => Some(
                std::fs::read_to_string(&f)
                    .map_err(|e| source_err(WHAT, format!("{f}: {e}")))?
                    .trim()
                    .to_owned(),
            ),
            None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        let mut req = Request::builder().method(Method::GET).uri(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| source_err(WHAT, format!("{url}: {e}")))?;
        let reply = self
            .http
            .send(req, SERVICE_DEADLINE)
            .await
            .map_err(|e| source_err(WHAT, format!("{url}: {e}")))?;
        if !reply.status.is_success() {
            return Err(source_err(WHAT, format!("{url} answered {}", reply.status)));
        }
        json_credentials(&reply.body, "container credentials endpoint")
            .map(Some)
            .map_err(|e| source_err(WHAT, format!("{url}: {e}")))
    }

    /// IMDSv2: a session token, the role's name, then its credentials.
    async fn imds_credentials(&self) -> Result<Option<Credentials>, CredentialError> {
        const WHAT: &str = "the EC2 instance metadata service";
        if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| "http://169.254.169.254".into());
        let base = base.trim_end_matches('/');
        let token_req = Request::builder()
            .method(Method::PUT)
            .uri(format!("{base}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .body(Full::new(Bytes::new()))
            .map_err(|e| source_err(WHAT, e))?;
        let token = match self.http.send(token_req, IMDS_DEADLINE).await {
            Ok(r) if r.status.is_success() => r.text(),
            // Not on EC2 (nothing answers), or the service is off: no credentials here.
            Ok(_) | Err(HttpError::Timeout(_)) | Err(HttpError::Transport(_)) => return Ok(None),
            Err(e) => return Err(source_err(WHAT, e)),
        };
        let get = |path: String| {
            Request::builder()
                .method(Method::GET)
                .uri(format!("{base}{path}"))
                .header("x-aws-ec2-metadata-token", token.trim())
                .body(Full::new(Bytes::new()))
                .map_err(|e| source_err(WHAT, e))
        };
        let path = "/latest/meta-data/iam/security-credentials/";
        let roles = self
            .http
            .send(get(path.into())?, IMDS_DEADLINE)
            .await
            .map_err(|e| source_err(WHAT, e))?;
        if roles.status.as_u16() == 404 {
            return Ok(None); // an instance without a role
        }
        let text = roles.text();
        let Some(role) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Ok(None);
        };
        let creds = self
            .http
            .send(get(format!("{path}{role}"))?, IMDS_DEADLINE)
            .await
            .map_err(|e| source_err(WHAT, e))?;
        if !creds.status.is_success() {
            return Err(source_err(
                WHAT,
                format!("role {role}: answered {}", creds.status),
            ));
        }
        json_credentials(&creds.body, &format!("instance profile {role}"))
            .map(Some)
            .map_err(|e| source_err(WHAT, e))
    }

    /// IAM Identity Center: the access token `aws sso login` cached, exchanged for the role's
    /// credentials at the SSO portal. reel does not refresh the token itself.
    async fn sso(
        &self,
        name: &str,
        p: &HashMap<String, String>,
        files: &ProfileFiles,
    ) -> Result<Credentials, String> {
        let (start_url, region, cache_key) = match p.get("sso_session") {
            Some(s) => {
                let sess = files
                    .section(&format!("sso-session {s}"))
                    .ok_or_else(|| format!("sso_session {s:?} has no [sso-session {s}] section"))?;
                let url = sess.get("sso_start_url").cloned().unwrap_or_default();
                let region = sess
                    .get("sso_region")
                    .cloned()
                    .ok_or("the sso-session has no sso_region")?;
                (url, region, s.clone())
            }
            None => {
                let url = p.get("sso_start_url").cloned().ok_or("no sso_start_url")?;
                let region = p.get("sso_region").cloned().ok_or("no sso_region")?;
                (url.clone(), region, url)
            }
        };
        let account = p.get("sso_account_id").ok_or("no sso_account_id")?;
        let role = p.get("sso_role_name").ok_or("no sso_role_name")?;
        let login = format!("run `aws sso login --profile {name}`");
        let cache = home().join(".aws/sso/cache").join(format!(
            "{}.json",
            hex::encode(<sha1::Sha1 as sha1::Digest>::digest(cache_key.as_bytes()))
        ));
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Cached {
            access_token: String,
            expires_at: String,
        }
        let cached: Cached = std::fs::read(&cache)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| format!("no cached SSO token for {start_url} ({login})"))?;
        if parse_time(&cached.expires_at).is_none_or(|t| t <= SystemTime::now()) {
            return Err(format!(
                "the cached SSO token for {start_url} has expired ({login})"
            ));
        }
        let endpoint = env("AWS_ENDPOINT_URL_SSO")
            .unwrap_or_else(|| format!("https://portal.sso.{region}.amazonaws.com"));
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("account_id", account)
            .append_pair("role_name", role)
            .finish();
        let url = format!(
            "{}/federation/credentials?{query}",
            endpoint.trim_end_matches('/')
        );
        let req = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .header("x-amz-sso_bearer_token", cached.access_token)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let reply = self
            .http
            .send(req, SERVICE_DEADLINE)
            .await
            .map_err(|e| format!("the SSO portal {endpoint}: {e}"))?;
        if !reply.status.is_success() {
            return Err(format!(
                "the SSO portal refused role {role} of account {account} ({}): {login}",
                reply.status
            ));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RoleCredentials {
            access_key_id: String,
            secret_access_key: String,
            session_token: Option<String>,
            expiration: Option<u64>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            role_credentials: RoleCredentials,
        }
        let a: Answer = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("the SSO portal's answer: {e}"))?;
        let c = a.role_credentials;
        Ok(Credentials {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            expires: c
                .expiration
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            source: format!("SSO {role}@{account}"),
        })
    }
}

/// `role_session_name`, else `reel-<unix time>`.
fn session_name(given: Option<&String>) -> String {
    given.cloned().unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("reel-{}", now.as_secs())
    })
}

fn from_environment() -> Result<Option<Credentials>, CredentialError> {
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Ok(Some(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: env("AWS_SESSION_TOKEN"),
            expires: None,
            source: "environment".into(),
        })),
        (None, None) => Ok(None),
        _ => Err(CredentialError::HalfEnvironment),
    }
}

/// RFC 3339 / ISO 8601 times as the credential services write them.
fn parse_time(t: &str) -> Option<SystemTime> {
    let t = t.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        // The SSO cache writes `2026-12-02T10:00:00UTC`.
        .or_else(|| chrono::DateTime::parse_from_rfc3339(&t.replace("UTC", "Z")).ok())?;
    let secs = u64::try_from(parsed.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The JSON of the container endpoint, IMDS and `credential_process`.
fn json_credentials(body: &[u8], source: &str) -> Result<Credentials, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Json {
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        token: Option<String>,
        session_token: Option<String>,
        expiration: Option<String>,
        code: Option<String>,
        message: Option<String>,
    }
    let j: Json = serde_json::from_slice(body).map_err(|e| format!("not credentials JSON: {e}"))?;
    if let Some(code) = j.code.as_deref().filter(|c| *c != "Success") {
        return Err(format!("{code}: {}", j.message.unwrap_or_default()));
    }
    match (j.access_key_id, j.secret_access_key) {
        (Some(id), Some(secret)) => Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: j.session_token.or(j.token),
            expires: j.expiration.as_deref().and_then(parse_time),
            source: source.to_owned(),
        }),
        _ => Err("no AccessKeyId and SecretAccessKey in the answer".into()),
    }
}

/// Runs a profile's `credential_process` (through the shell, as the CLI does).
fn credential_process(cmd: &str) -> Result<Credentials, String> {
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("credential_process: {e}"))?;
    if !out.status.success() {
        return Err(format!("credential_process failed ({})", out.status));
    }
    json_credentials(&out.stdout, "credential_process")
        .map_err(|e| format!("credential_process: {e}"))
}

/// Sections of an INI file: name → key → value.
type Sections = HashMap<String, HashMap<String, String>>;

/// The shared config and credentials files, read once.
struct ProfileFiles {
    config_path: PathBuf,
    credentials_path: PathBuf,
    config: Sections,
    credentials: Sections,
}

impl ProfileFiles {
    fn load() -> Result<ProfileFiles, CredentialError> {
        let config_path =
            env("AWS_CONFIG_FILE").map_or_else(|| home().join(".aws/config"), PathBuf::from);
        let credentials_path = env("AWS_SHARED_CREDENTIALS_FILE")
            .map_or_else(|| home().join(".aws/credentials"), PathBuf::from);
        let read = |p: &Path| -> Result<Sections, CredentialError> {
            if !p.is_file() {
                return Ok(Sections::new());
            }
            let ini =
                ini::Ini::load_from_file_noescape(p).map_err(|e| CredentialError::Profile {
                    profile: env("AWS_PROFILE").unwrap_or_else(|| "default".into()),
                    reason: format!("{}: {e}", p.display()),
                })?;
            Ok(ini
                .iter()
                .filter_map(|(name, props)| {
                    let kv = props.iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
                    Some((name?.trim().to_owned(), kv.collect()))
                })
                .collect())
        };
        Ok(ProfileFiles {
            config: read(&config_path)?,
            credentials: read(&credentials_path)?,
            config_path,
            credentials_path,
        })
    }

    /// A section of the config file by its full name.
    fn section(&self, name: &str) -> Option<HashMap<String, String>> {
        self.config.get(name).cloned()
    }

    /// Profile `name`: the config file's `[profile name]` (`[default]` for the default one),
    /// overlaid by the credentials file's `[name]`.
    fn profile(&self, name: &str) -> Option<HashMap<String, String>> {
        let mut found = false;
        let mut p = HashMap::new();
        let mut add = |sections: &Sections, section: &str| {
            if let Some(s) = sections.get(section) {
                found = true;
                p.extend(s.clone());
            }
        };
        if name == "default" {
            add(&self.config, "default");
        }
        add(&self.config, &format!("profile {name}"));
        add(&self.credentials, name);
        found.then_some(p)
    }

    /// The region of profile `name`, if it names one.
    fn region(&self, name: &str) -> Option<String> {
        self.profile(name)?.get("region").cloned()
    }
}

/// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's.
pub fn region_from_environment() -> Option<String> {
    env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| {
            let files = ProfileFiles::load().ok()?;
            files.region(&env("AWS_PROFILE").unwrap_or_else(|| "default".into()))
        })
}

/// Credentials resolved once and renewed shortly before they expire.
pub struct CredentialCache {
    chain: Chain,
    current: tokio::sync::Mutex<Option<Credentials>>,
}

impl CredentialCache {
    pub fn new(chain: Chain) -> CredentialCache {
        CredentialCache {
            chain,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// Valid credentials (fetched on first use, renewed near expiry).
    pub async fn get(&self) -> Result<Credentials, CredentialError> {
        let mut cur = self.current.lock().await;
        let fresh = cur.as_ref().is_some_and(|c| {
            c.expires
                .is_none_or(|t| t > SystemTime::now() + RENEW_BEFORE)
        });
        if !fresh {
            let c = self.chain.resolve().await?;
            tracing::debug!(source = %c.source, "AWS credentials");
            *cur = Some(c);
        }
        Ok(cur.clone().expect("set above"))
    }

    /// Forgets the credentials (the service said they expired).
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_credentials_of_each_service() {
        let ecs = br#"{"AccessKeyId":"AKIA1","SecretAccessKey":"s","Token":"t","Expiration":"2030-01-01T00:00:00Z"}"#;
        let c = json_credentials(ecs, "x").unwrap();
        assert_eq!(c.access_key_id, "AKIA1");
        assert_eq!(c.session_token.as_deref(), Some("t"));
        assert!(c.expires.is_some());
        let process =
            br#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"s","SessionToken":"st"}"#;
        assert_eq!(
            json_credentials(process, "x")
                .unwrap()
                .session_token
                .as_deref(),
            Some("st")
        );
        let failed = br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"nope"}"#;
        assert!(json_credentials(failed, "x").unwrap_err().contains("nope"));
        assert!(json_credentials(b"not json", "x").is_err());
        assert!(json_credentials(b"{}", "x").is_err());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = Credentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("tok-secret".into()),
            expires: None,
            source: "t".into(),
        };
        let d = format!("{c:?}");
        assert!(
            !d.contains("very-secret") && !d.contains("tok-secret"),
            "{d}"
        );
    }

    #[test]
    fn times_of_the_services_parse() {
        assert!(parse_time("2030-01-01T00:00:00Z").is_some());
        assert!(parse_time("2030-01-01T00:00:00UTC").is_some());
        assert!(parse_time("soon").is_none());
    }
}
