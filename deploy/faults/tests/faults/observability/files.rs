//! What deploy/observability/ asks of the fleet: the metric names its alert rules and dashboard
//! queries read, and the runbook links of its alerts. Read from the files themselves, so a rule
//! or panel added later is checked without touching the tests.
//!
//! The rules file is read line by line (the workspace has no YAML parser, and the file only uses
//! `key: value` and `key: |` blocks); the dashboard is JSON.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// `deploy/observability/`.
pub fn observability_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../observability")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// What rules.yml holds.
#[derive(Debug, Default)]
pub struct Rules {
    /// Every `expr:` (recording and alerting rules).
    pub exprs: Vec<String>,
    /// Names of the recording rules (`record:`).
    pub records: BTreeSet<String>,
    /// `(alert, runbook_url)`; the URL is empty when the alert has none.
    pub alerts: Vec<(String, String)>,
}

impl Rules {
    pub fn load() -> Self {
        Self::parse(&read(observability_dir().join("rules.yml")))
    }

    fn parse(text: &str) -> Self {
        let mut rules = Self::default();
        let lines: Vec<&str> = text.lines().collect();
        let mut index = 0;
        while index < lines.len() {
            let line = lines[index];
            index += 1;
            let trimmed = line.trim_start().trim_start_matches("- ");
            let Some((key, value)) = trimmed.split_once(':') else {
                continue;
            };
            let value = unquote(value.trim());
            match key {
                "record" => {
                    rules.records.insert(value.to_owned());
                }
                "alert" => rules.alerts.push((value.to_owned(), String::new())),
                "runbook_url" => {
                    if let Some(last) = rules.alerts.last_mut() {
                        last.1 = value.to_owned();
                    }
                }
                "expr" if value.starts_with('|') || value.starts_with('>') => {
                    // A block: the lines indented deeper than the key.
                    let indent = line.len() - line.trim_start().len();
                    let mut block = Vec::new();
                    while index < lines.len()
                        && (lines[index].trim().is_empty()
                            || lines[index].len() - lines[index].trim_start().len() > indent)
                    {
                        block.push(lines[index].trim());
                        index += 1;
                    }
                    rules.exprs.push(block.join(" "));
                }
                "expr" => rules.exprs.push(value.to_owned()),
                _ => {}
            }
        }
        rules
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value)
}

/// Every query of every panel of grafana-dashboard.json (rows' nested panels included).
pub fn dashboard_exprs() -> Vec<String> {
    let path = observability_dir().join("grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&read(path)).expect("valid JSON");
    let mut exprs = Vec::new();
    let mut stack: Vec<&serde_json::Value> = vec![&dashboard];
    while let Some(node) = stack.pop() {
        for panel in node["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    exprs.push(expr.to_owned());
                }
            }
            stack.push(panel);
        }
    }
    exprs
}

/// PromQL words that are not metric names: aggregations, keywords and literals. Functions are
/// recognised by the `(` that follows them.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// The metric names (and recording-rule names, which hold a `:`) an expression reads: the
/// identifiers outside label matchers, ranges and strings that are neither PromQL words nor
/// followed by `(`. Grafana variables (`$__rate_interval`) are skipped.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening bracket to its closing one, over quoted strings.
    let skip_to = |mut i: usize, close: char| -> usize {
        while i < chars.len() && chars[i] != close {
            if matches!(chars[i], '"' | '\'' | '`') {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i + 1
    };
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if matches!(c, '"' | '\'' | '`') {
            i = skip_to(i + 1, c);
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable, a number or a duration: one word, never a metric.
            i += 1;
            while i < chars.len() && (is_part(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let lower = word.to_ascii_lowercase();
            if matches!(lower.as_str(), "by" | "without" | "on" | "ignoring")
                || lower.starts_with("group_")
            {
                // Their label list is not metric names.
                while i < chars.len() && chars[i].is_whitespace() {
                    i += 1;
                }
                if chars.get(i) == Some(&'(') {
                    i = skip_to(i + 1, ')');
                }
            } else if next != Some(&'(') && !PROMQL_WORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The GitHub anchor of a Markdown heading: lower case, punctuation dropped, spaces to `-`.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of docs/alerts.md's headings (the alerts' runbook).
pub fn runbook_anchors() -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/alerts.md");
    read(path)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn metric_names_are_read_from_promql_without_functions_labels_or_ranges() {
    let expr = r#"histogram_quantile(0.99, sum by (job, le) (rate(http_server_request_duration_seconds_bucket{status=~"5..", route="/api/{id}"}[$__rate_interval])))
        / on (job) group_left(route) saga:failure_ratio:rate5m > 0.2 and max(up offset 5m) == bool 1
        unless sum without (instance) (process_open_fds) > 1e3"#;
    assert_eq!(
        metric_names(expr),
        BTreeSet::from(
            [
                "http_server_request_duration_seconds_bucket",
                "saga:failure_ratio:rate5m",
                "up",
                "process_open_fds",
            ]
            .map(str::to_owned)
        )
    );
}

#[test]
fn the_rules_reader_finds_block_and_inline_expressions_records_and_runbooks() {
    let rules = Rules::parse(
        "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: sum(x_total)\n\
         \x20     - alert: A\n        expr: |\n          a:b > 0\n            and y > 1\n\
         \x20       for: 1m\n        annotations:\n          runbook_url: \"docs/runbook.md#a\"\n",
    );
    assert_eq!(rules.exprs, ["sum(x_total)", "a:b > 0 and y > 1"]);
    assert_eq!(rules.records, BTreeSet::from(["a:b".to_owned()]));
    assert_eq!(
        rules.alerts,
        [("A".to_owned(), "docs/runbook.md#a".to_owned())]
    );
}

#[test]
fn headings_become_github_anchors() {
    assert_eq!(
        anchor(" Alert: SagaFailureRatioHigh"),
        "alert-sagafailureratiohigh"
    );
    assert_eq!(
        anchor("Dead letters (replay, delete)"),
        "dead-letters-replay-delete"
    );
}
