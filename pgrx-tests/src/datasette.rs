//! Datasette, a REST server written by others (PyPI's datasette, installed by `cargo xtask
//! test` into a virtualenv: PULLSYNC_TEST_DATASETTE names its program), serving a SQLite
//! database this module makes: `items`, one row per id from 1, each with an RFC 3339
//! `updated_at` and two columns whose names SQL must quote (a reserved word and a hostile
//! one). Its JSON pages link the next by `next_url`, keyset by id.

use crate::wait;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A column name that would end a statement if it were not quoted.
pub const HOSTILE_COLUMN: &str = "a\"; DROP TABLE x; --";

/// Makes the database: argv = path, rows.
const MAKE: &str = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute('CREATE TABLE items (id integer PRIMARY KEY, name text, price real, active integer, '
           'updated_at text, "order" integer, "a""; DROP TABLE x; --" text)')
db.executemany('INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)',
               [(i, 'item %d' % i, i * 1.25, i % 2, '2024-01-01T%02d:%02d:%02dZ' % (i // 3600, i // 60 % 60, i % 60),
                 i, 'x%d' % i) for i in range(1, int(sys.argv[2]) + 1)])
db.commit()
"#;

/// Renames rows and moves their `updated_at` on: argv = path, timestamp, ids.
const TOUCH: &str = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executemany("UPDATE items SET name = 'renamed ' || id, updated_at = ? WHERE id = ?",
               [(sys.argv[2], int(i)) for i in sys.argv[3:]])
db.commit()
"#;

pub struct Datasette {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn program() -> PathBuf {
    std::env::var_os("PULLSYNC_TEST_DATASETTE")
        .map(PathBuf::from)
        .expect(
            "PULLSYNC_TEST_DATASETTE is not set: run the integration tests with `cargo xtask test`",
        )
}

/// The virtualenv's python, beside datasette's program: it has sqlite3.
fn python(script: &str, args: &[&str], what: &str) {
    let python = program().with_file_name("python");
    let status = wait::status(
        Command::new(python).arg("-c").arg(script).args(args),
        what,
        Duration::from_secs(60),
    );
    assert!(status.success(), "{what}: {status}");
}

impl Datasette {
    /// Datasette on a free loopback port, serving `rows` items from a database of its own.
    pub fn start(name: &str, rows: usize) -> Datasette {
        let dir = std::env::temp_dir().join(format!("pullsync-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("datasette's directory");
        let db = dir.join("items.db");
        python(
            MAKE,
            &[path(&db), &rows.to_string()],
            "making datasette's database",
        );
        let port = crate::ports::free_ports(1)[0];
        let log = std::fs::File::create(dir.join("datasette.log")).expect("datasette's log");
        let child = Command::new(program())
            .arg("serve")
            .arg(&db)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["--setting", "suggest_facets", "off"])
            .stdout(log.try_clone().expect("datasette's log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("datasette starts");
        let server = Datasette { child, port, dir };
        let url = format!("{}/-/versions.json", server.base_url());
        wait::until("datasette to answer", Duration::from_secs(60), || {
            reqwest::blocking::get(&url).is_ok_and(|r| r.status().is_success())
        });
        server
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Renames `ids` and sets their `updated_at` to `at`.
    pub fn touch(&self, at: &str, ids: &[i64]) {
        let db = self.dir.join("items.db");
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        let mut args = vec![path(&db), at];
        args.extend(ids.iter().map(String::as_str));
        python(TOUCH, &args, "updating datasette's rows");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

impl Drop for Datasette {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
