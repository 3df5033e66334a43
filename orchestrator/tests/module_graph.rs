//! The orchestrator's import graph, file by file: an edge runs from a file under `src/` to the
//! file of each `crate::…`, `super::…` or `self::…` path it names, in `use` items or inline,
//! outside `#[cfg(test)] mod` blocks. The module tree itself (`mod x;`, a parent naming a child by
//! its bare name) is no import. Asserts no cycle, of files or of top-level modules, and that
//! nothing under `saga/` imports `orders`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Edges `(from, to)`.
type Graph = BTreeSet<(String, String)>;
type Names = Vec<String>;

/// Identifiers, `::` and single punctuation of `src`, without comments and literals, so that
/// neither a doc comment naming `crate::x` nor a `"{"` in a string counts.
fn tokens(src: &str) -> Names {
    let (c, mut code, mut i) = (src.chars().collect::<Vec<_>>(), String::new(), 0);
    let at = |i: usize| c.get(i).copied().unwrap_or('\n');
    let past = |from: usize, end: &str| {
        let found = (from..c.len()).find(|&j| end.chars().enumerate().all(|(k, e)| at(j + k) == e));
        found.map_or(c.len(), |j| j + end.len())
    };
    while i < c.len() {
        i = match (c[i], at(i + 1)) {
            ('/', '/') => past(i, "\n"),
            ('/', '*') => past(i + 2, "*/"),
            ('\'', '\\') => past(i + 2, "'"),
            ('\'', _) if at(i + 2) == '\'' => i + 3,
            ('"', _) => {
                let mut j = i + 1;
                while j < c.len() && c[j] != '"' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                j + 1
            }
            (':', ':') => {
                code.push_str(" :: ");
                i + 2
            }
            (ch, _) => {
                match ch.is_alphanumeric() || ch == '_' {
                    true => code.push(ch),
                    false => code.extend([' ', ch, ' ']),
                }
                i + 1
            }
        };
    }
    code.split_whitespace().map(String::from).collect()
}

/// Reads the path tree at `t[i]` (`a::b`, `a::{b, c::{self, d as e}}`, `a::*`) into `out`.
fn path_tree(t: &[String], mut i: usize, mut path: Names, out: &mut Vec<Names>) -> usize {
    let tok = |i: usize| t.get(i).map_or("", String::as_str);
    while tok(i).starts_with(|ch: char| ch.is_alphanumeric() || ch == '_') {
        path.push(t[i].clone());
        if tok(i + 1) != "::" {
            out.push(path);
            return if tok(i + 1) == "as" { i + 3 } else { i + 1 };
        }
        i += 2;
    }
    if tok(i) != "{" {
        out.push(path);
        return i + usize::from(tok(i) == "*");
    }
    i += 1;
    while !matches!(tok(i), "}" | "") {
        i = path_tree(t, i, path.clone(), out).max(i + 1);
        i += usize::from(tok(i) == ",");
    }
    i + 1
}

/// Every `crate`/`super`/`self` path in `src` as written, outside `#[cfg(test)] mod x { … }`.
fn paths(src: &str) -> Vec<Names> {
    let (t, mut out, mut i) = (tokens(src), Vec::new(), 0);
    let cfg_test_mod = ["#", "[", "cfg", "(", "test", ")", "]", "mod"].map(String::from);
    while i < t.len() {
        if t[i..].starts_with(&cfg_test_mod) && t.get(i + 9).is_some_and(|s| s == "{") {
            let mut depth = 0;
            let body = t[i..].iter().position(|s| {
                depth += i32::from(s == "{") - i32::from(s == "}");
                s == "}" && depth == 0
            });
            i += body.map_or(t.len(), |end| end + 1);
        } else if matches!(t[i].as_str(), "crate" | "super" | "self")
            && t.get(i + 1).is_some_and(|s| s == "::")
            && (i == 0 || t[i - 1] != "::")
        {
            i = path_tree(&t, i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Nodes are files (`saga/plan.rs`); `src/a/b.rs` and `src/a/b/mod.rs` are module `a/b`. `lib.rs`
/// only declares modules; `main.rs` is a crate of its own that reaches the library by its name.
fn orchestrator_files() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut files, mut dirs) = (BTreeMap::new(), vec![src.to_path_buf()]);
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("src is readable").path();
            let rel = path.strip_prefix(&src).unwrap().display().to_string();
            if path.is_dir() {
                dirs.push(path);
            } else if rel.ends_with(".rs") && rel != "main.rs" && rel != "lib.rs" {
                let module = rel.trim_end_matches(".rs").trim_end_matches("/mod");
                files.insert(module.to_owned(), (rel.clone(), path));
            }
        }
    }
    let mut graph = Graph::new();
    for (module, (rel, path)) in &files {
        for written in paths(&std::fs::read_to_string(path).expect("source is readable")) {
            let mut full: Vec<&str> = module.split('/').collect();
            for segment in &written {
                match segment.as_str() {
                    "crate" => full.clear(),
                    "super" => drop(full.pop()),
                    "self" => {} // `self::x`, or a group's `{self, …}`
                    name => full.push(name),
                }
            }
            // The longest prefix that is a module: `saga/store/Saga` is in `saga/store.rs`.
            let mut prefixes = (1..=full.len()).rev();
            let target = prefixes.find_map(|n| files.get(&full[..n].join("/")));
            if let Some((to, _)) = target.filter(|(to, _)| to != rel) {
                graph.insert((rel.clone(), to.clone()));
            }
        }
    }
    graph
}

