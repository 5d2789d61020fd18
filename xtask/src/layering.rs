//! The extension's layering, read from its `use` lines and paths: no module depends on
//! itself through others, the general code (every module outside a source's folder) uses
//! no source (`source_names.rs` checks that it names none either), and the plumbing
//! depends on nothing above it. xtask's own modules import in no circle either.
//! `cargo xtask test` runs these as unit tests.
#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path ("jobs::queue") → the modules its code refers to.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module a file under `src/` is: `a/b.rs` → `a::b`, `a/mod.rs` → `a`.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The identifiers after `prefix` in `text`, each with the one after it when there is one
/// (`crate::a::b` → ("a", Some("b"))), braces of a grouped `use` unfolded.
fn references(text: &str, prefix: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inside = &group[..group.find('}').unwrap_or(group.len())];
            for item in inside.split(',') {
                let mut names = item.trim().split("::").map(|s| ident(s.trim()));
                if let Some(first) = names.next().filter(|s| !s.is_empty()) {
                    found.push((first, names.next().filter(|s| !s.is_empty())));
                }
            }
            continue;
        }
        let first = ident(rest);
        if first.is_empty() {
            continue;
        }
        let after = &rest[first.len()..];
        let second = after
            .strip_prefix("::")
            .map(ident)
            .filter(|s| !s.is_empty());
        found.push((first, second));
    }
    found
}

fn ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The module graph of the crate whose sources are in `src`, without the crate root and
/// its tests.
pub fn graph(src: &Path) -> std::io::Result<Graph> {
    let mut files = Vec::new();
    collect(src, &mut files)?;
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(src).expect("under src")))
        .collect();
    let resolve = |base: &str, name: &str, next: Option<&str>| -> Option<String> {
        let join = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                format!("{a}::{b}")
            }
        };
        let outer = join(base, name);
        let inner = next.map(|n| join(&outer, n));
        inner
            .filter(|m| modules.contains(m))
            .or_else(|| modules.contains(&outer).then_some(outer))
    };
    let mut graph = Graph::new();
    for file in &files {
        let module = module_of(file.strip_prefix(src).expect("under src"));
        if ["lib", "main", "pg_tests"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(file)?;
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let mut targets = BTreeSet::new();
        for (name, next) in references(&text, "crate::") {
            targets.extend(resolve("", &name, next.as_deref()));
        }
        for (name, next) in references(&text, "super::") {
            targets.extend(resolve(parent, &name, next.as_deref()));
        }
        targets.remove(&module);
        graph.insert(module, targets);
    }
    Ok(graph)
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(())
}

/// Every cycle's modules (strongly connected components of more than one module).
pub fn cycles(graph: &Graph) -> Vec<BTreeSet<String>> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reaches(m))).collect();
    let mut cycles: Vec<BTreeSet<String>> = Vec::new();
    for m in graph.keys() {
        if !reach[m].contains(m) || cycles.iter().any(|c| c.contains(m)) {
            continue;
        }
        let component = graph
            .keys()
            .filter(|o| reach[m].contains(*o) && reach[*o].contains(m))
            .cloned()
            .collect();
        cycles.push(component);
    }
    cycles
}

/// The top-level folders that hold a source (a `source.rs` that declares its `SourceSpec`).
pub fn source_folders(src: &Path) -> Vec<String> {
    let mut folders: Vec<String> = std::fs::read_dir(src)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("source.rs"))
                .is_ok_and(|text| text.contains("SPEC: SourceSpec"))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    folders
}

/// (module, what it must not depend on) for every dependency the layering forbids.
pub fn violations(graph: &Graph, sources: &[String]) -> Vec<(String, String)> {
    let top = |m: &str| m.split("::").next().unwrap_or_default().to_string();
    let mut found = Vec::new();
    for (module, targets) in graph {
        let layer = top(module);
        for target in targets {
            let target_top = top(target);
            let forbidden = match layer.as_str() {
                // The sources may use each other's parts; general code names none.
                _ if sources.contains(&layer) => false,
                // The plumbing and the runtime sit below everything but errors and settings.
                "plumbing" => !["plumbing", "error", "config"].contains(&target_top.as_str()),
                "runtime" => !["plumbing", "error"].contains(&target_top.as_str()),
                _ => sources.contains(&target_top),
            };
            if forbidden {
                found.push((module.clone(), target.clone()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extension() -> (Graph, Vec<String>) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
        (graph(&src).expect("read src/"), source_folders(&src))
    }

    #[test]
    fn the_extension_has_no_import_cycle() {
        let (graph, _) = extension();
        assert!(graph.contains_key("jobs::runner"), "{graph:?}");
        assert_eq!(cycles(&graph), Vec::<BTreeSet<String>>::new());
    }

    #[test]
    fn xtask_has_no_import_cycle() {
        let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).expect("read src/");
        assert!(graph.contains_key("bench::report"), "{graph:?}");
        assert_eq!(cycles(&graph), Vec::<BTreeSet<String>>::new());
        // What every command runs programs with depends on no command.
        assert_eq!(graph["process"], BTreeSet::new());
    }

    #[test]
    fn general_code_names_no_source_and_the_plumbing_nothing_above_it() {
        let (graph, sources) = extension();
        // Every source has its SQL file beside its folder; there are sources to check.
        assert!(sources.len() >= 3, "{sources:?}");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for source in &sources {
            assert!(
                root.join(format!("sql/{source}.sql")).is_file(),
                "sql/{source}.sql"
            );
        }
        assert_eq!(violations(&graph, &sources), Vec::<(String, String)>::new());
    }

    #[test]
    fn the_checks_see_a_cycle_and_a_forbidden_dependency() {
        let mut graph = Graph::new();
        graph.insert("jobs::runner".into(), ["threads::sync".into()].into());
        graph.insert("threads::sync".into(), ["jobs::runner".into()].into());
        graph.insert("plumbing::txn".into(), ["jobs::queue".into()].into());
        assert_eq!(cycles(&graph).len(), 1);
        assert_eq!(
            violations(&graph, &["threads".into()]),
            [
                ("jobs::runner".to_string(), "threads::sync".to_string()),
                ("plumbing::txn".to_string(), "jobs::queue".to_string()),
            ]
        );
    }

    #[test]
    fn references_unfold_grouped_uses() {
        let found = references("use super::{queue, source::Job};", "super::");
        assert_eq!(
            found,
            [
                ("queue".to_string(), None),
                ("source".to_string(), Some("Job".to_string()))
            ]
        );
        let found = references("crate::jobs::queue::enqueue(", "crate::");
        assert_eq!(found, [("jobs".to_string(), Some("queue".to_string()))]);
    }
}
