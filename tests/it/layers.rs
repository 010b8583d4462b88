//! The import graph of `src/`: layers point down, and no two modules import each other
//! (docs: STYLE.md section 1, README "The pipeline"). Read from the sources, so a new
//! `use crate::...` that points up fails here, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and its layer, from the ground up. A module may import modules
/// of lower layers only, with the one-way exceptions in `PEERS`.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("config", 1),
    ("telemetry", 2),
    ("net", 3),
    ("outbox", 3),
    ("pipeline", 4),
    ("sinks", 4),
    ("deliver", 5),
    ("heartbeat", 5),
    ("ingest", 6),
    ("admin", 6),
    ("promotion", 6),
    ("collector", 6),
    ("drill", 6),
    ("app", 7),
    ("cli", 8),
];

/// Imports between modules of one layer that are allowed, one way only: the admin API
/// checks credentials as ingest does, shows the failover caller's state and starts
/// drills; a drill reads what the failover caller noted of it.
const PEERS: &[(&str, &str)] = &[
    ("admin", "ingest"),
    ("admin", "promotion"),
    ("admin", "drill"),
    ("drill", "promotion"),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// `module -> {modules it names as crate::x}`, with one file that does so for each edge.
fn graph() -> BTreeMap<(String, String), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let from = first.trim_end_matches(".rs").to_owned();
            if from == "lib" || from == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices("crate::") {
                // `amrelay::crate::` does not occur; skip `$crate::` in macros.
                if text[..i].ends_with('$') {
                    continue;
                }
                let to: String = text[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if to != from && layer(&to).is_some() {
                    edges
                        .entry((from.clone(), to))
                        .or_insert_with(|| rel.display().to_string());
                }
            }
        }
    }
    edges
}

#[test]
fn every_module_of_src_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let unknown: Vec<String> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .filter(|m| m != "lib" && m != "main" && layer(m).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "give these modules a layer in LAYERS: {unknown:?}"
    );
}

#[test]
fn imports_point_down_the_layers_and_never_both_ways() {
    let edges = graph();
    let mut wrong = Vec::new();
    for ((from, to), file) in &edges {
        let (lf, lt) = (layer(from).unwrap(), layer(to).unwrap());
        let peer = PEERS.contains(&(from.as_str(), to.as_str()));
        if lt > lf || (lt == lf && !peer) {
            wrong.push(format!(
                "{file}: {from} (layer {lf}) imports {to} (layer {lt})"
            ));
        }
    }
    let pairs: BTreeSet<_> = edges.keys().collect();
    for (from, to) in &pairs {
        if pairs.contains(&(to.clone(), from.clone())) && from < to {
            wrong.push(format!("{from} and {to} import each other"));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
