//! The open-loop arrival schedule: when request number `n` is due.
//!
//! A rate profile λ(t) (requests/s) defines the cumulative count Λ(t) = ∫₀ᵗ λ. Request `n`
//! (0-based) is due at the time `t` where Λ(t) = n, so the schedule is one global, drift-free
//! sequence: lateness of one send never shifts the following ones.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::duration::parse_duration;

/// Parses a request rate: a finite, non-negative number of requests per second.
fn parse_rate(text: &str) -> anyhow::Result<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 0.0)
        .with_context(|| format!("invalid rate {text:?} (expected requests per second, e.g. 100)"))
}

/// `--rate-profile` as given. A ramp without its length lasts the whole run, which is only
/// known once `--duration` is read.
#[derive(Debug, Clone, PartialEq)]
pub enum RateProfileFlag {
    /// A profile that needs nothing else.
    Complete(RateProfile),
    /// `ramp:FROM..TO`, lasting the run.
    RampOverRun(String),
}

impl RateProfileFlag {
    /// Checks the spec; a ramp without OVER is resolved by [`RateProfileFlag::resolve`].
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        if let Ok(profile) = RateProfile::parse(spec, None) {
            return Ok(Self::Complete(profile));
        }
        // Valid with a run length: the ramp takes the run's. Otherwise this error names what
        // is wrong besides the missing length.
        RateProfile::parse(spec, Some(Duration::from_secs(1)))
            .map(|_| Self::RampOverRun(spec.to_owned()))
    }

    /// The profile for a run of `run_length` (the `--duration`).
    pub fn resolve(&self, run_length: Option<Duration>) -> anyhow::Result<RateProfile> {
        match self {
            Self::Complete(profile) => Ok(profile.clone()),
            Self::RampOverRun(spec) => RateProfile::parse(spec, run_length),
        }
    }
}

/// A request rate over time.
#[derive(Debug, Clone, PartialEq)]
pub enum RateProfile {
    /// λ(t) = rate.
    Constant(f64),
    /// Linear from `from` to `to` over `over` seconds, then constant at `to`.
    Ramp { from: f64, to: f64, over: f64 },
    /// Piecewise constant: `(start second, rate)` pairs, first at 0, strictly increasing starts.
    Step(Vec<(f64, f64)>),
    /// Oscillates between `min` and `max` with `period` seconds, starting at the midpoint rising.
    Sine { min: f64, max: f64, period: f64 },
}

impl fmt::Display for RateProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Constant(rate) => write!(f, "constant:{rate}"),
            Self::Ramp { from, to, over } => write!(f, "ramp:{from}..{to}:{over}s"),
            Self::Step(steps) => {
                write!(f, "step:")?;
                for (i, (at, rate)) in steps.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{rate}@{at}s")?;
                }
                Ok(())
            }
            Self::Sine { min, max, period } => write!(f, "sine:{min}..{max}:{period}s"),
        }
    }
}

