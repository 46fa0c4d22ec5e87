//! `reel export checkpoint`: a fresh (or stored, `--id`) checkpoint as one archive, to a file,
//! a directory, standard output or S3.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reel_core::export::local::{LocalFile, Stdout};
use reel_core::export::s3::{S3Client, S3Options, Sse};
use reel_core::export::{
    self, dest, Destination, Encoding, ExportError, Exported, Level, Phase, Plan, Progress, Sink,
};
use serde::Serialize;

use crate::cli::{Cli, ExportCheckpoint, Output};
use crate::hints::usage;
use crate::output::human_bytes;

/// What `-o json` prints (one object), and the table shows.
#[derive(Debug, Serialize)]
struct Summary {
    id: String,
    destination: String,
    sha256: String,
    /// Archive size as written.
    archive_bytes: u64,
    /// Size of the uncompressed tar.
    tar_bytes: u64,
    compression: &'static str,
    /// tar bytes / archive bytes.
    compression_ratio: f64,
    zstd_frames: usize,
    /// Freeze to thaw, as reel measured it (fresh checkpoints only).
    frozen_ms: Option<u64>,
    /// CRIU's own frozen time.
    criu_frozen_ms: Option<u64>,
    total_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    /// The copy kept in the store (`--keep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<PathBuf>,
    left_frozen: bool,
}

fn usage_or(e: ExportError) -> anyhow::Error {
    if e.is_usage() {
        usage(e.to_string())
    } else {
        e.into()
    }
}

pub fn run(cli: &Cli, args: &ExportCheckpoint) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.id.is_none() && args.pod.is_none() {
        return Err(usage(
            "name the pod to checkpoint (`reel export checkpoint POD -n NS --dest DEST`) or a stored checkpoint with --id",
        ));
    }
    let destination = Destination::parse(args.dest.as_deref()).map_err(usage_or)?;
    // The name and --compress must agree whatever the id will be: check before anything runs.
    dest::plan(&destination, args.compress.as_deref(), "x").map_err(usage_or)?;
    let s3opts = s3_options(args, &destination)?;

    let opts = super::create::options(&args.dump)?;
    let s3 = match (&destination, &s3opts) {
        (Destination::S3 { bucket, .. }, Some(o)) => {
            let c = S3Client::connect(o)?;
            c.check_bucket(bucket)?;
            Some(c)
        }
        _ => None,
    };
    export::catch_interrupts()?;
    export::return_large_buffers();
    let reporter = Reporter::new(!cli.quiet && std::io::stderr().is_terminal());
    let progress: Arc<dyn Progress> = reporter.clone();

    if let Some(id) = &args.id {
        let store = super::open_store(cli)?;
        let path = store.archive_path(id);
        if !path.is_file() {
            anyhow::bail!(
                "no checkpoint {id} in {} (see `reel list checkpoint -A`)",
                store.root().display()
            );
        }
        let (plan, level) =
            dest::plan(&destination, args.compress.as_deref(), id).map_err(usage_or)?;
        let expected = std::fs::metadata(&path).map(|m| m.len()).ok();
        let sink = open_sink(&plan, s3.as_ref(), expected, progress.clone())?;
        let enc = encoding(level, progress.clone());
        let exported = export::write_stored(&path, sink, &enc)
            .with_context(|| format!("exporting {id} to {}", plan.describe()))?;
        reporter.clear();
        let summary = summarize(id.clone(), &exported, None, None, started);
        return print(args.output, &summary, &plan, cli.quiet);
    }

    // A fresh checkpoint.
    super::require_root("checkpointing a container")?;
    let pod = args.pod.clone().unwrap_or_default();
    let namespace = args.namespace.clone().unwrap_or_else(|| "default".into());
    let cp = super::checkpointer(cli)?;
    let target = format!(
        "{namespace}/{pod}{}",
        args.container
            .as_deref()
            .map(|c| format!("/{c}"))
            .unwrap_or_default()
    );
    let found = reel_core::discovery::discover(&cp.discovery)?;
    let c = found
        .find(&namespace, &pod, args.container.as_deref())
        .with_context(|| format!("finding {target}"))?
        .clone();
    let now = Utc::now();
    let pending = if args.keep {
        Some(cp.store.begin_new(&c.pod, now)?)
    } else {
        None
    };
    let id = match &pending {
        Some(p) => p.id().to_owned(),
        None => cp.store.new_id(&c.pod, now)?,
    };
    let (plan, level) =
        dest::plan(&destination, args.compress.as_deref(), &id).map_err(usage_or)?;
    // A local file is created (under its temp name) before the freeze, so a bad destination
    // never costs the workload a pause.
    let mut local = match &plan {
        Plan::File(p) => Some(LocalFile::create(p)?),
        _ => None,
    };
    let staging_root = args
        .staging_dir
        .clone()
        .unwrap_or_else(|| cp.store.root().to_owned());
    progress.start(Phase::Dump, None);
    let dumped = cp
        .dump(&c, &id, &staging_root, &opts)
        .with_context(|| format!("checkpointing {target}"))?;
    progress.finish(Phase::Dump);
    if export::interrupted() {
        anyhow::bail!("interrupted by a signal after the dump; nothing was exported");
    }
    let sink: Box<dyn Sink> = match local.take() {
        Some(l) => Box::new(l),
        None => open_sink(
            &plan,
            s3.as_ref(),
            Some(export::dir_bytes(dumped.stage_dir())),
            progress.clone(),
        )?,
    };
    let enc = encoding(level, progress.clone());
    let exported = export::write_dumped(&dumped, sink, pending, &enc)
        .with_context(|| format!("exporting {id} to {}", plan.describe()))?;
    reporter.clear();
    let mut summary = summarize(
        id,
        &exported,
        Some(dumped.frozen),
        dumped.stats.frozen_time,
        started,
    );
    summary.namespace = Some(c.namespace.clone());
    summary.pod = Some(c.pod.clone());
    summary.container = Some(c.name.clone());
    summary.left_frozen = dumped.left_frozen;
    drop(dumped);
    print(args.output, &summary, &plan, cli.quiet)
}

