//! Secrets out of messages in every form they were sent in, since an API may echo the
//! request back: raw, base64 (alone and as Basic's `user:password`), percent-encoded
//! (`%20` and `+` for a blank, either hex case) and JSON-escaped (also with `\/` and
//! `\u` escapes for what is not ASCII).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

/// What a redacted secret reads as.
pub const REDACTED: &str = "[redacted]";

/// The forms of a request's secrets, longest first so that no shorter form splits a longer one.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    forms: Vec<String>,
}

impl Secrets {
    /// A secret sent as itself, in a header, in a query string or as a bearer token.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut sent = vec![secret.to_string()];
        sent.extend(base64_forms(secret.as_bytes()));
        let percent = percent_encode(secret, "%20");
        sent.push(percent.clone());
        sent.push(percent_encode(secret, "+"));
        sent.push(lower_hex(&percent));
        for form in sent {
            for escaped in json_forms(&form) {
                self.push(escaped);
            }
            self.push(form);
        }
    }

    /// The password of HTTP Basic, which goes as base64 of `user:password`.
    pub fn add_basic(&mut self, username: &str, password: &str) {
        self.add(password);
        if password.is_empty() {
            return;
        }
        for form in base64_forms(format!("{username}:{password}").as_bytes()) {
            for escaped in json_forms(&form) {
                self.push(escaped);
            }
            self.push(form);
        }
    }

    fn push(&mut self, form: String) {
        if !self.forms.contains(&form) {
            self.forms.push(form);
            self.forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every form of every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        out
    }
}

fn base64_forms(bytes: &[u8]) -> Vec<String> {
    vec![
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ]
}

/// Every byte but RFC 3986's unreserved ones as `%XX`; a blank as `blank`.
fn percent_encode(text: &str, blank: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => blank.to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn lower_hex(percent: &str) -> String {
    let mut out = String::with_capacity(percent.len());
    let mut chars = percent.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
        }
    }
    out
}

/// A string as JSON encoders write it inside quotes: serde's, with `/` escaped, and with
/// everything beyond ASCII as `\u` escapes (Python's default).
fn json_forms(text: &str) -> Vec<String> {
    let plain = serde_json::to_string(text).expect("a string serializes");
    let plain = plain[1..plain.len() - 1].to_string();
    let mut ascii = String::with_capacity(plain.len());
    for c in plain.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    let slashed = plain.replace('/', "\\/");
    let mut forms = vec![slashed, ascii.replace('/', "\\/"), ascii, plain];
    forms.retain(|f| f != text);
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t pa/ss+wörd\"é";

    fn redacted(secrets: &Secrets, text: &str) -> String {
        let out = secrets.redact(text);
        assert!(out.contains(REDACTED), "{text} → {out}");
        out
    }

    #[test]
    fn every_form_of_a_secret_is_redacted() {
        let mut secrets = Secrets::default();
        secrets.add(SECRET);
        let forms = [
            SECRET.to_string(),
            STANDARD.encode(SECRET),
            STANDARD_NO_PAD.encode(SECRET),
            URL_SAFE_NO_PAD.encode(SECRET),
            "s3cr3t%20pa%2Fss%2Bw%C3%B6rd%22%C3%A9".into(),
            "s3cr3t+pa%2Fss%2Bw%C3%B6rd%22%C3%A9".into(),
            "s3cr3t%20pa%2fss%2bw%c3%b6rd%22%c3%a9".into(),
            r#"s3cr3t pa/ss+wörd\"é"#.into(),
            r#"s3cr3t pa\/ss+wörd\"é"#.into(),
            r#"s3cr3t pa/ss+w\u00f6rd\"\u00e9"#.into(),
        ];
        for form in forms {
            let text = format!(r#"{{"echo":"{form}","n":1}}"#);
            let out = redacted(&secrets, &text);
            assert_eq!(out, format!(r#"{{"echo":"{REDACTED}","n":1}}"#), "{form}");
        }
    }

    #[test]
    fn basic_credentials_are_redacted_as_sent() {
        let mut secrets = Secrets::default();
        secrets.add_basic("alice", "hunter2");
        let header = format!("Basic {}", STANDARD.encode("alice:hunter2"));
        assert_eq!(
            redacted(&secrets, &format!("echo: {header}")),
            format!("echo: Basic {REDACTED}")
        );
        assert_eq!(redacted(&secrets, "pw=hunter2"), format!("pw={REDACTED}"));
        assert_eq!(
            redacted(&secrets, &format!("x {}", STANDARD.encode("hunter2"))),
            format!("x {REDACTED}")
        );
        let escaped = STANDARD.encode("alice:hunter2?>>").replace('/', "\\/");
        let mut odd = Secrets::default();
        odd.add_basic("alice", "hunter2?>>");
        assert!(!odd.redact(&escaped).contains(&escaped));
    }

    #[test]
    fn nothing_else_is_touched() {
        let mut secrets = Secrets::default();
        secrets.add("");
        secrets.add_basic("user", "");
        assert!(secrets.is_empty());
        assert_eq!(secrets.redact("plain text"), "plain text");
    }
}
