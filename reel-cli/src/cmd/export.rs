//! `reel export checkpoint`: a fresh (or stored, `--id`) checkpoint as one archive, to a file,
//! a directory, standard output or S3.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reel_core::checkpoint::{Outcome, Output as Sink, Target};
use reel_core::export::s3::{S3Options, Sse};
use reel_core::export::{Destination, ExportError, ExportSpec, Exported, Phase, Progress};
use serde::Serialize;

use crate::cli::{Cli, ExportCheckpoint, Output};
use crate::hints::usage;
use crate::output::human_bytes;

/// What `-o json` prints (one object), and the table shows.
#[derive(Debug, Serialize)]
struct Summary {
    id: String,
    /// The method that took a fresh checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
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
    /// What the dump kept that a restore must know about (fresh checkpoints only).
    #[serde(skip_serializing_if = "Option::is_none")]
    captured: Option<reel_core::checkpoint::Captured>,
}

/// The library's usage errors, in the terms of the command line.
pub fn flag_error(e: ExportError) -> anyhow::Error {
    let msg = match &e {
        ExportError::BadDestination { dest, reason } => {
            format!("invalid --dest {dest:?}: {reason}")
        }
        ExportError::Contradiction {
            dest,
            implied,
            requested,
        } => format!(
            "--dest {dest:?} names a {implied} archive but --compress {requested} was given"
        ),
        ExportError::UnknownLevel { value } => {
            format!("unknown --compress {value:?}: use none, fast, default, better or best")
        }
        ExportError::S3OptionsWithoutS3 => "--s3-* options need an s3:// --dest".into(),
        ExportError::UnknownSse { value } => {
            format!("unknown --s3-sse {value:?}: use AES256 or aws:kms")
        }
        ExportError::KmsKeyWithoutKms => "--s3-sse-kms-key-id needs --s3-sse aws:kms".into(),
        ExportError::BadEndpoint { endpoint } => {
            format!("--s3-endpoint {endpoint:?} must be an http:// or https:// URL")
        }
        ExportError::BadCaBundle { path, reason } => {
            format!("--s3-ca {}: {reason}", path.display())
        }
        _ => return e.into(),
    };
    usage(msg)
}

/// `--dest`, `--compress`, `--keep`, `--staging-dir` and the `--s3-*` flags as an export spec.
fn spec(args: &ExportCheckpoint) -> anyhow::Result<ExportSpec> {
    let destination = Destination::parse(args.dest.as_deref()).map_err(flag_error)?;
    let sse = args
        .s3_sse
        .as_deref()
        .map(Sse::parse)
        .transpose()
        .map_err(flag_error)?;
    let spec = ExportSpec {
        destination,
        compress: args.compress.clone(),
        s3: S3Options {
            region: args.s3_region.clone(),
            endpoint: args.s3_endpoint.clone(),
            sse,
            sse_kms_key_id: args.s3_sse_kms_key_id.clone(),
            ca_bundle: args.s3_ca.clone(),
            max_attempts: std::env::var("REEL_S3_MAX_ATTEMPTS")
                .ok()
                .and_then(|v| v.parse().ok()),
        },
        keep: args.keep,
        staging_dir: args.staging_dir.clone(),
    };
    spec.validate().map_err(flag_error)?;
    Ok(spec)
}

pub fn run(cli: &Cli, args: &ExportCheckpoint) -> anyhow::Result<()> {
    if args.id.is_none() && args.pod.is_none() {
        return Err(usage(
            "name the pod to checkpoint (`reel export checkpoint POD -n NS --dest DEST`) or a stored checkpoint with --id",
        ));
    }
    let started = std::time::Instant::now();
    let spec = spec(args)?;
    let reporter = Reporter::new(!cli.quiet && std::io::stderr().is_terminal());
    let summary = match &args.id {
        Some(id) => {
            let store = super::open_store(cli)?;
            if let Some(r) = store.remote(id) {
                anyhow::bail!(
                    "checkpoint {id} was taken by the kubelet on node {} and its archive is there ({}): exporting it needs reel on {} (`reel export checkpoint --id` cannot fetch it from here)",
                    r.node,
                    r.path,
                    r.node
                );
            }
            let exported = reel_core::export::export_stored(&store, id, &spec, reporter.clone())
                .with_context(|| format!("exporting {id}"))?;
            Summary {
                total_ms: started.elapsed().as_millis() as u64,
                ..Summary::from_exported(id.clone(), &exported)
            }
        }
        None => {
            let opts = super::create::options(&args.dump, &args.methods)?;
            super::require_root_for(opts.method)?;
            let cp = super::checkpointer(cli, &args.methods)?;
            let target = Target {
                namespace: args.namespace.clone().unwrap_or_else(|| "default".into()),
                pod: args.pod.clone().unwrap_or_default(),
                container: args.container.clone(),
            };
            let outcome = super::with_target(
                cp.run(
                    &target,
                    &opts,
                    &Sink::Export(Box::new(spec.clone())),
                    reporter.clone(),
                ),
                &target,
            )?;
            Summary::from_outcome(&outcome)?
        }
    };
    reporter.clear();
    print(args.output, &summary, &spec.destination, cli.quiet)
}

impl Summary {
    fn from_exported(id: String, e: &Exported) -> Summary {
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
            frozen_ms: None,
            criu_frozen_ms: None,
            total_ms: 0,
            namespace: None,
            pod: None,
            container: None,
            kept: e.kept.as_ref().map(|k| k.path.clone()),
            left_frozen: false,
            captured: None,
            method: None,
        }
    }

    fn from_outcome(o: &Outcome) -> anyhow::Result<Summary> {
        let archive = o
            .archive
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("checkpoint {} has no archive here", o.id))?;
        Ok(Summary {
            method: Some(o.method.to_string()),
            frozen_ms: Some(o.frozen_ms),
            criu_frozen_ms: o.criu_frozen_ms,
            total_ms: o.total_ms,
            namespace: Some(o.namespace.clone()),
            pod: Some(o.pod.clone()),
            container: Some(o.container.clone()),
            kept: o.stored.as_ref().map(|k| k.path.clone()),
            left_frozen: o.left_frozen,
            captured: Some(o.captured),
            ..Summary::from_exported(o.id.clone(), archive)
        })
    }
}

fn print(format: Output, s: &Summary, dest: &Destination, quiet: bool) -> anyhow::Result<()> {
    // With the archive on stdout, the summary goes to stderr.
    let mut out: Box<dyn Write> = if *dest == Destination::Stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    crate::output::print_to(&mut out, format, s, |out| {
        writeln!(out, "Checkpoint {} exported to {}", s.id, s.destination)?;
        if let Some(m) = &s.method {
            writeln!(out, "  method       {m}")?;
        }
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
        if !quiet {
            for line in s.captured.iter().flat_map(crate::hints::restore) {
                eprintln!("  {line}");
            }
        }
        Ok(())
    })
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
