//! Lenient reading of Threads answers. Meta cuts long text mid-character and sometimes
//! sends JSON a strict parser refuses (a lone UTF-16 surrogate escape such as `\ud83d` at
//! the end of a string); one such post must not cost its page, let alone its account.
//!
//! Two steps, used for every Threads answer (listings and insights alike): `repair` turns
//! the bytes into valid JSON, putting U+FFFD where a character cannot be read; then a
//! listing is read item by item (`read_page`), so a post that still cannot be read is
//! skipped with a note and the rest of its page is kept.

use std::borrow::Cow;
use threads_model::{Page, Paging};

/// An answer's bytes made valid JSON, and how many characters were replaced by U+FFFD.
#[derive(Debug)]
pub struct Repaired<'a> {
    pub json: Cow<'a, [u8]>,
    pub replaced: usize,
}

const REPLACEMENT: &str = "\\ufffd";

/// Repairs what a strict parser refuses inside strings: invalid UTF-8, lone or unpaired
/// surrogate escapes, short `\u` escapes and unknown escapes become U+FFFD; a raw control
/// character is escaped. A NUL (raw or `\u0000`) becomes U+FFFD too: Postgres text cannot
/// hold one. Outside strings nothing changes (a broken structure stays an error).
pub fn repair(body: &[u8]) -> Repaired<'_> {
    let text = String::from_utf8_lossy(body);
    let invalid_utf8 = match &text {
        Cow::Borrowed(_) => 0,
        Cow::Owned(t) => t.matches('\u{FFFD}').count() - count_fffd(body),
    };
    if invalid_utf8 == 0 && !needs_repair(body) {
        return Repaired {
            json: Cow::Borrowed(body),
            replaced: 0,
        };
    }
    let s = text.as_ref();
    let mut out = String::with_capacity(s.len() + 16);
    let mut replaced = invalid_utf8;
    let mut changed = invalid_utf8 > 0;
    let mut in_string = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().expect("in bounds");
        if !in_string {
            in_string = c == '"';
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        match c {
            '"' => {
                in_string = false;
                out.push(c);
                i += 1;
            }
            '\\' => {
                let (written, used, bad) = escape(&s[i..]);
                out.push_str(written);
                replaced += bad;
                i += used;
            }
            '\0' => {
                out.push_str(REPLACEMENT);
                replaced += 1;
                i += 1;
            }
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
                changed = true;
                i += 1;
            }
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    if replaced == 0 && !changed {
        return Repaired {
            json: Cow::Borrowed(body),
            replaced: 0,
        };
    }
    Repaired {
        json: Cow::Owned(out.into_bytes()),
        replaced,
    }
}

/// U+FFFD characters the body already held (they are no repair).
fn count_fffd(body: &[u8]) -> usize {
    body.windows(3).filter(|w| *w == [0xEF, 0xBF, 0xBD]).count()
}

/// Whether valid UTF-8 may hold anything `repair` changes: an escape (each is checked) or
/// a control character inside a string (outside one, tabs and line breaks are whitespace).
fn needs_repair(bytes: &[u8]) -> bool {
    let mut in_string = false;
    for &b in bytes {
        match b {
            b'\\' => return true,
            b'"' => in_string = !in_string,
            _ if in_string && b < 0x20 => return true,
            _ => {}
        }
    }
    false
}