/// A cycle of `graph` as the nodes along it, the first repeated at the end; `None` if acyclic.
fn find_cycle(graph: &Graph) -> Option<Names> {
    fn visit(g: &Graph, n: &str, on: &mut Names, done: &mut BTreeSet<String>) -> Option<Names> {
        if let Some(at) = on.iter().position(|s| s == n) {
            return Some([&on[at..], &[n.to_owned()]].concat());
        }
        if !done.insert(n.to_owned()) {
            return None;
        }
        on.push(n.to_owned());
        let mut next = g.iter().filter(|(from, _)| from == n);
        let found = next.find_map(|(_, to)| visit(g, to, on, done));
        on.pop();
        found
    }
    let mut done = BTreeSet::new();
    graph
        .iter()
        .find_map(|(n, _)| visit(graph, n, &mut Vec::new(), &mut done))
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    edges
        .iter()
        .map(|&(from, to)| (from.into(), to.into()))
        .collect()
}

#[test]
fn the_orchestrators_files_and_modules_import_each_other_without_a_cycle() {
    let files = orchestrator_files();
    // A parser that found nothing would pass; these edges exist.
    for known in graph_of(&[
        ("saga/engine.rs", "saga/plan.rs"),
        ("api_doc.rs", "orders/api.rs"),
    ]) {
        assert!(
            files.contains(&known),
            "{known:?} is missing from {files:#?}"
        );
    }
    if let Some(cycle) = find_cycle(&files) {
        panic!("files import each other in a cycle: {}", cycle.join(" -> "));
    }
    let top = |file: &String| file.split(['/', '.']).next().unwrap_or_default().to_owned();
    let modules = files.iter().map(|(from, to)| (top(from), top(to)));
    if let Some(cycle) = find_cycle(&modules.filter(|(from, to)| from != to).collect()) {
        panic!(
            "top-level modules import each other in a cycle: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn no_file_under_saga_imports_from_orders() {
    let files = orchestrator_files();
    let wrong: Vec<_> = files
        .iter()
        .filter(|(from, to)| from.starts_with("saga/") && to.starts_with("orders/"))
        .collect();
    assert!(wrong.is_empty(), "saga imports orders: {wrong:?}");
}

#[test]
fn the_cycle_finder_reports_a_hand_made_cycle_and_passes_a_dag() {
    let dag = graph_of(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]);
    assert_eq!(find_cycle(&dag), None);
    let cyclic = graph_of(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "b")]);
    assert_eq!(find_cycle(&cyclic).unwrap(), ["b", "c", "d", "b"]);
}

#[test]
fn paths_are_read_from_groups_and_expressions_not_from_comments_strings_or_tests() {
    let src = r#"
        use super::engine::{self, Applied as A};
        use crate::saga::{plan::{Plan, ORDER_PLACED}, store::*};
        // use crate::orders::model::Order;
        fn f() -> u8 { let _ = "crate::orders::api{\""; crate::state::AppState::new(); b'{' }
        #[cfg(test)]
        mod tests { use crate::orders::intake::Intake; fn g() { if true {} } }
        pub(crate) use self::inner::Thing; /* crate::orders */
    "#;
    let found: Names = paths(src).iter().map(|p| p.join("::")).collect();
    let expected = [
        "super::engine::self",
        "super::engine::Applied",
        "crate::saga::plan::Plan",
        "crate::saga::plan::ORDER_PLACED",
        "crate::saga::store",
        "crate::state::AppState::new",
        "self::inner::Thing",
    ];
    assert_eq!(found, expected);
}
