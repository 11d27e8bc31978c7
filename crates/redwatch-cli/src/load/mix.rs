//! The traffic mix: which endpoints to hit, with which method, in which proportion.
//!
//! Spec syntax: comma-separated entries `[METHOD ]PATH=WEIGHT`, e.g.
//! `/ep_one=4,/ep_two=3,POST /users/1=2`. The method defaults to GET; weights are positive
//! integers. Request number `n` of a run picks its entry from `(seed, n)` alone, so a seed
//! reproduces the exact request sequence in both open and closed loop.

use anyhow::{Context, bail};
use hyper::Method;

/// The demo API's seed mix (the endpoints the original Python generators looped over).
pub const DEFAULT_MIX: &str = "/ep_one=4,/ep_two=3,/ep_three=2,/ep_four=1,/error=1";

/// One endpoint of the mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixEntry {
    /// HTTP method (GET unless the spec names one).
    pub method: Method,
    /// Path and optional query, as written in the spec (starts with `/`).
    pub path: String,
    /// Relative weight (> 0).
    pub weight: u32,
    /// A `--scenario` entry's own name, used as its label.
    pub name: Option<String>,
}

impl MixEntry {
    /// The label used in output and metrics: the scenario's name for the entry if it has one,
    /// else the path, prefixed with the method when not GET.
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            name.clone()
        } else if self.method == Method::GET {
            self.path.clone()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }
}

/// A parsed mix with a cumulative-weight table for picking.
#[derive(Debug, Clone)]
pub struct Mix {
    entries: Vec<MixEntry>,
    /// `cumulative[i]` = sum of weights of entries `0..=i`.
    cumulative: Vec<u64>,
}

impl std::fmt::Display for Mix {
    /// The spec that parses back to this mix, e.g. `/ep_one=4,POST /users/1=1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, entry) in self.entries.iter().enumerate() {
            let separator = if index == 0 { "" } else { "," };
            write!(f, "{separator}{}={}", entry.label(), entry.weight)?;
        }
        Ok(())
    }
}

impl Default for Mix {
    /// [`DEFAULT_MIX`].
    fn default() -> Self {
        // A constant spec, parsed in a unit test.
        Self::parse(DEFAULT_MIX).unwrap_or_else(|err| unreachable!("DEFAULT_MIX: {err:#}"))
    }
}

impl Mix {
    /// Parses a mix spec; errors name the offending entry.
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        let mut entries: Vec<MixEntry> = Vec::new();
        for raw in spec.split(',') {
            let entry = raw.trim();
            if entry.is_empty() {
                bail!("empty entry in {spec:?} (expected `[METHOD ]PATH=WEIGHT`)");
            }
            let parsed = parse_entry(entry).with_context(|| format!("entry {entry:?}"))?;
            if entries
                .iter()
                .any(|e| e.method == parsed.method && e.path == parsed.path)
            {
                bail!("entry {entry:?}: endpoint listed twice");
            }
            entries.push(parsed);
        }
        Ok(Self::weighted(entries))
    }

    /// A mix of checked entries (a `--scenario`'s); errors name a label used twice.
    pub fn from_entries(entries: Vec<MixEntry>) -> anyhow::Result<Self> {
        for (i, entry) in entries.iter().enumerate() {
            if entries[..i].iter().any(|e| e.label() == entry.label()) {
                bail!(
                    "endpoints[{i}]: {:?} is listed twice (give one of them a `name`)",
                    entry.label()
                );
            }
        }
        if entries.is_empty() {
            bail!("no endpoints");
        }
        Ok(Self::weighted(entries))
    }

    fn weighted(entries: Vec<MixEntry>) -> Self {
        let mut cumulative = Vec::with_capacity(entries.len());
        let mut total = 0u64;
        for entry in &entries {
            total += u64::from(entry.weight);
            cumulative.push(total);
        }
        Self {
            entries,
            cumulative,
        }
    }

    /// The entries in spec order.
    pub fn entries(&self) -> &[MixEntry] {
        &self.entries
    }

    /// Sum of all weights.
    pub fn total_weight(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Index of the entry request number `n` uses under `seed`.
    pub fn pick(&self, seed: u64, n: u64) -> usize {
        let total = self.total_weight();
        // Multiply-shift maps a uniform u64 onto 0..total without modulo bias worth measuring
        // (bias < total / 2^64).
        let ticket = ((u128::from(mix64(seed, n)) * u128::from(total)) >> 64) as u64;
        self.cumulative.partition_point(|&c| c <= ticket)
    }
}

