//! Reading a service's `GET /metrics` in tests: a small parser of the Prometheus text format
//! (enough for what the exporter writes: `# TYPE` lines and `name{label="value",...} number`).

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Metric family name to its `# TYPE` (`counter`, `gauge`, `histogram`, `summary`).
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut scrape = Scrape::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    scrape.types.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') {
                scrape.samples.push(parse_sample(line));
            }
        }
        scrape
    }

    /// Whether metric family `name` has a `# TYPE` line and at least one sample (a histogram's
    /// samples are its `_bucket`, `_sum` and `_count` lines).
    pub fn has(&self, name: &str) -> bool {
        self.types.contains_key(name) && self.samples.iter().any(|s| family(&s.name, name))
    }

    /// The `# TYPE` of family `name`.
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    /// The sum of the samples named `name` (exactly: ask for `x_count` of a histogram) whose
    /// labels include `labels`; 0 when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The values label `label` takes among the samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .matching(name, &[])
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

fn family(sample: &str, name: &str) -> bool {
    sample == name
        || sample
            .strip_prefix(name)
            .is_some_and(|rest| matches!(rest, "_bucket" | "_sum" | "_count"))
}

fn parse_sample(line: &str) -> Sample {
    let (head, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("a sample line has a value: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("not a number in: {line}")),
    };
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
        None => (head, BTreeMap::new()),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// `a="x",b="y"`, with `\"` and `\\` escapes inside values.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').trim().to_owned();
        if key.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "a label value is quoted: {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
    }
}

/// `GET {address}/metrics` with no credentials: asserts it answers 200 in the Prometheus text
/// format, and parses it.
pub async fn scrape(address: &str) -> Scrape {
    let response = reqwest::get(format!("{address}/metrics"))
        .await
        .expect("GET /metrics failed");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(&response.text().await.expect("a /metrics body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_labels_and_histogram_families_are_read() {
        let scrape = Scrape::parse(
            "# HELP a_total help\n# TYPE a_total counter\na_total{q=\"x\",t=\"say \\\"hi\\\"\"} 3\n\
             a_total{q=\"y\",t=\"z\"} 4\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\n\
             h_count 2\n# TYPE g gauge\ng 1.5\n",
        );
        assert!(scrape.has("a_total") && scrape.has("h") && scrape.has("g"));
        assert!(!scrape.has("missing"));
        assert_eq!(scrape.value("a_total", &[]), 7.0);
        assert_eq!(scrape.value("a_total", &[("t", "say \"hi\"")]), 3.0);
        assert_eq!(scrape.value("h_count", &[]), 2.0);
        assert_eq!(scrape.label_values("a_total", "q"), ["x", "y"]);
        assert_eq!(scrape.kind("h"), Some("histogram"));
    }
}
