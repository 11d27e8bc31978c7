//! `--scenario FILE`: endpoints with their own method, path, headers, body and weight, and
//! values templated into paths and bodies.
//!
//! ```yaml
//! variables:
//!   user: {kind: random_int, min: 1, max: 1000}     # uniform in min..=max
//!   order: {kind: sequence, start: 1, step: 1}       # start, start+step, ... (defaults 0, 1)
//!   email: {kind: csv, file: users.csv, column: email, order: sequential}   # or random
//! endpoints:
//!   - path: /users/{{ user }}
//!     weight: 4
//!   - name: create order
//!     method: POST
//!     path: /orders
//!     headers: {content-type: application/json}
//!     body: '{"order": {{ order }}, "email": "{{ email }}"}'
//! ```
//!
//! Templates are minijinja (`{{ name }}`, filters such as `{{ email | urlencode }}`). Random
//! values are a function of `--seed` and the request number, so a seed repeats them; sequences
//! and sequential CSV rows count the requests that use them (in open loop the dispatcher renders
//! requests in schedule order, so a seed repeats those too).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use hyper::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};
use hyper::{Method, body::Bytes};
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Deserialize;

use super::mix::{Mix, MixEntry, mix64};
use super::settings::Shard;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    variables: BTreeMap<String, VariableFile>,
    endpoints: Vec<EndpointFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    name: Option<String>,
    #[serde(default = "default_method")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    #[serde(default = "default_weight")]
    weight: u32,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum VariableFile {
    RandomInt {
        min: i64,
        max: i64,
    },
    Sequence {
        #[serde(default)]
        start: i64,
        #[serde(default = "default_step")]
        step: i64,
    },
    Csv {
        file: PathBuf,
        column: String,
        #[serde(default)]
        order: CsvOrder,
    },
}

fn default_step() -> i64 {
    1
}

/// Which row of a CSV column a request takes.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CsvOrder {
    /// Row after row, starting again after the last.
    #[default]
    Sequential,
    /// A row picked from `--seed` and the request number.
    Random,
}

/// One variable, ready to draw values.
#[derive(Debug)]
enum Generator {
    RandomInt {
        min: i64,
        span: u64,
    },
    Sequence {
        start: i64,
        step: i64,
    },
    Column {
        values: Vec<String>,
        order: CsvOrder,
    },
}

#[derive(Debug)]
struct Variable {
    name: String,
    generator: Generator,
    /// Values drawn so far (sequences and sequential CSV columns).
    drawn: AtomicU64,
    /// This shard's place among `stride` shards: its k-th draw is value number
    /// `offset + stride * k`, so shards interleave instead of repeating each other's values.
    offset: u64,
    stride: u64,
    /// Mixed into the seed, so that two random variables differ.
    salt: u64,
}

impl Variable {
    /// The number of this draw among all shards' draws.
    fn next_draw(&self) -> u64 {
        let k = self.drawn.fetch_add(1, Ordering::Relaxed);
        self.offset.wrapping_add(self.stride.wrapping_mul(k))
    }

    fn value(&self, seed: u64, n: u64) -> Value {
        let random = || mix64(seed ^ self.salt, n);
        match &self.generator {
            Generator::RandomInt { min, span } => {
                // Multiply-shift onto 0..span (span ≤ 2^64), as the mix picks its endpoints.
                let offset = ((u128::from(random()) * u128::from(*span)) >> 64) as u64;
                Value::from(min.wrapping_add_unsigned(offset))
            }
            Generator::Sequence { start, step } => {
                let k = self.next_draw();
                Value::from(start.wrapping_add(step.wrapping_mul(k as i64)))
            }
            Generator::Column { values, order } => {
                let len = values.len() as u64;
                let row = match order {
                    CsvOrder::Sequential => self.next_draw() % len,
                    CsvOrder::Random => ((u128::from(random()) * u128::from(len)) >> 64) as u64,
                };
                Value::from(values[row as usize].as_str())
            }
        }
    }
}

/// One endpoint's request parts beyond the mix entry.
#[derive(Debug)]
pub struct EndpointRequest {
    /// Headers of this endpoint (after `--header`s, so they win).
    pub headers: HeaderMap,
    /// Whether the path has placeholders (else the mix entry's path is sent as is).
    templated_path: bool,
    /// The body: fixed, or rendered per request.
    body: Option<BodySource>,
    /// Indexes into [`Scenario::variables`] this endpoint's templates use.
    uses: Vec<usize>,
}

#[derive(Debug)]
enum BodySource {
    Fixed(Bytes),
    Template,
}

/// A checked `--scenario`.
#[derive(Debug)]
pub struct Scenario {
    /// Where it came from, for messages.
    pub file: PathBuf,
    mix: Mix,
    endpoints: Vec<EndpointRequest>,
    variables: Vec<Variable>,
    templates: Environment<'static>,
}

