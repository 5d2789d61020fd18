//! Opaque feed cursors: base64url (no padding) of a JSON object holding the position, the
//! stream it belongs to, the provider identity that issued it, when it was issued, a random
//! salt and a MAC. Pure.
//!
//! The identity (system identifier, timeline, feed epoch) changes when the provider is
//! restored into another cluster, recovered to a point in time, promoted, or given a new
//! epoch; its transaction ids then no longer continue the old ones, so a cursor from before
//! is refused rather than resumed past rows it never saw.
//!
//! The position is (change_xid, id): the writing transaction's id and the row id. Pages are
//! served in that order and only below the oldest running transaction, so a transaction
//! that commits late still lands after every position already handed out.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Cursors older than this are refused: the consumer should start over.
pub const MAX_AGE_SECS: i64 = 30 * 24 * 3600;
/// Clock skew tolerated before a cursor counts as "from the future".
const FUTURE_SKEW_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub xid: u64,
    pub id: String,
}

impl Position {
    pub fn start() -> Self {
        Position {
            xid: 0,
            id: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub position: Position,
    /// Which stream it belongs to, e.g. `conversations` or `messages:<conversation id>`.
    pub stream: String,
    /// The provider identity that issued it.
    pub origin: String,
    /// Unix seconds when issued.
    pub issued_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor is not a pg_pullsync cursor")]
    Malformed,
    #[error("the cursor was altered")]
    Tampered,
    #[error("the cursor belongs to another stream")]
    WrongStream,
    #[error("the cursor was issued by another provider, or by this one before it was restored, recovered or promoted")]
    OtherProvider,
    #[error("the cursor was issued in the future")]
    FromTheFuture,
    #[error("the cursor is older than 30 days")]
    Expired,
}

/// Version 1 (0.1.0) had no identity; version 2 adds `o`.
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    x: u64,
    i: String,
    s: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    o: String,
    t: i64,
    n: u64,
    m: String,
}

const VERSION: u8 = 2;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], w: &Wire) -> String {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    let mut signed = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        w.v, w.x, w.i, w.s, w.t, w.n
    );
    if w.v >= 2 {
        signed.push('\u{1f}');
        signed.push_str(&w.o);
    }
    m.update(signed.as_bytes());
    let bytes = m.finalize().into_bytes();
    bytes[..16].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn encode(cursor: &Cursor, key: &[u8], salt: u64) -> String {
    let mut wire = Wire {
        v: VERSION,
        x: cursor.position.xid,
        i: cursor.position.id.clone(),
        s: cursor.stream.clone(),
        o: cursor.origin.clone(),
        t: cursor.issued_at,
        n: salt,
        m: String::new(),
    };
    wire.m = mac(key, &wire);
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).expect("a cursor serializes"))
}

