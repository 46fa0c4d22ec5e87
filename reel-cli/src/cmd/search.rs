//! `reel search checkpoint <ID|PATH> <PATTERN>`: one call to `reel_core::inspect::search`,
//! rendered. Exits 3 when nothing is found (through [`crate::hints::NothingFound`]).

use std::io::Write;

use anyhow::Context;
use reel_core::inspect::search::validate;
use reel_core::inspect::{self, Pattern, PatternKind, RegionKind, SearchOptions};

use crate::cli::{Cli, Output, SearchCheckpoint};
use crate::hints::{usage, NothingFound};
use crate::output::{print_to, Table};

fn parse_addr(s: &str) -> Option<u64> {
    let s = s.trim();
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u64::from_str_radix(h, 16).ok()
}

fn options(args: &SearchCheckpoint) -> anyhow::Result<(Pattern, SearchOptions)> {
    let kind = if args.regex {
        PatternKind::Regex
    } else if args.hex {
        PatternKind::Hex
    } else if args.utf16 {
        PatternKind::Utf16
    } else {
        PatternKind::Literal
    };
    let pattern = Pattern {
        text: args.pattern.clone().unwrap_or_default(),
        kind,
        ignore_case: args.ignore_case,
    };
    if !args.strings {
        if args.min_len.is_some() {
            return Err(usage("--min-len goes with --strings"));
        }
        validate(&pattern).map_err(|e| usage(e.to_string()))?;
    } else if args.min_len == Some(0) {
        return Err(usage("--min-len: at least 1"));
    }
    let mut regions = Vec::new();
    for r in &args.region {
        regions.push(
            r.parse::<RegionKind>()
                .map_err(|e| usage(format!("--region: {e}")))?,
        );
    }
    if let Some(p) = &args.perms {
        if p.is_empty() || p.len() > 4 || !p.chars().all(|c| "rwxps-".contains(c)) {
            return Err(usage(format!(
                "--perms {p:?}: write permissions as in /proc/PID/maps: `r-x` (exactly) or `wx` (at least)"
            )));
        }
    }
    let address = match &args.address {
        None => None,
        Some(a) => {
            let range = a
                .split_once('-')
                .and_then(|(lo, hi)| Some((parse_addr(lo)?, parse_addr(hi)?)))
                .filter(|(lo, hi)| lo < hi)
                .ok_or_else(|| {
                    usage(format!(
                        "--address {a:?}: give a non-empty range 0xSTART-0xEND"
                    ))
                })?;
            Some(range)
        }
    };
    if args.context > inspect::search::MAX_CONTEXT {
        return Err(usage(format!(
            "--context {}: at most {}",
            args.context,
            inspect::search::MAX_CONTEXT
        )));
    }
    Ok((
        pattern,
        SearchOptions {
            pids: args.pid.clone(),
            regions,
            perms: args.perms.clone(),
            address,
            max_hits: args.max_hits,
            count_only: args.count,
            context: args.context,
        },
    ))
}

/// Context bytes as `hex  |printable|`.
fn shown(hex_text: &str) -> String {
    let bytes: Vec<u8> = (0..hex_text.len() / 2)
        .filter_map(|i| hex_text.get(2 * i..2 * i + 2))
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    let printable: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{}  |{printable}|", hex_text)
}

pub fn run(cli: &Cli, args: &SearchCheckpoint) -> anyhow::Result<()> {
    let (pattern, opts) = options(args)?;
    let src = super::open_checkpoint(cli, &args.checkpoint, args.no_verify)?;
    if args.no_verify {
        eprintln!("WARNING: --no-verify: members are not checked against the manifest");
    }
    if args.strings {
        return strings(&src, args, &opts);
    }
    let res = inspect::search(&src, &pattern, &opts)
        .with_context(|| format!("searching {}", src.path().display()))?;
    let mut out = std::io::stdout().lock();
    print_to(&mut out, args.output, &res, |w| {
        if args.count {
            return counts(w, &res.tally, "HITS");
        }
        if res.hits.is_empty() {
            return writeln!(w, "no hits");
        }
        let mut t = Table::new(vec![
            "PID", "COMM", "ADDRESS", "REGION", "PERMS", "PATH", "OFFSET", "CONTEXT",
        ]);
        for h in &res.hits {
            let p = &h.place;
            let mut row = vec![p.pid.to_string(), p.comm.clone()];
            row.extend(where_cells(p));
            row.extend([format!("{:#x}", p.offset), shown(&h.context_hex)]);
            t.row(row);
        }
        t.write(w)
    })?;
    finish(&mut out, args.output, &res.tally, "hits")
}

/// `ADDRESS REGION PERMS PATH` of a hit or a string (`-` for no path).
fn where_cells(p: &inspect::Place) -> [String; 4] {
    let path = if p.path.is_empty() {
        "-".into()
    } else {
        p.path.clone()
    };
    [p.address.clone(), p.region.clone(), p.perms.clone(), path]
}

/// `--count`: `PID N` per process and the total.
fn counts(
    w: &mut dyn Write,
    tally: &inspect::search::Tally,
    what: &'static str,
) -> std::io::Result<()> {
    let mut t = Table::new(vec!["PID", what]);
    for (pid, n) in &tally.per_pid {
        t.row(vec![pid.to_string(), n.to_string()]);
    }
    t.row(vec!["total".into(), tally.count.to_string()]);
    t.write(w)
}

/// After a table: where the listing stopped; then exit 3 ([`NothingFound`]) when nothing was.
fn finish(
    out: &mut impl Write,
    output: Output,
    tally: &inspect::search::Tally,
    what: &str,
) -> anyhow::Result<()> {
    if tally.truncated && output == Output::Table {
        writeln!(out, "(stopped at --max-hits {})", tally.count)?;
    }
    if tally.unlisted > 0 && output == Output::Table {
        writeln!(
            out,
            "({} {what}, {} not listed: --count for counts per process, --max-hits N to list more)",
            tally.count, tally.unlisted
        )?;
    }
    out.flush()?;
    if !tally.found() {
        return Err(anyhow::Error::new(NothingFound));
    }
    Ok(())
}

/// `--strings`: `PID ADDRESS REGION PERMS PATH STRING`, as `strings -t x` per process.
fn strings(
    src: &inspect::CheckpointSource,
    args: &SearchCheckpoint,
    opts: &SearchOptions,
) -> anyhow::Result<()> {
    let res = inspect::strings(
        src,
        args.min_len.unwrap_or(inspect::search::DEFAULT_MIN_LEN),
        opts,
    )
    .with_context(|| format!("listing the strings of {}", src.path().display()))?;
    let mut out = std::io::stdout().lock();
    print_to(&mut out, args.output, &res, |w| {
        if args.count {
            return counts(w, &res.tally, "STRINGS");
        }
        if res.strings.is_empty() {
            return writeln!(w, "no strings of {} bytes or more", res.min_len);
        }
        let mut t = Table::new(vec!["PID", "ADDRESS", "REGION", "PERMS", "PATH", "STRING"]);
        for h in &res.strings {
            let mut shown: String = h.string.replace('\t', " ");
            if h.cut {
                shown.push_str(&format!("... ({} bytes)", h.len));
            }
            let mut row = vec![h.place.pid.to_string()];
            row.extend(where_cells(&h.place));
            row.push(shown);
            t.row(row);
        }
        t.write(w)
    })?;
    finish(&mut out, args.output, &res.tally, "strings")
}
