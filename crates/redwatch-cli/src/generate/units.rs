//! Durations in Prometheus syntax and numbers printed for PromQL.

use std::fmt;
use std::str::FromStr;

/// A duration that parses and prints in Prometheus syntax (`250ms`, `5m`, `1h30m`, `30d`, `1w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PromDuration {
    millis: u64,
}

const UNITS: [(&str, u64); 6] = [
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl PromDuration {
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }
    /// Milliseconds.
    pub fn millis(self) -> u64 {
        self.millis
    }
    /// Seconds, as a float.
    pub fn secs_f64(self) -> f64 {
        self.millis as f64 / 1000.0
    }
    /// `self * factor`.
    pub fn times(self, factor: u64) -> Self {
        Self::from_millis(self.millis.saturating_mul(factor))
    }
    /// `self - other`, at least 0.
    pub fn minus(self, other: Self) -> Self {
        Self::from_millis(self.millis.saturating_sub(other.millis))
    }
    /// `self + other`.
    pub fn plus(self, other: Self) -> Self {
        Self::from_millis(self.millis.saturating_add(other.millis))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.millis;
        // Weeks only when exact: `30d` reads better than `4w2d`.
        let week = UNITS[0].1;
        let units = if rest.is_multiple_of(week) {
            &UNITS[..]
        } else {
            &UNITS[1..]
        };
        for &(unit, size) in units {
            let count = rest / size;
            if count > 0 {
                write!(f, "{count}{unit}")?;
                rest -= count * size;
            }
        }
        Ok(())
    }
}

impl FromStr for PromDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("invalid duration {text:?} (expected e.g. 250ms, 15s, 5m, 1h30m, 30d)");
        if text.is_empty() {
            return Err(invalid());
        }
        let mut millis: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid());
            }
            let count: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let size = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, size)| *size)
                .ok_or_else(invalid)?;
            millis = count
                .checked_mul(size)
                .and_then(|part| millis.checked_add(part))
                .ok_or_else(invalid)?;
        }
        Ok(Self { millis })
    }
}

/// Prints a float the way a person writes it in PromQL: no binary noise (`0.001`, not
/// `0.0010000000000000009`), no exponent for the magnitudes used here.
pub fn num(value: f64) -> String {
    let rounded = format!("{value:.10}");
    let trimmed = rounded.trim_end_matches('0').trim_end_matches('.');
    if trimmed.is_empty() || trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_in_prometheus_syntax() {
        for text in ["250ms", "15s", "5m", "1h30m", "30d", "1w", "3d", "9d", "2w"] {
            let parsed: PromDuration = text.parse().expect(text);
            assert_eq!(parsed.to_string(), text);
        }
        let ninety: PromDuration = "90m".parse().expect("90m");
        assert_eq!(ninety.to_string(), "1h30m");
        assert_eq!(ninety.millis(), 5_400_000);
    }

    #[test]
    fn bad_durations_are_rejected() {
        for text in ["", "5", "m", "5x", "1.5h", "-5m", "5m3"] {
            assert!(text.parse::<PromDuration>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn numbers_print_without_float_noise() {
        assert_eq!(num(1.0 - 0.999), "0.001");
        assert_eq!(num(14.4 * 0.001), "0.0144");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(10.0), "10");
        assert_eq!(num(0.0), "0");
    }
}
