//! Prometheus's template functions `humanize`, `humanizeDuration` and `humanizePercentage`, so rule
//! tests can state the annotations Prometheus renders from an alert's value.

/// Go's `%.4g`: four significant digits, trailing zeros dropped, exponent outside 1e-4..1e4.
pub fn g4(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let scientific = format!("{value:.3e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..4).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exponent.abs())
    } else {
        let decimals = usize::try_from(3 - exponent).unwrap_or(0);
        trim_zeros(&format!("{value:.decimals$}"))
    }
}

fn trim_zeros(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text.to_owned()
    }
}

const SMALL_PREFIXES: [&str; 8] = ["m", "u", "n", "p", "f", "a", "z", "y"];

/// `humanize`: SI prefixes, four significant digits.
pub fn humanize(mut value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return g4(value);
    }
    let mut prefix = "";
    if value.abs() >= 1.0 {
        for next in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if value.abs() < 1000.0 {
                break;
            }
            prefix = next;
            value /= 1000.0;
        }
    } else {
        for next in SMALL_PREFIXES {
            if value.abs() >= 1.0 {
                break;
            }
            prefix = next;
            value *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(value))
}

/// `humanizeDuration`: seconds as `1d 2h 3m 4s`, `1.5s` or `250ms`.
pub fn humanize_duration(mut value: f64) -> String {
    if !value.is_finite() {
        return g4(value);
    }
    if value == 0.0 {
        return "0s".to_owned();
    }
    if value.abs() >= 1.0 {
        let sign = if value < 0.0 { "-" } else { "" };
        value = value.abs();
        // Go truncates to whole seconds here.
        let whole = value as i64;
        let (days, hours, minutes, seconds) = (
            whole / 86_400,
            whole / 3600 % 24,
            whole / 60 % 60,
            whole % 60,
        );
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", g4(value))
        };
    }
    let mut prefix = "";
    for next in SMALL_PREFIXES {
        if value.abs() >= 1.0 {
            break;
        }
        prefix = next;
        value *= 1000.0;
    }
    format!("{}{prefix}s", g4(value))
}

/// `humanizePercentage`: a ratio as a percentage with four significant digits.
pub fn humanize_percentage(value: f64) -> String {
    format!("{}%", g4(value * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_formatting() {
        assert_eq!(g4(50.72), "50.72");
        assert_eq!(g4(0.1), "0.1");
        assert_eq!(g4(12345.0), "1.234e+04");
        assert_eq!(g4(0.00001234), "1.234e-05");
        assert_eq!(g4(100.0), "100");
        assert_eq!(humanize(20.0), "20");
        assert_eq!(humanize(1500.0), "1.5k");
        assert_eq!(humanize(0.25), "250m");
        assert_eq!(humanize_duration(0.1), "100ms");
        assert_eq!(humanize_duration(1.0), "1s");
        assert_eq!(humanize_duration(90.0), "1m 30s");
        assert_eq!(humanize_percentage(0.5072), "50.72%");
        assert_eq!(humanize_percentage(0.0045), "0.45%");
        assert_eq!(humanize_percentage(0.09999999999999999), "10%");
    }
}