/// One escape at the start of `s` (which begins with a backslash): what to write, how
/// many bytes it used, how many characters it replaced.
fn escape(s: &str) -> (&str, usize, usize) {
    let b = s.as_bytes();
    match b.get(1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => (&s[..2], 2, 0),
        Some(b'u') => match hex4(&b[2..]) {
            None => {
                // A cut escape: drop it and the hex digits it had.
                let digits = b[2..]
                    .iter()
                    .take(4)
                    .take_while(|d| d.is_ascii_hexdigit())
                    .count();
                (REPLACEMENT, 2 + digits, 1)
            }
            Some(0) => (REPLACEMENT, 6, 1),
            Some(0xD800..=0xDBFF) => {
                let low = (b.get(6) == Some(&b'\\') && b.get(7) == Some(&b'u'))
                    .then(|| hex4(&b[8..]))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => (&s[..12], 12, 0),
                    _ => (REPLACEMENT, 6, 1),
                }
            }
            Some(0xDC00..=0xDFFF) => (REPLACEMENT, 6, 1),
            Some(_) => (&s[..6], 6, 0),
        },
        // An escape JSON does not know: the backslash and the character it escaped.
        Some(_) => {
            let next = s[1..].chars().next().map_or(0, char::len_utf8);
            (REPLACEMENT, 1 + next, 1)
        }
        None => (REPLACEMENT, 1, 1),
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let digits = b.get(..4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// A listing page read item by item: the items that could be read, and those that could
/// not.
#[derive(Debug)]
pub struct ItemPage<T> {
    pub page: Page<T>,
    pub unreadable: Vec<Unreadable>,
}

/// An item that could not be read: its id when it has one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: Option<String>,
    pub note: String,
}

/// Reads a listing's envelope, then each item on its own.
pub fn read_page<T: serde::de::DeserializeOwned>(
    json: &[u8],
) -> Result<ItemPage<T>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Raw {
        data: Vec<serde_json::Value>,
        #[serde(default)]
        paging: Option<Paging>,
    }
    let raw: Raw = serde_json::from_slice(json)?;
    let mut data = Vec::with_capacity(raw.data.len());
    let mut unreadable = Vec::new();
    for (index, item) in raw.data.into_iter().enumerate() {
        let id = item
            .get("id")
            .and_then(|id| id.as_str())
            .map(str::to_string);
        match serde_json::from_value::<T>(item) {
            Ok(item) => data.push(item),
            Err(e) => {
                let which = id.as_ref().map_or_else(
                    || format!("item {} of a page", index + 1),
                    |id| format!("post {id}"),
                );
                unreadable.push(Unreadable {
                    id,
                    note: format!("{which} could not be read ({e}); skipped"),
                });
            }
        }
    }
    Ok(ItemPage {
        page: Page {
            data,
            paging: raw.paging,
        },
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use threads_model::Post;

    /// The text of `{"t":"<inner>"}` after repair, and how many characters were replaced.
    fn text_of(inner: &[u8]) -> (String, usize) {
        let mut body = br#"{"t":""#.to_vec();
        body.extend_from_slice(inner);
        body.extend_from_slice(br#""}"#);
        let repaired = repair(&body);
        let value: serde_json::Value =
            serde_json::from_slice(&repaired.json).expect("repaired JSON parses");
        (value["t"].as_str().unwrap().to_string(), repaired.replaced)
    }

    #[test]
    fn valid_json_is_left_alone() {
        let body = br#"{"t":"caf\u00e9 \ud83d\ude00 \"q\" \\ \n","n":[1, 2]}"#;
        let repaired = repair(body);
        assert!(matches!(repaired.json, Cow::Borrowed(_)));
        assert_eq!(repaired.replaced, 0);
        let body = "{\"t\":\"already \u{FFFD} here\"}".as_bytes();
        assert_eq!(repair(body).replaced, 0);
    }

    #[test]
    fn a_lone_high_surrogate_at_the_end_of_a_string() {
        assert_eq!(text_of(br"cut \ud83d"), ("cut \u{FFFD}".into(), 1));
    }

    #[test]
    fn a_high_surrogate_followed_by_no_low_one() {
        assert_eq!(text_of(br"a\ud83dxb"), ("a\u{FFFD}xb".into(), 1));
        assert_eq!(text_of(br"a\ud83d\u0041"), ("a\u{FFFD}A".into(), 1));
    }

    #[test]
    fn a_lone_low_surrogate() {
        assert_eq!(text_of(br"\ude00!"), ("\u{FFFD}!".into(), 1));
    }

    #[test]
    fn an_escape_cut_short() {
        assert_eq!(text_of(br"ab\u12"), ("ab\u{FFFD}".into(), 1));
        assert_eq!(text_of(br"ab\u12zz"), ("ab\u{FFFD}zz".into(), 1));
    }

    #[test]
    fn an_escape_json_does_not_know() {
        assert_eq!(text_of(br"a\x41\'"), ("a\u{FFFD}41\u{FFFD}".into(), 2));
    }

    #[test]
    fn invalid_utf8_and_text_cut_mid_character() {
        assert_eq!(text_of(b"ok \xF0\x9F"), ("ok \u{FFFD}".into(), 1));
        assert_eq!(text_of(b"\xFFx"), ("\u{FFFD}x".into(), 1));
    }

    #[test]
    fn nul_escaped_or_raw_becomes_a_replacement() {
        assert_eq!(text_of(br"a\u0000b"), ("a\u{FFFD}b".into(), 1));
        assert_eq!(text_of(b"a\0b"), ("a\u{FFFD}b".into(), 1));
    }

    #[test]
    fn raw_control_characters_are_escaped_not_lost() {
        assert_eq!(
            text_of(b"line\nnext\ttab\x07"),
            ("line\nnext\ttab\x07".into(), 0)
        );
    }

    #[test]
    fn a_broken_structure_stays_an_error() {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&repair(b"{\"a\":<html>").json).is_err()
        );
    }

    #[test]
    fn an_unreadable_item_costs_only_itself() {
        let body = br#"{"data":[
            {"id":"1","media_type":"TEXT_POST","timestamp":"2024-07-12T08:00:00+0000"},
            {"id":"2","timestamp":"yesterday"},
            {"nothing":true},
            {"id":"4","media_type":"IMAGE","timestamp":"2024-07-12T07:00:00+0000"}],
            "paging":{"cursors":{"after":"A"},"next":"n"}}"#;
        let read = read_page::<Post>(body).unwrap();
        let ids: Vec<&str> = read.page.data.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["1", "4"]);
        assert_eq!(read.page.next_after(), Some("A"));
        assert_eq!(read.unreadable.len(), 2);
        assert_eq!(read.unreadable[0].id.as_deref(), Some("2"));
        assert!(
            read.unreadable[0]
                .note
                .starts_with("post 2 could not be read"),
            "{:?}",
            read.unreadable
        );
        assert_eq!(read.unreadable[1].id, None);
        assert!(
            read.unreadable[1].note.starts_with("item 3 of a page"),
            "{:?}",
            read.unreadable
        );
        assert!(read_page::<Post>(br#"{"data":{}}"#).is_err());
    }
}
