//! The Threads simulator as a separate process, and plain HTTP/1.1 to its admin API.

use crate::cluster::Cluster;
use crate::process::{cmd, Result};
use crate::workspace::workspace_root;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// One request to a server on loopback; returns the body of a 2xx answer, an error for
/// any other (a server that is not the simulator answers 404 to its admin paths).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        return Err(format!("{method} {path} on port {port} answered {status:?}").into());
    }
    Ok(body.to_string())
}

/// Moves the simulator's clock `seconds` forward (it stands still otherwise).
pub fn advance_clock(port: u16, seconds: u64) -> Result<()> {
    http(
        port,
        "POST",
        "/admin/clock/advance",
        &format!("{{\"seconds\":{seconds}}}"),
    )
    .map(drop)
}

pub fn is_up(port: u16) -> bool {
    http(port, "GET", "/admin/clock", "").is_ok()
}

/// Starts threads-sim of `profile` ("release" or "debug") with `args` on `port`, its
/// output to `log`, and waits until it answers.
pub fn spawn(profile: &str, port: u16, args: &[String], log: &Path) -> Result<Child> {
    crate::ports::ensure_free(port, "the Threads simulator")?;
    let log = std::fs::File::create(log)?;
    let mut child = cmd(workspace_root()
        .join("target")
        .join(profile)
        .join("threads-sim")
        .to_str()
        .expect("utf-8 path"))
    .arg("--port")
    .arg(port.to_string())
    .args(args)
    .stdout(log.try_clone()?)
    .stderr(log)
    .spawn()?;
    // A world of 10,000 accounts takes a few seconds to generate.
    for _ in 0..600 {
        if is_up(port) {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("threads-sim exited: {status}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err("threads-sim did not start within a minute".into())
}

/// Adds every account of the simulator on `port` to `database` with
/// `threads_add_account`, as a user would; returns how many.
pub fn add_accounts(
    cluster: &Cluster,
    database: &str,
    port: u16,
    workspace: &str,
) -> Result<usize> {
    let accounts: Value = serde_json::from_str(&http(port, "GET", "/admin/accounts", "")?)?;
    let accounts = accounts
        .as_array()
        .ok_or("unexpected /admin/accounts answer")?;
    let mut adds = String::new();
    for a in accounts {
        adds.push_str(&format!(
            "SELECT pullsync.threads_add_account('{workspace}', '{}', '{}', '{}', now() + interval '58 days');\n",
            a["user_id"].as_str().unwrap_or_default(),
            a["username"].as_str().unwrap_or_default(),
            a["token"].as_str().unwrap_or_default(),
        ));
    }
    cluster.psql_quiet(database, &adds)?;
    Ok(accounts.len())
}
