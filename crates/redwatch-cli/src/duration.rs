//! Durations on the command line: `10s`, `250ms`, `1.5s`, `2m`, `1h`.

use std::time::Duration;

use anyhow::{Context, bail};

/// Parses a duration such as `10s`, `250ms`, `1.5s`, `2m`, `1h`, `500us`; a bare number is seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .with_context(|| format!("invalid duration {text:?} (expected e.g. 10s, 250ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            bail!("invalid duration {text:?}: unknown unit {other:?} (use ns, us, ms, s, m, h)")
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .with_context(|| format!("duration {text:?} is out of range"))
}

/// [`parse_duration`] for clap's `value_parser`.
pub fn duration_flag(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|err| format!("{err:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        for bad in ["", "s", "-1s", "10x", "1e400s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
