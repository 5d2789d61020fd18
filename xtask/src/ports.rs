//! Ports for the servers xtask starts. Test servers take ports the OS hands out, so a
//! server of the user's on a port an earlier version of the tests used (a demo cluster,
//! say) is never reached; a fixed port (the demo's) is checked before use.

use crate::process::Result;
use std::net::TcpListener;

/// `n` distinct ports no one listens on now.
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

pub fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Refuses to go on when something else holds `port`: whatever answers there is not
/// the server `what` names.
pub fn ensure_free(port: u16, what: &str) -> Result<()> {
    if is_free(port) {
        Ok(())
    } else {
        Err(format!(
            "port {port}, which {what} needs, is taken by another server; \
             stop it or free the port (xtask will not talk to a server it did not start)"
        )
        .into())
    }
}

/// Points `cargo pgrx test` at a free port: pgrx takes `base_testing_port` of its
/// config.toml plus the major version, and its default (32200) may be someone's.
pub fn choose_pgrx_test_port(config: &std::path::Path, major: u16) -> Result<u16> {
    let [port] = free_ports::<1>()?;
    let base = port
        .checked_sub(major)
        .ok_or("the OS handed out a port below the major version")?;
    let text = std::fs::read_to_string(config)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("base_testing_port"))
        .collect();
    // Top-level keys go before the first table.
    let (top, tables) = match kept.iter().position(|l| l.trim_start().starts_with('[')) {
        Some(i) => kept.split_at(i),
        None => (&kept[..], &[][..]),
    };
    let mut out: Vec<String> = top.iter().map(|l| l.to_string()).collect();
    out.push(format!("base_testing_port = {base}"));
    out.extend(tables.iter().map(|l| l.to_string()));
    std::fs::write(config, out.join("\n") + "\n")?;
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_free() {
        let ports = free_ports::<3>().unwrap();
        assert_ne!(ports[0], ports[1]);
        assert_ne!(ports[1], ports[2]);
        assert!(ports.iter().all(|p| is_free(*p)));
    }

    #[test]
    fn a_taken_port_is_refused_with_a_reason() {
        let held = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let err = ensure_free(port, "the test cluster")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&port.to_string()) && err.contains("taken"),
            "{err}"
        );
    }

    #[test]
    fn the_pgrx_test_port_is_written_before_the_tables() {
        let dir = std::env::temp_dir().join(format!("xtask-ports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            "base_testing_port = 32200\n[configs]\npg15 = \"/x/pg_config\"\n",
        )
        .unwrap();
        let port = choose_pgrx_test_port(&config, 15).unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        assert_eq!(
            text,
            format!(
                "base_testing_port = {}\n[configs]\npg15 = \"/x/pg_config\"\n",
                port - 15
            )
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
