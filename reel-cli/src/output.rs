//! Printing results: aligned tables for people, JSON and YAML for scripts.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

use crate::cli::Output;

/// Print `value` as JSON or YAML, or call `table` for the table format.
pub fn print<T: Serialize>(
    format: Output,
    value: &T,
    table: impl FnOnce() -> Table,
) -> anyhow::Result<()> {
    print_to(&mut std::io::stdout().lock(), format, value, |out| {
        table().write(out)
    })
}

/// Print `value` to `out` as JSON or YAML, or as `text` writes it for the table format.
pub fn print_to<T: Serialize>(
    out: &mut dyn Write,
    format: Output,
    value: &T,
    text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    match format {
        Output::Json => {
            serde_json::to_writer_pretty(&mut *out, value).context("writing JSON")?;
            writeln!(out)?;
        }
        Output::Yaml => {
            yaml_serde::to_writer(&mut *out, value).context("writing YAML")?;
        }
        Output::Table => text(out)?,
    }
    Ok(())
}

/// A table with a header row, columns padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Table {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| -> String {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    let pad = widths[i].saturating_sub(c.chars().count()) + 3;
                    s.push_str(c);
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
            s.trim_end().to_string()
        };
        writeln!(out, "{}", line(self.header.clone()))?;
        for r in &self.rows {
            writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

/// Bytes for people: 1.2 GiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A size as `--ghost-limit` takes it, rounded up to whole MiB: `100M`.
pub fn size_flag(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(1 << 20))
}

/// Parses a size: bytes, or a number with K, M, G or T (powers of 1024; `Ki`, `KiB`, `KB` and
/// lower case also).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("128M"), Some(128 << 20));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(size_flag(100 << 20), "100M");
        assert_eq!(size_flag((100 << 20) + 1), "101M");
    }
}
