//! CRIU's dump statistics (`stats-dump` in the work dir): a CRIU image of one `stats_entry`,
//! read with [`super::image`].

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use super::error::{CriuError, Request};
use super::image::{ImageError, ImageKind, ImageReader};
use super::pb;

/// What CRIU measured during a dump (or pre-dump). Every field is `None` when CRIU's
/// `stats-dump` could not be read after a successful dump (the dump itself stands; the
/// reason is logged): CRIU always writes all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Time spent freezing the tree.
    pub freezing_time: Option<Duration>,
    /// Time the tree stayed frozen.
    pub frozen_time: Option<Duration>,
    /// Time spent collecting memory.
    pub memdump_time: Option<Duration>,
    /// Time spent writing memory.
    pub memwrite_time: Option<Duration>,
    /// Pages looked at.
    pub pages_scanned: Option<u64>,
    /// Pages not written because the parent image has them.
    pub pages_skipped_parent: Option<u64>,
    /// Pages written.
    pub pages_written: Option<u64>,
    /// Pages left for lazy restore.
    pub pages_lazy: Option<u64>,
    /// Time spent resolving inotify paths.
    pub irmap_resolve: Option<Duration>,
}

impl DumpStats {
    /// The dump part of a decoded `stats_entry` (`None` when it has none).
    pub fn from_entry(entry: &pb::StatsEntry) -> Option<DumpStats> {
        let d = entry.dump.as_ref()?;
        let us = |v: u32| Duration::from_micros(u64::from(v));
        Some(DumpStats {
            freezing_time: Some(us(d.freezing_time)),
            frozen_time: Some(us(d.frozen_time)),
            memdump_time: Some(us(d.memdump_time)),
            memwrite_time: Some(us(d.memwrite_time)),
            pages_scanned: Some(d.pages_scanned),
            pages_skipped_parent: Some(d.pages_skipped_parent),
            pages_written: Some(d.pages_written),
            pages_lazy: Some(d.pages_lazy),
            irmap_resolve: d.irmap_resolve.map(us),
        })
    }
}

/// Decodes a CRIU stats image (`stats-dump` or `stats-restore`) in memory, named `name` in
/// errors.
pub fn decode_stats_image(bytes: &[u8], name: &str) -> Result<pb::StatsEntry, ImageError> {
    stats_entry(ImageReader::from_bytes(bytes, name)?)
}

fn stats_entry<R: Read>(mut image: ImageReader<R>) -> Result<pb::StatsEntry, ImageError> {
    image.expect_kind(ImageKind::Stats)?;
    let at = image.offset();
    match image.next_entry()? {
        Some(entry) => entry.decode(),
        None => Err(ImageError::Truncated {
            name: image.name().to_string(),
            offset: at,
            what: "stats_entry",
            wanted: 1,
            got: 0,
        }),
    }
}

/// Reads and decodes a `stats-dump` file.
pub fn read_dump_stats(path: &Path) -> Result<DumpStats, CriuError> {
    read_dump_stats_as(Request::Dump, path, path)
}

/// Reads `path`, naming it `display` in errors.
pub(crate) fn read_dump_stats_as(
    request: Request,
    path: &Path,
    display: &Path,
) -> Result<DumpStats, CriuError> {
    let file = File::open(path)
        .map_err(|e| CriuError::io(request, "read the dump statistics", display, e))?;
    let invalid = |m: String| {
        CriuError::io(
            request,
            "decode the dump statistics",
            display,
            std::io::Error::new(std::io::ErrorKind::InvalidData, m),
        )
    };
    let image = ImageReader::new(BufReader::new(file), display.display().to_string())
        .map_err(|e| invalid(e.to_string()))?;
    let entry = stats_entry(image).map_err(|e| invalid(e.to_string()))?;
    DumpStats::from_entry(&entry).ok_or_else(|| invalid("the stats image has no dump entry".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criu::image::ImageWriter;

    #[test]
    fn round_trip() {
        let e = pb::StatsEntry {
            dump: Some(criu_sys::proto::DumpStatsEntry {
                freezing_time: 10,
                frozen_time: 2000,
                memdump_time: 3,
                memwrite_time: 4,
                pages_scanned: 100,
                pages_skipped_parent: 0,
                pages_written: 50,
                pages_lazy: 0,
                ..Default::default()
            }),
            restore: None,
        };
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Stats, "stats-dump").unwrap();
        w.write_entry(&e).unwrap();
        let img = w.finish().unwrap();
        let s = DumpStats::from_entry(&decode_stats_image(&img, "stats-dump").unwrap()).unwrap();
        assert_eq!(s.frozen_time, Some(Duration::from_micros(2000)));
        assert_eq!(s.pages_written, Some(50));
        assert!(decode_stats_image(&img[..6], "stats-dump").is_err());
        assert!(decode_stats_image(&[0; 12], "stats-dump").is_err());
        let files = ImageWriter::new(Vec::new(), ImageKind::Files, "files.img").unwrap();
        let e = decode_stats_image(&files.finish().unwrap(), "x").unwrap_err();
        assert!(matches!(e, ImageError::WrongKind { .. }), "{e}");
        let empty = ImageWriter::new(Vec::new(), ImageKind::Stats, "stats-dump").unwrap();
        let e = decode_stats_image(&empty.finish().unwrap(), "stats-dump").unwrap_err();
        assert!(matches!(e, ImageError::Truncated { .. }), "{e}");
    }
}
