//! A small reader of the Prometheus text exposition format (what `GET /metrics` answers): the
//! samples with their labels and values, and the `# TYPE` of each family. Enough for the tests'
//! assertions; it does not validate the format.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One scrape.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name -> `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut exposition = Self::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE")
                    && let (Some(name), Some(kind)) = (words.next(), words.next())
                {
                    exposition.types.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            let sample =
                parse_sample(line).map_err(|why| format!("line {}: {why}: {line}", number + 1))?;
            exposition.samples.push(sample);
        }
        Ok(exposition)
    }

    /// Every sample name (histograms appear as `<name>_bucket`, `_sum` and `_count`).
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }

    /// True when the family has at least one sample: `name` itself, or for a histogram or
    /// summary `name_bucket`/`name_sum`/`name_count`.
    pub fn has_family(&self, name: &str) -> bool {
        self.samples.iter().any(|s| {
            s.name == name
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| s.name.strip_suffix(suffix) == Some(name))
        })
    }

    /// The values a label takes over the samples of `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }

    /// The sum of `name`'s samples whose labels include every `(label, value)` of `matching`;
    /// `None` when there is no such sample.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> Option<f64> {
        let values: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                matching
                    .iter()
                    .all(|(l, v)| s.labels.get(*l).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .map_err(|e| format!("bad value {other:?}: {e}"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `a="x",b="y\"z"}` (after the `{`); returns the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let equals = text.find('=').ok_or("label without `=`")?;
        let label = text[..equals].trim().to_owned();
        let quoted = text[equals + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.insert(label, value);
        text = &quoted[end + 1..];
    }
}

#[test]
fn the_exposition_reader_reads_types_labels_escapes_and_histogram_samples() {
    let text = "# HELP saga_ended_total Sagas ended.\n\
                # TYPE saga_ended_total counter\n\
                saga_ended_total{outcome=\"failed\",reason=\"a \\\"quoted\\\", comma\"} 2\n\
                saga_ended_total{outcome=\"completed\",reason=\"completed\"} 3 1700000000000\n\
                # TYPE saga_duration_seconds histogram\n\
                saga_duration_seconds_bucket{le=\"+Inf\"} 5\n\
                saga_duration_seconds_sum 1.5e0\n\
                process_open_fds 12\n";
    let scrape = Exposition::parse(text).expect("valid exposition");
    assert_eq!(scrape.types["saga_ended_total"], "counter");
    assert_eq!(scrape.types["saga_duration_seconds"], "histogram");
    assert_eq!(
        scrape.label_values("saga_ended_total", "reason"),
        BTreeSet::from(["a \"quoted\", comma".to_owned(), "completed".to_owned()])
    );
    assert_eq!(scrape.sum("saga_ended_total", &[]), Some(5.0));
    assert_eq!(
        scrape.sum("saga_ended_total", &[("outcome", "completed")]),
        Some(3.0)
    );
    assert_eq!(scrape.sum("saga_ended_total", &[("outcome", "none")]), None);
    assert!(scrape.has_family("saga_duration_seconds"));
    assert!(scrape.has_family("process_open_fds"));
    assert!(!scrape.has_family("saga_duration"));
    assert_eq!(scrape.sum("saga_duration_seconds_sum", &[]), Some(1.5));
}
