//! A real S3-compatible server for a test: moto on loopback (`scripts/s3-server.sh`), on a port
//! and state directory of its own, with credentials checked, stopped when dropped.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::reel::run_bounded;
use crate::{repo_root, test_dir};

/// A moto server of this test on its own port and state directory, stopped when dropped.
#[derive(Debug)]
pub struct S3Server {
    /// The server's directory (`pid`, `server.log`, `env`, the TLS files).
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The variables of its env file (`AWS_*`, `REEL_S3_*`).
    pub env: BTreeMap<String, String>,
}

/// A TCP port nothing listens on now (on 127.0.0.1).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl S3Server {
    /// A server that speaks plain HTTP.
    pub fn start() -> S3Server {
        S3Server::start_with(&[])
    }

    /// A server that speaks HTTPS only, with a certificate from a private CA (`ca()`).
    pub fn start_tls() -> S3Server {
        S3Server::start_with(&["--tls"])
    }

    /// The private CA of a `start_tls` server.
    pub fn ca(&self) -> Option<String> {
        self.env.get("REEL_S3_CA").cloned()
    }

    /// `scripts/s3-server.sh start FLAGS` on a free port with a private directory; its env file
    /// read into [`S3Server::env`].
    pub fn start_with(flags: &[&str]) -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("reel-s3.")
            .tempdir_in(test_dir())
            .unwrap();
        let port = free_port();
        let mut s = S3Server {
            dir,
            port,
            env: BTreeMap::new(),
        };
        s.run_script("start", flags);
        let text = fs::read_to_string(s.dir.path().join("env")).expect("the server's env file");
        for line in text.lines() {
            if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                s.env.insert(k.to_string(), v.to_string());
            }
        }
        s
    }

    /// `scripts/s3-server.sh WHAT --port <port> --dir <dir> FLAGS` (e.g. `start` again after
    /// [`S3Server::kill`]); panics unless it succeeds.
    pub fn run_script(&self, what: &str, flags: &[&str]) {
        let out = run_bounded(
            Command::new(repo_root().join("scripts/s3-server.sh"))
                .arg(what)
                .arg("--port")
                .arg(self.port.to_string())
                .arg("--dir")
                .arg(self.dir.path())
                .args(flags),
            Duration::from_secs(300),
        );
        assert!(out.status.success(), "s3-server.sh {what}: {out}");
    }

    pub fn endpoint(&self) -> String {
        self.env["REEL_S3_ENDPOINT"].clone()
    }

    pub fn bucket(&self) -> String {
        self.env["REEL_S3_BUCKET"].clone()
    }

    /// The environment reel gets: the server's credentials, no instance metadata.
    pub fn reel_env(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
                .iter()
                .map(|k| (k.to_string(), self.env[*k].clone()))
                .collect();
        v.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
        v
    }

    /// Runs a Python snippet with boto3 against the server; `sys.argv[1:]` are `args`.
    pub fn py(&self, code: &str, args: &[&str]) -> String {
        let prelude = format!(
            "import sys, json, boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', verify={})\nB = '{}'\n",
            self.endpoint(),
            self.ca().map_or("None".to_string(), |ca| format!("'{ca}'")),
            self.bucket()
        );
        // The Python that runs moto has boto3 (on Debian, a venv of its own: PEP 668).
        let python = self
            .env
            .get("REEL_S3_PYTHON")
            .map_or("python3", String::as_str);
        let mut cmd = Command::new(python);
        cmd.arg("-c").arg(format!("{prelude}{code}")).args(args);
        for (k, v) in self.reel_env() {
            cmd.env(k, v);
        }
        let out = run_bounded(&mut cmd, Duration::from_secs(120));
        assert!(out.status.success(), "boto3: {out}");
        out.stdout
    }

    /// The object's bytes, or None when it does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let tmp = self.dir.path().join("download");
        let _ = fs::remove_file(&tmp);
        let r = self.py(
            "try:\n    s3.download_file(B, sys.argv[1], sys.argv[2]); print('yes')\nexcept Exception as e:\n    print('no', e)\n",
            &[key, tmp.to_str().unwrap()],
        );
        r.starts_with("yes").then(|| fs::read(&tmp).unwrap())
    }

    /// The object's ETag.
    pub fn etag(&self, key: &str) -> String {
        self.py(
            "print(s3.head_object(Bucket=B, Key=sys.argv[1])['ETag'])",
            &[key],
        )
        .trim()
        .trim_matches('"')
        .to_string()
    }

    /// Keys of the multipart uploads in progress.
    pub fn uploads(&self) -> Vec<String> {
        let out = self.py(
            "print(json.dumps([u['Key'] for u in s3.list_multipart_uploads(Bucket=B).get('Uploads', [])]))",
            &[],
        );
        serde_json::from_str(out.trim()).unwrap()
    }

    /// Every key in the bucket.
    pub fn keys(&self) -> Vec<String> {
        let out = self.py(
            "print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket=B).get('Contents', [])]))",
            &[],
        );
        serde_json::from_str(out.trim()).unwrap()
    }

    pub fn kill(&self) {
        let pid: i32 = fs::read_to_string(self.dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) of the server this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new(repo_root().join("scripts/s3-server.sh"))
                .arg("stop")
                .arg("--dir")
                .arg(self.dir.path()),
            Duration::from_secs(30),
        );
    }
}
