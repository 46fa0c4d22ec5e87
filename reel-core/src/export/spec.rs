//! An export request ([`ExportSpec`]): where the archive goes and how it is encoded, checked
//! before anything runs, and the sinks it opens.

use std::path::PathBuf;
use std::sync::Arc;

use super::local::{LocalFile, Stdout};
use super::s3::{S3Client, S3Options};
use super::{dest, Destination, Encoding, ExportError, Exported, Level, Plan, Progress, Sink};
use crate::store::Store;

/// Where an export goes and how it is encoded.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// The destination (file, directory, standard output, S3).
    pub destination: Destination,
    /// The compression level by name (`none`, `fast`, `default`, `better`, `best`); `None`:
    /// what the destination's name implies, else `default`.
    pub compress: Option<String>,
    /// How to reach S3 (only for an S3 destination).
    pub s3: S3Options,
    /// Also commit the checkpoint to the store (fresh checkpoints only).
    pub keep: bool,
    /// Where CRIU writes its images before they are archived (default: the store directory).
    pub staging_dir: Option<PathBuf>,
}

impl ExportSpec {
    /// An export to `destination` with the defaults.
    pub fn new(destination: Destination) -> ExportSpec {
        ExportSpec {
            destination,
            compress: None,
            s3: S3Options::default(),
            keep: false,
            staging_dir: None,
        }
    }

    /// Checks everything that can be checked before a checkpoint is taken: the destination's
    /// name against the compression (whatever the id will be) and the S3 options.
    pub fn validate(&self) -> Result<(), ExportError> {
        dest::plan(&self.destination, self.compress.as_deref(), "x")?;
        if !matches!(self.destination, Destination::S3 { .. }) {
            if self.s3.is_set() {
                return Err(ExportError::S3OptionsWithoutS3);
            }
            return Ok(());
        }
        self.s3.validate()
    }

    /// The final name and level for checkpoint `id`.
    pub fn plan(&self, id: &str) -> Result<(Plan, Level), ExportError> {
        dest::plan(&self.destination, self.compress.as_deref(), id)
    }

    /// The S3 client of an S3 destination, after checking that the bucket exists and the
    /// credentials may use it (before any dump starts).
    pub fn connect(&self) -> Result<Option<S3Client>, ExportError> {
        let Destination::S3 { bucket, .. } = &self.destination else {
            return Ok(None);
        };
        let client = S3Client::connect(&self.s3)?;
        client.check_bucket(bucket)?;
        Ok(Some(client))
    }
}

/// Opens the sink of `plan`. `expected` (the archive's approximate size) sizes S3 parts.
pub(crate) fn open_sink(
    plan: &Plan,
    s3: Option<&S3Client>,
    expected: Option<u64>,
    progress: Arc<dyn Progress>,
) -> Result<Box<dyn Sink>, ExportError> {
    Ok(match plan {
        Plan::File(p) => Box::new(LocalFile::create(p)?),
        Plan::Stdout => Box::new(Stdout::new()),
        Plan::S3 { bucket, key } => {
            let client = s3.ok_or(ExportError::S3Setup("no S3 client".into()))?;
            Box::new(client.upload(bucket, key, expected, progress)?)
        }
    })
}

/// Exports the stored checkpoint `id` (its plain tar, re-encoded) as `spec` says.
pub fn export_stored(
    store: &Store,
    id: &str,
    spec: &ExportSpec,
    progress: Arc<dyn Progress>,
) -> crate::Result<Exported> {
    spec.validate()?;
    let _scope = crate::signals::cancellable();
    let path = store.archive_path(id);
    if !path.is_file() {
        return Err(ExportError::NoSuchCheckpoint {
            id: id.to_owned(),
            store: store.root().to_owned(),
        }
        .into());
    }
    let s3 = spec.connect()?;
    let (plan, level) = spec.plan(id)?;
    let expected = std::fs::metadata(&path).map(|m| m.len()).ok();
    let sink = open_sink(&plan, s3.as_ref(), expected, progress.clone())?;
    let mut enc = Encoding::new(level);
    enc.progress = progress;
    super::write_stored(&path, sink, &enc)
}