fn encoding(level: Level, progress: Arc<dyn Progress>) -> Encoding {
    let mut enc = Encoding::new(level);
    enc.progress = progress;
    enc
}

fn s3_options(args: &ExportCheckpoint, d: &Destination) -> anyhow::Result<Option<S3Options>> {
    let any = args.s3_region.is_some()
        || args.s3_endpoint.is_some()
        || args.s3_sse.is_some()
        || args.s3_sse_kms_key_id.is_some()
        || args.s3_ca.is_some();
    if !matches!(d, Destination::S3 { .. }) {
        if any {
            return Err(usage("--s3-* options need an s3:// --dest"));
        }
        return Ok(None);
    }
    let sse = match args.s3_sse.as_deref() {
        None => None,
        Some(s) => Some(
            Sse::parse(s)
                .ok_or_else(|| usage(format!("unknown --s3-sse {s:?}: use AES256 or aws:kms")))?,
        ),
    };
    if args.s3_sse_kms_key_id.is_some() && sse != Some(Sse::Kms) {
        return Err(usage("--s3-sse-kms-key-id needs --s3-sse aws:kms"));
    }
    if let Some(ep) = &args.s3_endpoint {
        if !(ep.starts_with("http://") || ep.starts_with("https://")) {
            return Err(usage(format!(
                "--s3-endpoint {ep:?} must be an http:// or https:// URL"
            )));
        }
    }
    if let Some(ca) = &args.s3_ca {
        if !ca.is_file() {
            return Err(usage(format!("--s3-ca {}: no such file", ca.display())));
        }
        let pem = std::fs::read(ca).with_context(|| format!("reading --s3-ca {}", ca.display()))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(usage(format!(
                "--s3-ca {}: not a PEM certificate bundle (no BEGIN CERTIFICATE block)",
                ca.display()
            )));
        }
    }
    let max_attempts = std::env::var("REEL_S3_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok());
    Ok(Some(S3Options {
        region: args.s3_region.clone(),
        endpoint: args.s3_endpoint.clone(),
        sse,
        sse_kms_key_id: args.s3_sse_kms_key_id.clone(),
        ca_bundle: args.s3_ca.clone(),
        max_attempts,
    }))
}