/// Decodes and checks a cursor for `stream`, issued by the provider identity `origin`, at
/// time `now` (Unix seconds).
pub fn decode(
    text: &str,
    key: &[u8],
    stream: &str,
    origin: &str,
    now: i64,
) -> Result<Cursor, CursorError> {
    if text.len() > 4096 {
        return Err(CursorError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|_| CursorError::Malformed)?;
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
    if !(1..=VERSION).contains(&wire.v) || (wire.v == 1 && !wire.o.is_empty()) {
        return Err(CursorError::Malformed);
    }
    let expected = mac(key, &wire);
    if !constant_time_eq(expected.as_bytes(), wire.m.as_bytes()) {
        return Err(CursorError::Tampered);
    }
    if wire.s != stream {
        return Err(CursorError::WrongStream);
    }
    // A 0.1.0 cursor names no identity: whether its provider has moved since is unknown.
    if wire.o != origin {
        return Err(CursorError::OtherProvider);
    }
    if wire.t > now.saturating_add(FUTURE_SKEW_SECS) {
        return Err(CursorError::FromTheFuture);
    }
    if now.saturating_sub(wire.t) > MAX_AGE_SECS {
        return Err(CursorError::Expired);
    }
    Ok(Cursor {
        position: Position {
            xid: wire.x,
            id: wire.i,
        },
        stream: wire.s,
        origin: wire.o,
        issued_at: wire.t,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;
    const ORIGIN: &str = "7312345678901234567:00000001:1";

    fn cursor(xid: u64, id: &str) -> Cursor {
        Cursor {
            position: Position { xid, id: id.into() },
            stream: "conversations".into(),
            origin: ORIGIN.into(),
            issued_at: NOW,
        }
    }

    #[test]
    fn round_trips_and_refuses_what_it_should() {
        let c = cursor(42, "conv-7");
        let text = encode(&c, KEY, 1);
        assert!(!text.contains('='), "no padding");
        assert_eq!(decode(&text, KEY, "conversations", ORIGIN, NOW).unwrap(), c);
        assert_ne!(
            encode(&c, KEY, 1),
            encode(&c, KEY, 2),
            "the salt makes each cursor unique"
        );
        assert_eq!(
            decode(&text, KEY, "messages", ORIGIN, NOW),
            Err(CursorError::WrongStream)
        );
        assert_eq!(
            decode(&text, b"another key", "conversations", ORIGIN, NOW),
            Err(CursorError::Tampered)
        );
        assert_eq!(
            decode(&text, KEY, "conversations", ORIGIN, NOW - 3600),
            Err(CursorError::FromTheFuture)
        );
        assert_eq!(
            decode(&text, KEY, "conversations", ORIGIN, NOW + MAX_AGE_SECS + 1),
            Err(CursorError::Expired)
        );
        assert_eq!(
            decode("", KEY, "conversations", ORIGIN, NOW),
            Err(CursorError::Malformed)
        );
        assert_eq!(
            decode("!!!", KEY, "conversations", ORIGIN, NOW),
            Err(CursorError::Malformed)
        );
    }

    #[test]
    fn a_cursor_of_another_provider_identity_is_refused() {
        let text = encode(&cursor(42, "a"), KEY, 3);
        for moved in [
            "7399999999999999999:00000001:1",
            "7312345678901234567:00000002:1",
            "7312345678901234567:00000001:2",
        ] {
            assert_eq!(
                decode(&text, KEY, "conversations", moved, NOW),
                Err(CursorError::OtherProvider),
                "{moved}"
            );
        }
    }

    #[test]
    fn a_cursor_of_0_1_0_is_known_but_refused_as_of_unknown_identity() {
        let mut wire = Wire {
            v: 1,
            x: 42,
            i: "a".into(),
            s: "conversations".into(),
            o: String::new(),
            t: NOW,
            n: 5,
            m: String::new(),
        };
        wire.m = mac(KEY, &wire);
        let text = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap());
        assert!(!text.is_empty());
        assert_eq!(
            decode(&text, KEY, "conversations", ORIGIN, NOW),
            Err(CursorError::OtherProvider)
        );
        wire.x = 41;
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap());
        assert_eq!(
            decode(&forged, KEY, "conversations", ORIGIN, NOW),
            Err(CursorError::Tampered)
        );
    }

    #[test]
    fn an_edited_position_is_detected() {
        let text = encode(&cursor(42, "a"), KEY, 9);
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(&text).unwrap()).unwrap();
        let forged = URL_SAFE_NO_PAD.encode(json.replace("\"x\":42", "\"x\":41"));
        assert_eq!(
            decode(&forged, KEY, "conversations", ORIGIN, NOW),
            Err(CursorError::Tampered)
        );
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(xid in any::<u64>(), id in ".{0,40}", salt in any::<u64>(), t in 0i64..2_000_000_000) {
            let c = Cursor { position: Position { xid, id }, stream: "messages:c1".into(), origin: ORIGIN.into(), issued_at: t };
            prop_assert_eq!(decode(&encode(&c, KEY, salt), KEY, "messages:c1", ORIGIN, t).unwrap(), c);
        }

        #[test]
        fn garbage_never_panics(text in ".{0,200}") {
            let _ = decode(&text, KEY, "conversations", ORIGIN, NOW);
        }

        #[test]
        fn base64_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&URL_SAFE_NO_PAD.encode(bytes), KEY, "conversations", ORIGIN, NOW);
        }

        /// Signed cursors with any issue time and position: checked, never a panic.
        #[test]
        fn any_signed_cursor_is_checked_without_panic(xid in any::<u64>(), t in any::<i64>(), now in any::<i64>()) {
            let c = Cursor { position: Position { xid, id: "m1".into() }, stream: "conversations".into(), origin: ORIGIN.into(), issued_at: t };
            let _ = decode(&encode(&c, KEY, 1), KEY, "conversations", ORIGIN, now);
        }

        /// Changing any one character of a cursor makes it unusable.
        #[test]
        fn any_altered_character_is_refused(xid in any::<u64>(), id in "[a-z0-9]{1,20}", at in any::<prop::sample::Index>(), to in "[A-Za-z0-9_-]") {
            let c = Cursor { position: Position { xid, id }, stream: "conversations".into(), origin: ORIGIN.into(), issued_at: NOW };
            let text = encode(&c, KEY, 9);
            let i = at.index(text.len());
            prop_assume!(text[i..i + 1] != to);
            let altered = format!("{}{}{}", &text[..i], to, &text[i + 1..]);
            prop_assert!(decode(&altered, KEY, "conversations", ORIGIN, NOW).is_err());
        }

        /// Well-formed JSON in the cursor's shape with arbitrary values, unsigned: refused.
        #[test]
        fn forged_wire_values_are_refused(v in any::<u8>(), x in any::<u64>(), i in ".{0,20}", s in ".{0,20}", t in any::<i64>(), n in any::<u64>(), m in "[0-9a-f]{0,40}") {
            let wire = Wire { v, x, i, s, o: ORIGIN.into(), t, n, m };
            let text = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap());
            prop_assert!(decode(&text, KEY, "conversations", ORIGIN, NOW).is_err());
        }
    }
}
