//! Ages like `7d`, for `--older-than`.

use std::time::Duration;

use super::StoreError;

/// Parses an age: a whole number followed by one unit, `s`, `m`, `h`, `d` (24 h) or `w`
/// (7 d), e.g. `90s`, `30m`, `24h`, `7d`, `2w`.
pub fn parse_age(input: &str) -> Result<Duration, StoreError> {
    let bad = |reason| {
        tracing::debug!(input, reason, "bad age");
        StoreError::BadAge {
            input: input.to_owned(),
            reason,
        }
    };
    if input.is_empty() {
        return Err(bad("empty"));
    }
    let digits = input.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = input.split_at(digits);
    if number.is_empty() {
        return Err(bad(if input.starts_with(['-', '+']) {
            "no sign allowed"
        } else {
            "missing number"
        }));
    }
    let seconds_per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "" => return Err(bad("missing unit")),
        _ => return Err(bad("unknown unit")),
    };
    let n: u64 = number.parse().map_err(|_| bad("number too large"))?;
    let secs = n
        .checked_mul(seconds_per_unit)
        .ok_or_else(|| bad("number too large"))?;
    Ok(Duration::from_secs(secs))
}