/// A request's rendered path (relative to the target) and body.
#[derive(Debug, Default)]
pub struct Rendered {
    /// `None`: the mix entry's path as written.
    pub path: Option<String>,
    pub body: Option<Bytes>,
}

fn path_template(index: usize) -> String {
    format!("endpoints[{index}].path")
}

fn body_template(index: usize) -> String {
    format!("endpoints[{index}].body")
}

impl Scenario {
    /// Reads and checks `file` for the whole run or one `--shard`; errors name the file, the
    /// entry and the problem.
    pub fn load(file: &Path, shard: Option<Shard>) -> anyhow::Result<Self> {
        Self::load_inner(file, shard).with_context(|| format!("--scenario {}", file.display()))
    }

    fn load_inner(file: &Path, shard: Option<Shard>) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file).context("cannot read it")?;
        let parsed: ScenarioFile = serde_yaml_ng::from_str(&text)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let variables = parsed
            .variables
            .into_iter()
            .enumerate()
            .map(|(i, (name, spec))| {
                let generator =
                    generator(spec, base).with_context(|| format!("variables.{name}"))?;
                Ok(Variable {
                    name,
                    generator,
                    drawn: AtomicU64::new(0),
                    offset: shard.map_or(0, |s| s.index),
                    stride: shard.map_or(1, |s| s.count),
                    salt: mix64(0x5eed, i as u64),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut templates = Environment::new();
        // A typo in a placeholder must not silently render as an empty string.
        templates.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut entries = Vec::new();
        let mut endpoints = Vec::new();
        for (index, endpoint) in parsed.endpoints.into_iter().enumerate() {
            let label = endpoint
                .name
                .clone()
                .unwrap_or_else(|| endpoint.path.clone());
            let (entry, request) = check_endpoint(index, endpoint, &variables, &mut templates)
                .with_context(|| format!("endpoints[{index}] ({label})"))?;
            entries.push(entry);
            endpoints.push(request);
        }
        let mix = Mix::from_entries(entries)?;
        Ok(Self {
            file: file.to_owned(),
            mix,
            endpoints,
            variables,
            templates,
        })
    }

    /// The endpoints and weights.
    pub fn mix(&self) -> &Mix {
        &self.mix
    }

    /// Whether endpoint `index` sends its path as written (no placeholders).
    pub fn path_is_fixed(&self, index: usize) -> bool {
        self.endpoints.get(index).is_none_or(|e| !e.templated_path)
    }

    /// Endpoint `index`'s request parts.
    pub fn endpoint(&self, index: usize) -> Option<&EndpointRequest> {
        self.endpoints.get(index)
    }

    /// Request `n`'s path and body for endpoint `index`; `Err` with the reason when a template
    /// cannot render (the request then fails as `other`).
    pub fn render(&self, index: usize, seed: u64, n: u64) -> Result<Rendered, String> {
        let Some(endpoint) = self.endpoints.get(index) else {
            return Ok(Rendered::default());
        };
        if endpoint.uses.is_empty() {
            return Ok(Rendered {
                path: None,
                body: match &endpoint.body {
                    Some(BodySource::Fixed(bytes)) => Some(bytes.clone()),
                    _ => None,
                },
            });
        }
        // One value per variable per request, shared by its path and body.
        let context: BTreeMap<&str, Value> = endpoint
            .uses
            .iter()
            .map(|&v| {
                let variable = &self.variables[v];
                (variable.name.as_str(), variable.value(seed, n))
            })
            .collect();
        let render = |name: String| {
            self.templates
                .get_template(&name)
                .and_then(|template| template.render(&context))
                .map_err(|err| format!("{name}: {err}"))
        };
        let path = if endpoint.templated_path {
            Some(render(path_template(index))?)
        } else {
            None
        };
        let body = match &endpoint.body {
            Some(BodySource::Fixed(bytes)) => Some(bytes.clone()),
            Some(BodySource::Template) => Some(Bytes::from(render(body_template(index))?)),
            None => None,
        };
        Ok(Rendered { path, body })
    }
}

fn generator(spec: VariableFile, base: &Path) -> anyhow::Result<Generator> {
    Ok(match spec {
        VariableFile::RandomInt { min, max } => {
            if max < min {
                bail!("max {max} is below min {min}");
            }
            Generator::RandomInt {
                min,
                span: (max.abs_diff(min)).saturating_add(1).max(1),
            }
        }
        VariableFile::Sequence { start, step } => Generator::Sequence { start, step },
        VariableFile::Csv {
            file,
            column,
            order,
        } => {
            let path = base.join(&file);
            let values = read_column(&path, &column)
                .with_context(|| format!("csv file {}", path.display()))?;
            Generator::Column { values, order }
        }
    })
}

/// The values of `column` (by header name) in a CSV file with a header row.
fn read_column(path: &Path, column: &str) -> anyhow::Result<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).context("cannot read it")?;
    let headers = reader.headers().context("cannot read the header row")?;
    let position = headers.iter().position(|h| h == column).with_context(|| {
        let names: Vec<&str> = headers.iter().collect();
        format!("no column {column:?} (columns: {})", names.join(", "))
    })?;
    let mut values = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("row {}", row + 2))?;
        let value = record
            .get(position)
            .with_context(|| format!("row {} has no column {column:?}", row + 2))?;
        values.push(value.to_owned());
    }
    if values.is_empty() {
        bail!("column {column:?} has no rows");
    }
    Ok(values)
}