impl RateProfile {
    /// Parses `--rate-profile`. `run_length` (the `--duration`) is the default ramp length.
    pub fn parse(spec: &str, run_length: Option<Duration>) -> anyhow::Result<Self> {
        let context = || format!("{spec:?}");
        let (kind, rest) = spec.split_once(':').with_context(|| {
            format!(
                "{spec:?}: expected ramp:FROM..TO[:OVER], step:RATE@AT,... or sine:MIN..MAX:PERIOD"
            )
        })?;
        let profile = match kind.trim() {
            "ramp" => {
                let mut parts = rest.splitn(2, ':');
                let (from, to) =
                    parse_range(parts.next().unwrap_or_default()).with_context(context)?;
                let over = match parts.next() {
                    Some(over) => parse_duration(over).with_context(context)?,
                    None => run_length.with_context(|| {
                        format!("{spec:?}: give the ramp length (ramp:FROM..TO:OVER) or --duration")
                    })?,
                };
                if over.is_zero() {
                    bail!("{spec:?}: ramp length must be > 0");
                }
                Self::Ramp {
                    from,
                    to,
                    over: over.as_secs_f64(),
                }
            }
            "step" => {
                let mut steps = Vec::new();
                for step in rest.split(',') {
                    let (rate, at) = step
                        .split_once('@')
                        .with_context(|| format!("{spec:?}: step {step:?} is not RATE@AT"))?;
                    let rate = parse_rate(rate).with_context(context)?;
                    let at = parse_duration(at).with_context(context)?.as_secs_f64();
                    if let Some(&(previous, _)) = steps.last()
                        && at <= previous
                    {
                        bail!("{spec:?}: step times must increase");
                    }
                    steps.push((at, rate));
                }
                if steps.first().map(|s| s.0) != Some(0.0) {
                    bail!("{spec:?}: the first step must start at 0s");
                }
                Self::Step(steps)
            }
            "sine" => {
                let (range, period) = rest
                    .split_once(':')
                    .with_context(|| format!("{spec:?}: expected sine:MIN..MAX:PERIOD"))?;
                let (min, max) = parse_range(range).with_context(context)?;
                if max < min {
                    bail!("{spec:?}: MIN must not exceed MAX");
                }
                let period = parse_duration(period).with_context(context)?;
                if period.is_zero() {
                    bail!("{spec:?}: period must be > 0");
                }
                Self::Sine {
                    min,
                    max,
                    period: period.as_secs_f64(),
                }
            }
            other => bail!("{spec:?}: unknown shape {other:?} (use ramp, step or sine)"),
        };
        if profile.peak_rate() <= 0.0 {
            bail!("{spec:?}: the rate is zero throughout");
        }
        Ok(profile)
    }

    /// λ(t) in requests per second.
    pub fn rate_at(&self, t: f64) -> f64 {
        match self {
            Self::Constant(rate) => *rate,
            Self::Ramp { from, to, over } => from + (to - from) * (t / over).clamp(0.0, 1.0),
            Self::Step(steps) => steps
                .iter()
                .rev()
                .find(|(at, _)| *at <= t)
                .map_or(0.0, |(_, rate)| *rate),
            Self::Sine { min, max, period } => {
                let (mid, amplitude) = ((min + max) / 2.0, (max - min) / 2.0);
                mid + amplitude * (std::f64::consts::TAU * t / period).sin()
            }
        }
    }

    /// Λ(t): the number of requests due in `[0, t)`, as a real number.
    pub fn cumulative(&self, t: f64) -> f64 {
        match self {
            Self::Constant(rate) => rate * t,
            Self::Ramp { from, to, over } => {
                let ramp_part = t.min(*over);
                let during = from * ramp_part + (to - from) * ramp_part * ramp_part / (2.0 * over);
                during + to * (t - over).max(0.0)
            }
            Self::Step(steps) => {
                let mut total = 0.0;
                for (i, (at, rate)) in steps.iter().enumerate() {
                    if t <= *at {
                        break;
                    }
                    let end = steps.get(i + 1).map_or(t, |next| next.0.min(t));
                    total += rate * (end - at);
                }
                total
            }
            Self::Sine { min, max, period } => {
                let (mid, amplitude) = ((min + max) / 2.0, (max - min) / 2.0);
                let omega = std::f64::consts::TAU / period;
                mid * t + amplitude / omega * (1.0 - (omega * t).cos())
            }
        }
    }

    /// The same shape at `factor` times the rate (one of N shards: 1/N).
    pub fn scaled(&self, factor: f64) -> Self {
        match self {
            Self::Constant(rate) => Self::Constant(rate * factor),
            Self::Ramp { from, to, over } => Self::Ramp {
                from: from * factor,
                to: to * factor,
                over: *over,
            },
            Self::Step(steps) => {
                Self::Step(steps.iter().map(|(at, r)| (*at, r * factor)).collect())
            }
            Self::Sine { min, max, period } => Self::Sine {
                min: min * factor,
                max: max * factor,
                period: *period,
            },
        }
    }

    /// The highest rate the profile ever reaches.
    pub fn peak_rate(&self) -> f64 {
        match self {
            Self::Constant(rate) => *rate,
            Self::Ramp { from, to, .. } => from.max(*to),
            Self::Step(steps) => steps.iter().map(|s| s.1).fold(0.0, f64::max),
            Self::Sine { max, .. } => *max,
        }
    }