fn parse_entry(entry: &str) -> anyhow::Result<MixEntry> {
    let (target, weight) = entry
        .rsplit_once('=')
        .context("expected `[METHOD ]PATH=WEIGHT`")?;
    let weight: u32 = weight
        .trim()
        .parse()
        .ok()
        .filter(|w| *w > 0)
        .with_context(|| format!("weight {:?} is not a positive integer", weight.trim()))?;
    let target = target.trim();
    let (method, path) = match target.split_once(char::is_whitespace) {
        Some((method, path)) => {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .ok()
                .with_context(|| format!("invalid method {method:?}"))?;
            (method, path.trim())
        }
        None => (Method::GET, target),
    };
    if !path.starts_with('/') {
        bail!("path {path:?} must start with `/`");
    }
    if path.contains(char::is_whitespace) {
        bail!("path {path:?} contains whitespace");
    }
    // Reject anything that would not form a valid request target later on.
    path.parse::<hyper::http::uri::PathAndQuery>()
        .ok()
        .with_context(|| format!("path {path:?} is not a valid URL path"))?;
    Ok(MixEntry {
        method,
        path: path.to_owned(),
        weight,
        name: None,
    })
}

/// SplitMix64 finaliser over `seed` and `n`: a cheap, well-distributed hash so that request `n`'s
/// choice depends on nothing but the seed and its number.
pub fn mix64(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_mix() {
        let mix = Mix::parse(DEFAULT_MIX).unwrap();
        assert_eq!(mix.to_string(), DEFAULT_MIX);
        assert_eq!(Mix::default().to_string(), DEFAULT_MIX);
        let labels: Vec<_> = mix.entries().iter().map(MixEntry::label).collect();
        assert_eq!(
            labels,
            ["/ep_one", "/ep_two", "/ep_three", "/ep_four", "/error"]
        );
        assert_eq!(mix.total_weight(), 11);
    }

    #[test]
    fn parses_methods_and_queries() {
        let mix = Mix::parse("post /users/1=2, /search?q=a%20b=1").unwrap();
        assert_eq!(mix.entries()[0].method, Method::POST);
        assert_eq!(mix.entries()[0].label(), "POST /users/1");
        assert_eq!(mix.entries()[1].path, "/search?q=a%20b");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "/a=0",
            "/a",
            "a=1",
            "/a=x",
            "/a=1,,/b=1",
            "/a=1,/a=2",
            "G@T /a=1",
            "/a b=1",
        ] {
            assert!(Mix::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn picks_follow_weights_and_seed() {
        let mix = Mix::parse("/a=3,/b=1").unwrap();
        let n = 100_000u64;
        let a = (0..n).filter(|&i| mix.pick(7, i) == 0).count() as f64;
        // Expected share 0.75; standard error sqrt(p(1-p)/n) ≈ 0.00137; allow 5 SE.
        assert!(
            (a / n as f64 - 0.75).abs() < 0.007,
            "share {}",
            a / n as f64
        );
        let first: Vec<_> = (0..50).map(|i| mix.pick(7, i)).collect();
        let again: Vec<_> = (0..50).map(|i| mix.pick(7, i)).collect();
        let other: Vec<_> = (0..50).map(|i| mix.pick(8, i)).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
    }
}