/// Checks one entry, registers its templates and returns its mix entry and request parts.
fn check_endpoint(
    index: usize,
    endpoint: EndpointFile,
    variables: &[Variable],
    templates: &mut Environment<'static>,
) -> anyhow::Result<(MixEntry, EndpointRequest)> {
    let method = Method::from_bytes(endpoint.method.trim().to_ascii_uppercase().as_bytes())
        .ok()
        .with_context(|| format!("method: invalid method {:?}", endpoint.method))?;
    if endpoint.weight == 0 {
        bail!("weight: must be a positive integer");
    }
    let path = endpoint.path.trim().to_owned();
    if !path.starts_with('/') {
        bail!("path: {path:?} must start with `/`");
    }
    let mut uses = HashSet::new();
    let templated_path = path.contains("{{") || path.contains("{%");
    if templated_path {
        add_template(templates, path_template(index), &path, variables, &mut uses)
            .context("path")?;
    } else {
        path.parse::<hyper::http::uri::PathAndQuery>()
            .ok()
            .with_context(|| format!("path: {path:?} is not a valid URL path"))?;
    }
    let body = match endpoint.body {
        Some(body) if body.contains("{{") || body.contains("{%") => {
            add_template(templates, body_template(index), &body, variables, &mut uses)
                .context("body")?;
            Some(BodySource::Template)
        }
        Some(body) => Some(BodySource::Fixed(Bytes::from(body))),
        None => None,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &endpoint.headers {
        let (name, value) = header(name, value).context("headers")?;
        headers.append(name, value);
    }
    let mut uses: Vec<usize> = uses.into_iter().collect();
    uses.sort_unstable();
    Ok((
        MixEntry {
            method,
            path,
            weight: endpoint.weight,
            name: endpoint.name,
        },
        EndpointRequest {
            headers,
            templated_path,
            body,
            uses,
        },
    ))
}

/// Compiles a template and notes the variables it uses; each must be defined.
fn add_template(
    templates: &mut Environment<'static>,
    name: String,
    source: &str,
    variables: &[Variable],
    uses: &mut HashSet<usize>,
) -> anyhow::Result<()> {
    templates
        .add_template_owned(name.clone(), source.to_owned())
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let template = templates
        .get_template(&name)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    for used in template.undeclared_variables(false) {
        let index = variables
            .iter()
            .position(|v| v.name == used)
            .with_context(|| format!("{{{{ {used} }}}} is not a defined variable"))?;
        uses.insert(index);
    }
    Ok(())
}

/// A header from its name and value, checked by the `http` crate.
pub fn header(name: &str, value: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let header_name = HeaderName::from_bytes(name.trim().as_bytes())
        .ok()
        .with_context(|| format!("invalid header name {name:?}"))?;
    // The load generator frames each request itself: a length that is not the body's, or a
    // coding the body is not in, would make the server misread the connection.
    if [CONTENT_LENGTH, TRANSFER_ENCODING].contains(&header_name) {
        bail!(
            "header {name:?} cannot be set: redwatch load frames each request itself \
             (content-length from its body)"
        );
    }
    let header_value = HeaderValue::from_str(value.trim())
        .ok()
        .with_context(|| format!("invalid value {value:?} for header {name:?}"))?;
    Ok((header_name, header_value))
}

/// `--header 'Name: value'`.
pub fn parse_header_flag(text: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = text
        .split_once(':')
        .with_context(|| format!("{text:?}: expected 'Name: value'"))?;
    header(name, value).with_context(|| format!("{text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn renders_reproducible_values() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "users.csv", "id,email\n1,a@x\n2,b@x\n3,c@x\n");
        let file = write(
            dir.path(),
            "s.yaml",
            r#"
variables:
  user: {kind: random_int, min: 10, max: 12}
  order: {kind: sequence, start: 5, step: 2}
  email: {kind: csv, file: users.csv, column: email}
endpoints:
  - path: /users/{{ user }}
    weight: 3
  - name: create
    method: post
    path: /orders
    headers: {content-type: application/json}
    body: '{"order": {{ order }}, "email": "{{ email }}"}'
  - path: /static
    body: plain
"#,
        );
        let scenario = Scenario::load(&file, None).unwrap();
        let labels: Vec<String> = scenario.mix().entries().iter().map(|e| e.label()).collect();
        assert_eq!(labels, ["/users/{{ user }}", "create", "/static"]);
        assert_eq!(scenario.mix().entries()[1].method, Method::POST);
        assert_eq!(
            scenario.endpoint(1).unwrap().headers["content-type"],
            "application/json"
        );
        let users: Vec<String> = (0..200)
            .map(|n| scenario.render(0, 7, n).unwrap().path.unwrap())
            .collect();
        for value in ["/users/10", "/users/11", "/users/12"] {
            assert!(users.iter().any(|u| u == value), "{value} never drawn");
        }
        assert!(
            users
                .iter()
                .all(|u| ["/users/10", "/users/11", "/users/12"].contains(&u.as_str()))
        );
        let again: Vec<String> = (0..200)
            .map(|n| scenario.render(0, 7, n).unwrap().path.unwrap())
            .collect();
        assert_eq!(users, again, "same seed, same values");
        let bodies: Vec<Bytes> = (0..4)
            .map(|n| scenario.render(1, 7, n).unwrap().body.unwrap())
            .collect();
        assert_eq!(bodies[0], r#"{"order": 5, "email": "a@x"}"#);
        assert_eq!(bodies[1], r#"{"order": 7, "email": "b@x"}"#);
        assert_eq!(bodies[3], r#"{"order": 11, "email": "a@x"}"#);
        let fixed = scenario.render(2, 7, 0).unwrap();
        // Shard 1 of 3 takes every third value of the sequence and of the CSV rows, from the
        // second on.
        let shard = Scenario::load(&file, Some(Shard { index: 1, count: 3 })).unwrap();
        let bodies: Vec<Bytes> = (0..2)
            .map(|n| shard.render(1, 7, n).unwrap().body.unwrap())
            .collect();
        assert_eq!(bodies[0], r#"{"order": 7, "email": "b@x"}"#);
        assert_eq!(bodies[1], r#"{"order": 13, "email": "b@x"}"#);
        assert_eq!((fixed.path, fixed.body), (None, Some(Bytes::from("plain"))));
    }

    #[test]
    fn errors_name_the_file_the_entry_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "u.csv", "id\n1\n");
        for (yaml, needles) in [
            (
                "endpoints: [{path: '/a/{{ nope }}'}]",
                &["endpoints[0] (/a/{{ nope }})", "path", "nope"][..],
            ),
            (
                "endpoints: [{path: /a}, {path: /b, method: 'G T'}]",
                &["endpoints[1] (/b)", "method"],
            ),
            (
                "endpoints: [{path: /a, headers: {'bad name': x}}]",
                &["endpoints[0]", "header name"],
            ),
            (
                "endpoints: [{path: a}]",
                &["endpoints[0]", "must start with"],
            ),
            ("endpoints: [{path: /a, weight: 0}]", &["weight"]),
            ("endpoints: [{path: /a}, {path: /a}]", &["listed twice"]),
            ("endpoints: [{path: /a, colour: red}]", &["colour"]),
            (
                "variables: {v: {kind: random_int, min: 5, max: 1}}\nendpoints: [{path: /a}]",
                &["variables.v", "below min"],
            ),
            (
                "variables: {v: {kind: csv, file: u.csv, column: email}}\nendpoints: [{path: /a}]",
                &["variables.v", "no column \"email\""],
            ),
            (
                "variables: {v: {kind: csv, file: missing.csv, column: id}}\nendpoints: [{path: /a}]",
                &["missing.csv"],
            ),
            ("endpoints: [{path: '/a/{{ x'}]", &["endpoints[0]", "path"]),
            ("endpoints: []", &["no endpoints"]),
        ] {
            let file = write(dir.path(), "s.yaml", yaml);
            let err = format!("{:#}", Scenario::load(&file, None).expect_err(yaml));
            assert!(err.contains("s.yaml"), "{yaml}: {err}");
            for needle in needles {
                assert!(err.contains(needle), "{yaml}: {needle:?} not in {err}");
            }
        }
    }

    #[test]
    fn header_flags_are_checked() {
        let (name, value) = parse_header_flag("X-Api-Key: abc: def").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-api-key", "abc: def")
        );
        for bad in [
            "NoColon",
            "Bad Name: x",
            ": x",
            "X-Ok: bad\u{7f}value",
            "Content-Length: 5",
            "transfer-encoding: chunked",
        ] {
            assert!(parse_header_flag(bad).is_err(), "{bad:?}");
        }
    }
}