    /// The rate the profile settles on for ever (used to check that `--requests` can finish).
    pub fn final_rate(&self) -> Option<f64> {
        match self {
            Self::Constant(rate) => Some(*rate),
            Self::Ramp { to, .. } => Some(*to),
            Self::Step(steps) => steps.last().map(|s| s.1),
            Self::Sine { .. } => None,
        }
    }

    /// Seconds from the start at which request `n` is due, searching no earlier than `not_before`
    /// and no later than `horizon`; `None` if it is not due before `horizon`.
    pub fn due_time(&self, n: u64, not_before: f64, horizon: f64) -> Option<f64> {
        let target = n as f64;
        if let Self::Constant(rate) = self {
            // Closed form, exact for integer rates: no accumulated rounding over long runs.
            let t = target / rate;
            return (t < horizon).then_some(t);
        }
        // The tolerance keeps float noise (e.g. a sine over whole periods) from adding a request.
        if self.cumulative(horizon) <= target + 1e-9 {
            return None;
        }
        // Λ is non-decreasing; bisect between the previous due time and the horizon.
        let (mut lo, mut hi) = (not_before.max(0.0), horizon);
        if self.cumulative(lo) >= target {
            return Some(lo);
        }
        // Narrow the bracket quickly when the rate is positive at `lo`.
        let rate = self.rate_at(lo);
        if rate > 0.0 {
            let mut step = 2.0 / rate;
            while lo + step < hi {
                if self.cumulative(lo + step) >= target {
                    hi = lo + step;
                    break;
                }
                step *= 4.0;
            }
        }
        for _ in 0..200 {
            if hi - lo <= 1e-9 {
                break;
            }
            let mid = (lo + hi) / 2.0;
            if self.cumulative(mid) >= target {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }
}

fn parse_range(text: &str) -> anyhow::Result<(f64, f64)> {
    let (from, to) = text
        .split_once("..")
        .with_context(|| format!("expected a rate range FROM..TO, got {text:?}"))?;
    Ok((parse_rate(from)?, parse_rate(to)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_due(profile: &RateProfile, horizon: f64) -> u64 {
        let mut n = 0;
        let mut previous = 0.0;
        while let Some(t) = profile.due_time(n, previous, horizon) {
            assert!(t >= previous, "schedule went backwards at {n}");
            previous = t;
            n += 1;
        }
        n
    }

    #[test]
    fn constant_schedule_is_exact() {
        let profile = RateProfile::Constant(1000.0);
        assert_eq!(profile.due_time(0, 0.0, 10.0), Some(0.0));
        assert_eq!(profile.due_time(1500, 0.0, 10.0), Some(1.5));
        assert_eq!(count_due(&profile, 10.0), 10_000);
    }

    #[test]
    fn profiles_integrate_to_expected_counts() {
        let ramp = RateProfile::parse("ramp:0..200", Some(Duration::from_secs(10))).unwrap();
        assert_eq!(
            ramp,
            RateProfile::Ramp {
                from: 0.0,
                to: 200.0,
                over: 10.0
            }
        );
        // Triangle area: 10 s × 200 / 2 = 1000.
        assert_eq!(count_due(&ramp, 10.0), 1000);

        let step = RateProfile::parse("step:100@0s,300@5s", None).unwrap();
        assert_eq!(count_due(&step, 10.0), 2000);
        assert_eq!(step.rate_at(4.9), 100.0);
        assert_eq!(step.rate_at(5.0), 300.0);

        let sine = RateProfile::parse("sine:100..300:2s", None).unwrap();
        // Whole periods average the midpoint.
        assert_eq!(count_due(&sine, 10.0), 2000);
        assert!((sine.rate_at(0.5) - 300.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_profiles() {
        for bad in [
            "ramp:1..2",
            "ramp:0..0:10s",
            "ramp:a..2:1s",
            "step:100@1s",
            "step:100@0s,50@0s",
            "sine:300..100:1s",
            "sine:1..2:0s",
            "square:1..2",
            "ramp",
        ] {
            assert!(RateProfile::parse(bad, None).is_err(), "{bad:?}");
        }
    }
}
