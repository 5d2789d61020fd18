//! The Threads simulator as a separate process, and plain HTTP/1.1 to its admin API.

use crate::run::{cmd, workspace_root, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// One request to a server on loopback; returns the body.
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
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

pub fn is_up(port: u16) -> bool {
    http(port, "GET", "/admin/clock", "").is_ok()
}

/// Starts the release threads-sim with `args` on `port`, its output to `log`, and waits
/// until it answers.
pub fn spawn(port: u16, args: &[String], log: &Path) -> Result<Child> {
    let log = std::fs::File::create(log)?;
    let mut child = cmd(workspace_root()
        .join("target/release/threads-sim")
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
