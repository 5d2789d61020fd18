//! Connections to the test cluster that `cargo xtask test` starts (PULLSYNC_TEST_DSN).

use postgres::{Client, NoTls};

/// The superuser DSN of the test cluster.
pub fn dsn() -> String {
    std::env::var("PULLSYNC_TEST_DSN").unwrap_or_else(|_| {
        panic!("PULLSYNC_TEST_DSN is not set: run the integration tests with `cargo xtask test`")
    })
}

/// Ceilings on every connection of the tests, so a server that never answers or a
/// statement stuck on a lock fails the test instead of hanging it: far above what any
/// connection or statement of theirs takes.
pub(crate) const CEILINGS: &str = "connect_timeout=30 options='-c statement_timeout=600s'";

fn dsn_for(database: &str, user: &str) -> String {
    let base: Vec<String> = dsn()
        .split_whitespace()
        .filter(|kv| !kv.starts_with("dbname=") && !kv.starts_with("user="))
        .map(String::from)
        .collect();
    format!(
        "{} dbname={database} user={user} {CEILINGS}",
        base.join(" ")
    )
}

/// The superuser connection string for `database`, for the client programs (pg_dump,
/// pg_restore, psql), which take one wherever they take a database name.
pub fn conninfo(database: &str) -> String {
    dsn_for(database, "postgres")
}

/// The connection string for `user` on `database`, for a `postgres::Config` of one's own.
pub fn conninfo_as(database: &str, user: &str) -> String {
    dsn_for(database, user)
}

pub fn connect(database: &str) -> Client {
    connect_as(database, "postgres")
}

pub fn connect_as(database: &str, user: &str) -> Client {
    try_connect_as(database, user)
        .unwrap_or_else(|e| panic!("connect to {database} as {user}: {e}"))
}

/// A connection, or why there is none (the server may be restarting).
pub fn try_connect_as(database: &str, user: &str) -> Result<Client, postgres::Error> {
    Client::connect(&dsn_for(database, user), NoTls)
}

/// Drops and recreates `name`, so each test owns its database and tests run in parallel.
pub fn fresh_database(name: &str) -> Client {
    let mut admin = connect("postgres");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&sql).expect("recreate test database");
    }
    connect(name)
}

/// A fresh database with pg_pullsync installed.
pub fn fresh_extension_database(name: &str) -> Client {
    let mut client = fresh_database(name);
    client
        .batch_execute("CREATE EXTENSION pg_pullsync")
        .expect("CREATE EXTENSION pg_pullsync");
    client
}

/// (Re)creates a login role with no privileges.
pub fn fresh_role(client: &mut Client, role: &str) {
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                 EXECUTE 'DROP OWNED BY {role} CASCADE';
                 EXECUTE 'DROP ROLE {role}';
               END IF;
             END $$;
             CREATE ROLE {role} LOGIN;"
        ))
        .expect("create role");
}

/// The SQLSTATE of a failed statement, or None when it succeeded.
pub fn sqlstate_of(client: &mut Client, sql: &str) -> Option<String> {
    match client.batch_execute(sql) {
        Ok(()) => None,
        Err(e) => Some(
            e.code()
                .map(|c| c.code().to_owned())
                .unwrap_or_else(|| panic!("no SQLSTATE for {sql}: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::CEILINGS;
    use std::time::Duration;

    #[test]
    fn the_ceilings_reach_the_client_and_the_server() {
        let config: postgres::Config = format!("host=127.0.0.1 user=postgres {CEILINGS}")
            .parse()
            .unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(30)));
        assert_eq!(config.get_options(), Some("-c statement_timeout=600s"));
    }
}
