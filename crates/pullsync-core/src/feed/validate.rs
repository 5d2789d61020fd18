//! Checks of feed arguments. Pure.

use crate::error::{InputError, Result};

pub fn consumer_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InputError::invalid(
            format!("consumer_id {id:?} is not valid"),
            "Use 1 to 64 characters: letters, digits, '_', '.', '-'.",
        ))
    }
}

pub fn api_key(key: &str) -> Result<()> {
    if key.len() < 16 || key.chars().any(char::is_whitespace) {
        return Err(InputError::invalid(
            "api_key must be at least 16 characters without whitespace",
            "Generate one, e.g. encode(gen_random_bytes(24), 'base64') from pgcrypto, or openssl rand -base64 24.",
        ));
    }
    Ok(())
}

/// `http://host[:port][/path]` or `https://…`, without query or credentials.
pub fn base_url(url: &str) -> Result<String> {
    let invalid = || {
        InputError::invalid(
            format!("base_url {url:?} is not an http(s) URL"),
            "Pass the feed server's address, e.g. 'https://feed.example.com' or 'http://127.0.0.1:8787'.",
        )
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(invalid)?;
    let host = rest.split('/').next().unwrap_or_default();
    let valid_host = !host.is_empty()
        && !host.contains('@')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !valid_host || url.contains(['?', '#', ' ']) {
        return Err(invalid());
    }
    Ok(url.trim_end_matches('/').to_string())
}

pub fn mode(mode: &str) -> Result<()> {
    match mode {
        "incremental" | "full" | "catch_up" => Ok(()),
        other => Err(InputError::invalid(
            format!("unknown mode {other:?}"),
            "Pass 'incremental', 'full' or 'catch_up'.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_ids() {
        assert!(consumer_id("partner-1.prod_a").is_ok());
        for bad in ["", "has space", "ü", &"x".repeat(65), "a/b"] {
            assert!(consumer_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_keys() {
        assert!(api_key("0123456789abcdef").is_ok());
        assert!(api_key("short").is_err());
        assert!(api_key("0123456789 abcdef").is_err());
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("http://127.0.0.1:8787/").unwrap(),
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            base_url("https://feed.example.com/v1").unwrap(),
            "https://feed.example.com/v1"
        );
        for bad in [
            "ftp://x",
            "http://",
            "127.0.0.1:8787",
            "http://u:p@host",
            "http://h/?q=1",
            "http://a b",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        assert!(mode("catch_up").is_ok());
        assert!(mode("everything").is_err());
    }
}
