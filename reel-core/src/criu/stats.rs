//! CRIU's dump statistics (`stats-dump` in the work dir), decoded with the generated
//! `stats_entry` type.
//!
//! The file is a CRIU image: the service magic `0x55105940`, the stats magic `0x57093306`,
//! then one entry as a little-endian `u32` length followed by the protobuf message.

use std::path::Path;
use std::time::Duration;

use prost::Message;

use super::error::{CriuError, Request};
use super::pb;

const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
const STATS_MAGIC: u32 = 0x5709_3306;

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

/// Decodes a CRIU stats image (`stats-dump` or `stats-restore`).
pub fn decode_stats_image(bytes: &[u8]) -> Result<pb::StatsEntry, String> {
    let mut rest = bytes;
    let mut word = |what: &str| -> Result<u32, String> {
        let (head, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("truncated stats image (no {what})"))?;
        rest = tail;
        Ok(u32::from_le_bytes(*head))
    };
    let mut magic = word("magic")?;
    if magic == IMG_SERVICE_MAGIC || magic == IMG_COMMON_MAGIC {
        magic = word("magic")?;
    }
    if magic != STATS_MAGIC {
        return Err(format!("not a stats image (magic {magic:#010x})"));
    }
    let len = word("entry size")? as usize;
    let body = rest.get(..len).ok_or_else(|| {
        format!(
            "truncated stats image ({len} bytes announced, {} left)",
            rest.len()
        )
    })?;
    pb::StatsEntry::decode(body).map_err(|e| format!("bad stats entry: {e}"))
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
    let bytes = std::fs::read(path)
        .map_err(|e| CriuError::io(request, "read the dump statistics", display, e))?;
    let invalid = |m: String| {
        CriuError::io(
            request,
            "decode the dump statistics",
            display,
            std::io::Error::new(std::io::ErrorKind::InvalidData, m),
        )
    };
    let entry = decode_stats_image(&bytes).map_err(invalid)?;
    DumpStats::from_entry(&entry).ok_or_else(|| invalid("the stats image has no dump entry".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let body = e.encode_to_vec();
        let mut img = Vec::new();
        img.extend_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes());
        img.extend_from_slice(&STATS_MAGIC.to_le_bytes());
        img.extend_from_slice(&(body.len() as u32).to_le_bytes());
        img.extend_from_slice(&body);
        let s = DumpStats::from_entry(&decode_stats_image(&img).unwrap()).unwrap();
        assert_eq!(s.frozen_time, Some(Duration::from_micros(2000)));
        assert_eq!(s.pages_written, Some(50));
        assert!(decode_stats_image(&img[..6]).is_err());
        assert!(decode_stats_image(&[0; 12]).is_err());
    }
}