fn open_sink(
    plan: &Plan,
    s3: Option<&S3Client>,
    expected: Option<u64>,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<Box<dyn Sink>> {
    Ok(match plan {
        Plan::File(p) => Box::new(LocalFile::create(p)?),
        Plan::Stdout => Box::new(Stdout::new()),
        Plan::S3 { bucket, key } => {
            let client = s3.context("no S3 client")?;
            Box::new(client.upload(bucket, key, expected, progress)?)
        }
    })
}

fn summarize(
    id: String,
    e: &Exported,
    frozen: Option<Duration>,
    criu_frozen: Option<Duration>,
    started: Instant,
) -> Summary {
    Summary {
        id,
        destination: e.destination.clone(),
        sha256: e.sha256.clone(),
        archive_bytes: e.archive_bytes,
        tar_bytes: e.tar_bytes,
        compression: e.compression,
        compression_ratio: if e.archive_bytes == 0 {
            1.0
        } else {
            (e.tar_bytes as f64 / e.archive_bytes as f64 * 1000.0).round() / 1000.0
        },
        zstd_frames: e.frames,
        frozen_ms: frozen.map(|d| d.as_millis() as u64),
        criu_frozen_ms: criu_frozen.map(|d| d.as_millis() as u64),
        total_ms: started.elapsed().as_millis() as u64,
        namespace: None,
        pod: None,
        container: None,
        kept: e.kept.as_ref().map(|k| k.path.clone()),
        left_frozen: false,
    }
}

fn print(format: Output, s: &Summary, plan: &Plan, _quiet: bool) -> anyhow::Result<()> {
    use std::io::Write;
    // With the archive on stdout, the summary goes to stderr.
    let mut out: Box<dyn Write> = if *plan == Plan::Stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    match format {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(s)?)?,
        Output::Yaml => write!(out, "{}", yaml_serde::to_string(s)?)?,
        Output::Table => {
            writeln!(out, "Checkpoint {} exported to {}", s.id, s.destination)?;
            writeln!(
                out,
                "  size         {} ({} uncompressed, ratio {:.2}, {})",
                human_bytes(s.archive_bytes),
                human_bytes(s.tar_bytes),
                s.compression_ratio,
                if s.compression == "none" {
                    "plain tar".to_string()
                } else {
                    format!("zstd {}", s.compression)
                }
            )?;
            if let Some(f) = s.frozen_ms {
                writeln!(
                    out,
                    "  frozen       {f} ms (CRIU {} ms){}",
                    s.criu_frozen_ms
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "?".into()),
                    if s.left_frozen {
                        "; it was frozen before and stays frozen"
                    } else {
                        ""
                    }
                )?;
            }
            writeln!(out, "  total        {:.2} s", s.total_ms as f64 / 1000.0)?;
            if let Some(k) = &s.kept {
                writeln!(out, "  kept         {}", k.display())?;
            }
            writeln!(out, "  sha256       {}", s.sha256)?;
        }
    }
    Ok(())
}

/// Progress bars on a terminal (one per phase), nothing otherwise.
struct Reporter {
    multi: Option<MultiProgress>,
    bars: Mutex<Vec<(Phase, ProgressBar)>>,
}

impl Reporter {
    fn new(enabled: bool) -> Arc<Reporter> {
        Arc::new(Reporter {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(Vec::new()),
        })
    }

    fn bar(&self, phase: Phase) -> Option<ProgressBar> {
        self.bars
            .lock()
            .ok()?
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, b)| b.clone())
    }

    fn clear(&self) {
        if let Ok(bars) = self.bars.lock() {
            for (_, b) in bars.iter() {
                if !b.is_finished() {
                    b.finish();
                }
            }
        }
    }
}

impl Progress for Reporter {
    fn start(&self, phase: Phase, total: Option<u64>) {
        let Some(multi) = &self.multi else { return };
        if self.bar(phase).is_some() {
            return;
        }
        let (bar, template) = match (phase, total) {
            (Phase::Dump, _) => (
                ProgressBar::new_spinner(),
                "{spinner} dump     {elapsed:>6} freezing and dumping with CRIU",
            ),
            (_, Some(t)) => (
                ProgressBar::new(t),
                "{spinner} {prefix:8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ),
            (_, None) => (
                ProgressBar::new_spinner(),
                "{spinner} {prefix:8} {bytes} {bytes_per_sec}",
            ),
        };
        let bar = multi.add(bar);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(match phase {
            Phase::Dump => "dump",
            Phase::Archive => "archive",
            Phase::Upload => "upload",
        });
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut bars) = self.bars.lock() {
            bars.push((phase, bar));
        }
    }

    fn advance(&self, phase: Phase, bytes: u64) {
        if let Some(b) = self.bar(phase) {
            b.inc(bytes);
        }
    }

    fn finish(&self, phase: Phase) {
        if let Some(b) = self.bar(phase) {
            b.finish();
        }
    }
}
