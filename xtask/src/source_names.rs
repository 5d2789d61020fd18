//! What the general code and SQL may not say: the name of a source, of an object a source's
//! SQL file creates, or of a SQL function a source's Rust defines. A source is its folder
//! under `src/`, its `sql/<source>.sql` and one line in `lib.rs`; nothing else changes when
//! one is added. `cargo xtask test` runs these as unit tests.
#![cfg(test)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The text without its comments (`--` in SQL, `//` in Rust), which may say anything.
fn code(text: &str, comment: &str) -> String {
    text.lines()
        .map(|line| line.find(comment).map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// The objects a source's SQL creates in schema pullsync (tables, views, functions).
pub fn sql_objects(sql: &str) -> BTreeSet<String> {
    let sql = code(sql, "--");
    let mut found = BTreeSet::new();
    for kind in ["TABLE ", "VIEW ", "FUNCTION ", "PROCEDURE "] {
        for prefix in ["CREATE ", "CREATE OR REPLACE "] {
            let opening = format!("{prefix}{kind}pullsync.");
            let mut rest = sql.as_str();
            while let Some(at) = rest.find(&opening) {
                rest = &rest[at + opening.len()..];
                if let Some(name) = words(rest).next() {
                    found.insert(name.to_string());
                }
            }
        }
    }
    found
}

/// The SQL functions a source's Rust defines (`#[pg_extern]` functions).
pub fn rust_functions(rust: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = rust;
    while let Some(at) = rest.find("#[pg_extern") {
        rest = &rest[at..];
        if let Some(fn_at) = rest.find("fn ") {
            if let Some(name) = words(&rest[fn_at + 3..]).next() {
                found.insert(name.to_string());
            }
        }
        rest = &rest[1..];
    }
    found
}

/// What a source owns: its name, and the names of what it defines.
pub struct Owned {
    pub source: String,
    pub names: BTreeSet<String>,
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
}

pub fn owned(root: &Path, source: &str) -> Owned {
    let sql = std::fs::read_to_string(root.join(format!("sql/{source}.sql"))).unwrap_or_default();
    let mut names = sql_objects(&sql);
    let mut files = Vec::new();
    rust_files(&root.join("src").join(source), &mut files);
    for file in files {
        names.extend(rust_functions(
            &std::fs::read_to_string(&file).unwrap_or_default(),
        ));
    }
    Owned {
        source: source.to_string(),
        names,
    }
}

/// Where `text` (comments removed) names what `owned` owns: the source's name as a
/// literal ('threads', "threads", 'feed:…'), or one of its objects or functions.
pub fn named(text: &str, comment: &str, owned: &Owned) -> Vec<String> {
    let text = code(text, comment);
    let mut found = Vec::new();
    for quote in ['\'', '"'] {
        for end in [quote, ':'] {
            let literal = format!("{quote}{}{end}", owned.source);
            if text.contains(&literal) {
                found.push(literal);
            }
        }
    }
    for word in words(&text) {
        if owned.names.contains(word) && !found.iter().any(|f| f == word) {
            found.push(word.to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Every general file of the extension (Rust outside the source folders and the crate
    /// root; SQL outside the sources' files and the released scripts) with what it names.
    fn general_files_naming_sources() -> Vec<(String, String, Vec<String>)> {
        let root = root();
        let sources = crate::layering::source_folders(&root.join("src"));
        let owned: Vec<Owned> = sources.iter().map(|s| owned(&root, s)).collect();
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        let rust = files.into_iter().filter(|f| {
            let relative = f.strip_prefix(root.join("src")).expect("under src");
            let top = relative
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            !sources.contains(&top) && top != "lib.rs" && top != "pg_tests.rs"
        });
        let sql = std::fs::read_dir(root.join("sql"))
            .expect("sql/")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_stem().unwrap_or_default().to_string_lossy();
                !name.starts_with("pg_pullsync--") && !sources.iter().any(|s| *s == name)
            });
        let mut found = Vec::new();
        for (file, comment) in rust
            .map(|f| (f, "//"))
            .chain(sql.map(|f| (f, "--")))
            .collect::<Vec<_>>()
        {
            let text = std::fs::read_to_string(&file).expect("read");
            for o in &owned {
                let names = named(&text, comment, o);
                if !names.is_empty() {
                    let shown = file.strip_prefix(&root).unwrap_or(&file);
                    found.push((shown.display().to_string(), o.source.clone(), names));
                }
            }
        }
        found
    }

    #[test]
    fn no_general_file_names_a_source() {
        assert_eq!(
            general_files_naming_sources(),
            Vec::<(String, String, Vec<String>)>::new()
        );
    }

    #[test]
    fn each_source_owns_its_objects() {
        let threads = owned(&root(), "threads");
        assert!(threads.names.contains("workspace_threads_posts"));
        assert!(threads.names.contains("threads_source_state"));
        assert!(threads.names.contains("threads_sync_account"));
        let rest = owned(&root(), "rest");
        assert!(rest.names.contains("rest_sources"));
        assert!(rest.names.contains("rest_schedule"));
    }

    #[test]
    fn the_check_sees_a_name_outside_comments_only() {
        let owned = Owned {
            source: "threads".into(),
            names: ["workspace_threads_posts".to_string()].into(),
        };
        assert_eq!(
            named(
                "SELECT 1 FROM pullsync.workspace_threads_posts -- threads",
                "--",
                &owned
            ),
            ["workspace_threads_posts"]
        );
        assert_eq!(
            named("let s = \"threads\"; // 'threads'", "//", &owned),
            ["\"threads\""]
        );
        assert!(named(
            "-- 'threads' and pullsync.workspace_threads_posts",
            "--",
            &owned
        )
        .is_empty());
        assert_eq!(
            named(
                "source = 'feed:' || id",
                "--",
                &Owned {
                    source: "feed".into(),
                    names: BTreeSet::new()
                }
            ),
            ["'feed:"]
        );
    }

    #[test]
    fn objects_and_functions_are_read_from_their_definitions() {
        let sql = "CREATE TABLE pullsync.a (x int);\nCREATE OR REPLACE VIEW pullsync.b AS SELECT 1;\n-- CREATE TABLE pullsync.c\nCREATE FUNCTION pullsync.d() RETURNS int";
        assert_eq!(sql_objects(sql), ["a", "b", "d"].map(String::from).into());
        let rust = "#[pg_extern(schema = \"pullsync\")]\n#[search_path(pg_catalog)]\nfn rest_pull(name: &str) {}\nfn helper() {}";
        assert_eq!(rust_functions(rust), ["rest_pull".to_string()].into());
    }
}
