//! Reading samples back from the Prometheus text format, for the dashboard: it shows exactly
//! what `/metrics` says.

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The samples of a text exposition; comments, blank and malformed lines are skipped.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_line)
}

fn parse_line(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches(',');
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = body.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (index, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break index,
                    other => value.push(other),
                }
            };
            labels.push((label, value));
            body = &after[end + 1..];
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# HELP x y\n\
                    # TYPE x counter\n\
                    x_total 3\n\
                    h_bucket{route=\"/a\\\"b\",le=\"+Inf\"} 7\n\
                    g{a=\"1\",b=\"two, three\"} 1.5e3 1700000000\n\
                    broken{a=\"1\n";
        let all: Vec<Sample> = samples(text).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].name, "x_total");
        assert_eq!(all[0].value, 3.0);
        assert_eq!(all[1].label("route"), Some("/a\"b"));
        assert_eq!(all[1].label("le"), Some("+Inf"));
        assert_eq!(all[2].label("b"), Some("two, three"));
        assert_eq!(all[2].value, 1500.0);
        assert_eq!(all[2].label("missing"), None);
    }
}
