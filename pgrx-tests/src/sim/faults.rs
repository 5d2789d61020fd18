//! Fault injection: which fault fires for a request, per account or global, a given number
//! of times or with a probability. Pure.

use super::world::hash3;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Me,
    Threads,
    MediaInsights,
    AccountInsights,
    /// `threads_insights?metric=follower_demographics`: the same path as account
    /// insights, counted and faulted apart.
    FollowerDemographics,
    RefreshToken,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Me => "me",
            Endpoint::Threads => "threads",
            Endpoint::MediaInsights => "media_insights",
            Endpoint::AccountInsights => "account_insights",
            Endpoint::FollowerDemographics => "follower_demographics",
            Endpoint::RefreshToken => "refresh_access_token",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// 190 / 463
    ExpiredToken,
    /// 190 / 467
    InvalidToken,
    /// 24: how an expired token sometimes surfaces
    TokenNotFound,
    /// Throttling code (4, 17, 32, 613) over HTTP 400 or 403.
    Throttle {
        code: i64,
        status: u16,
    },
    /// HTTP 429 with Retry-After.
    TooManyRequests {
        retry_after: u64,
    },
    /// HTTP 400 code 100: Meta refuses the request as it stands (a demographics
    /// breakdown it will not answer for the account, say).
    BadRequest,
    /// HTTP 5xx with code 1 or 2.
    ServerError {
        status: u16,
    },
    /// Answer normally after this delay.
    Slow {
        ms: u64,
    },
    /// Never answer.
    Hang,
    MalformedJson,
    /// The connection closes halfway through the body.
    TruncatedBody,
    /// The first post of the next page vanishes while the current page is served.
    DisappearingPost,
    /// A page after the first repeats the previous page's last item.
    DuplicateItems,
    /// A token endpoint answers with an `expires_in` no token lives for.
    AbsurdExpiresIn,
    /// The first post's text on a listing page ends in what Meta sometimes sends.
    MalformedText {
        malformation: Malformation,
    },
    /// Answer normally, with Graph's usage headers: `X-App-Usage` at `percent`, and
    /// `X-Business-Use-Case-Usage` with `regain_minutes` when given.
    Usage {
        percent: u32,
        #[serde(default)]
        regain_minutes: Option<u64>,
    },
}

/// What a post's text may end in (Meta cuts long text mid-character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformation {
    /// `\ud83d` at the end of the string: half of a surrogate pair.
    LoneSurrogate,
    /// `\u12`: an escape cut short.
    CutEscape,
    /// `\x41`: an escape JSON does not know.
    InvalidEscape,
    /// `\u0000`, which Postgres text cannot hold.
    Nul,
    /// Raw control bytes (NUL, BEL) inside the string.
    RawControl,
    /// A UTF-8 sequence cut mid-character (`F0 9F`).
    InvalidUtf8,
    /// A post that cannot be read at all: its timestamp is no time.
    Unreadable,
}

impl Malformation {
    pub const ALL: [Malformation; 7] = [
        Malformation::LoneSurrogate,
        Malformation::CutEscape,
        Malformation::InvalidEscape,
        Malformation::Nul,
        Malformation::RawControl,
        Malformation::InvalidUtf8,
        Malformation::Unreadable,
    ];

    /// Breaks `body` (a serialized listing page) as this malformation does; unchanged
    /// when it holds no post text (or timestamp) to break.
    pub fn apply(self, body: &[u8]) -> Vec<u8> {
        let (field, tail): (&[u8], &[u8]) = match self {
            Malformation::LoneSurrogate => (b"\"text\":\"", br"\ud83d"),
            Malformation::CutEscape => (b"\"text\":\"", br"\u12"),
            Malformation::InvalidEscape => (b"\"text\":\"", br"\x41"),
            Malformation::Nul => (b"\"text\":\"", br"\u0000"),
            Malformation::RawControl => (b"\"text\":\"", b"\x00\x07"),
            Malformation::InvalidUtf8 => (b"\"text\":\"", b"\xF0\x9F"),
            Malformation::Unreadable => (b"\"timestamp\":\"", b""),
        };
        let Some(start) = find(body, field).map(|i| i + field.len()) else {
            return body.to_vec();
        };
        // The string's closing quote: the first one no backslash escapes.
        let mut end = start;
        while end < body.len() && body[end] != b'"' {
            end += if body[end] == b'\\' { 2 } else { 1 };
        }
        let mut out = body[..start].to_vec();
        if self == Malformation::Unreadable {
            out.extend_from_slice(b"yesterday");
        } else {
            out.extend_from_slice(&body[start..end]);
            out.extend_from_slice(tail);
        }
        out.extend_from_slice(&body[end..]);
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl FaultKind {
    /// Faults that change what a listing contains rather than the response itself.
    pub fn is_listing_fault(&self) -> bool {
        matches!(
            self,
            FaultKind::DisappearingPost | FaultKind::DuplicateItems
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Threads user id; none = every account.
    #[serde(default)]
    pub account: Option<String>,
    /// none = every endpoint.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// Fire at most this many times; none = unlimited.
    #[serde(default)]
    pub times: Option<u64>,
    /// Chance to fire on a matching request, 0..=1; none = always.
    #[serde(default)]
    pub probability: Option<f64>,
    /// Only on this page (1 = first) of a posts listing; none = any request.
    #[serde(default)]
    pub page: Option<u32>,
}

impl FaultSpec {
    /// `kind` on every account and endpoint, with `probability` per request.
    pub fn everywhere(kind: FaultKind, probability: f64) -> FaultSpec {
        FaultSpec {
            kind,
            account: None,
            endpoint: None,
            times: None,
            probability: Some(probability),
            page: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveFault {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub fired: u64,
}

#[derive(Debug, Default)]
pub struct Faults {
    active: Vec<ActiveFault>,
    next_id: u64,
    draws: u64,
    seed: u64,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Faults {
            seed,
            ..Default::default()
        }
    }

    pub fn add(&mut self, spec: FaultSpec) -> u64 {
        self.next_id += 1;
        self.active.push(ActiveFault {
            id: self.next_id,
            spec,
            fired: 0,
        });
        self.next_id
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    pub fn list(&self) -> Vec<ActiveFault> {
        self.active.clone()
    }

    /// The first fault that matches and fires for this request, counted as fired.
    /// `wanted` selects the kinds the caller can apply at this point.
    pub fn fire(
        &mut self,
        endpoint: Endpoint,
        account: Option<&str>,
        page: Option<u32>,
        wanted: impl Fn(&FaultKind) -> bool,
    ) -> Option<FaultKind> {
        for fault in &mut self.active {
            let spec = &fault.spec;
            let matches = wanted(&spec.kind)
                && spec.page.is_none_or(|p| Some(p) == page)
                && spec.endpoint.is_none_or(|e| e == endpoint)
                && spec.account.as_deref().is_none_or(|a| Some(a) == account)
                && spec.times.is_none_or(|t| fault.fired < t);
            if !matches {
                continue;
            }
            if let Some(p) = spec.probability {
                self.draws += 1;
                let draw =
                    (hash3(self.seed, fault.id, self.draws) % 1_000_000) as f64 / 1_000_000.0;
                if draw >= p {
                    continue;
                }
            }
            fault.fired += 1;
            return Some(fault.spec.kind.clone());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            kind,
            account: None,
            endpoint: None,
            times: None,
            probability: None,
            page: None,
        }
    }

    #[test]
    fn a_page_fault_fires_on_that_page_of_a_listing_only() {
        let mut f = Faults::new(1);
        f.add(FaultSpec {
            page: Some(2),
            times: Some(1),
            ..spec(FaultKind::Throttle {
                code: 4,
                status: 403,
            })
        });
        let any = |_: &FaultKind| true;
        assert_eq!(f.fire(Endpoint::Threads, Some("42"), Some(1), any), None);
        assert_eq!(f.fire(Endpoint::MediaInsights, Some("42"), None, any), None);
        assert!(f
            .fire(Endpoint::Threads, Some("42"), Some(2), any)
            .is_some());
        assert_eq!(f.fire(Endpoint::Threads, Some("42"), Some(2), any), None);
    }

    #[test]
    fn fires_only_where_configured_and_only_so_often() {
        let mut f = Faults::new(1);
        f.add(FaultSpec {
            account: Some("42".into()),
            endpoint: Some(Endpoint::MediaInsights),
            times: Some(2),
            ..spec(FaultKind::ServerError { status: 503 })
        });
        let any = |_: &FaultKind| true;
        assert_eq!(f.fire(Endpoint::Threads, Some("42"), None, any), None);
        assert_eq!(f.fire(Endpoint::MediaInsights, Some("7"), None, any), None);
        assert!(f
            .fire(Endpoint::MediaInsights, Some("42"), None, any)
            .is_some());
        assert!(f
            .fire(Endpoint::MediaInsights, Some("42"), None, any)
            .is_some());
        assert_eq!(f.fire(Endpoint::MediaInsights, Some("42"), None, any), None);
        assert_eq!(f.list()[0].fired, 2);
    }

    #[test]
    fn probability_fires_about_that_often_and_deterministically() {
        let run = || {
            let mut f = Faults::new(9);
            f.add(FaultSpec {
                probability: Some(0.1),
                ..spec(FaultKind::Hang)
            });
            (0..10_000)
                .filter(|_| f.fire(Endpoint::Me, None, None, |_| true).is_some())
                .count()
        };
        let n = run();
        assert!((800..1200).contains(&n), "{n}");
        assert_eq!(n, run());
    }

    #[test]
    fn listing_faults_wait_for_a_listing() {
        let mut f = Faults::new(1);
        f.add(spec(FaultKind::DuplicateItems));
        assert_eq!(
            f.fire(Endpoint::Threads, None, None, |k| !k.is_listing_fault()),
            None
        );
        assert_eq!(
            f.fire(Endpoint::Threads, None, None, FaultKind::is_listing_fault),
            Some(FaultKind::DuplicateItems)
        );
    }

    #[test]
    fn malformations_break_the_first_text_only() {
        let body = br#"{"data":[{"id":"1","text":"a \"b\"","timestamp":"2024-07-12T08:00:00+0000"},{"id":"2","text":"c"}]}"#;
        assert_eq!(
            Malformation::LoneSurrogate.apply(body),
            br#"{"data":[{"id":"1","text":"a \"b\"\ud83d","timestamp":"2024-07-12T08:00:00+0000"},{"id":"2","text":"c"}]}"#
        );
        assert!(serde_json::from_slice::<serde_json::Value>(
            &Malformation::LoneSurrogate.apply(body)
        )
        .is_err());
        let unreadable = Malformation::Unreadable.apply(body);
        let value: serde_json::Value = serde_json::from_slice(&unreadable).unwrap();
        assert_eq!(value["data"][0]["timestamp"], "yesterday");
        assert_eq!(Malformation::Nul.apply(b"{\"data\":[]}"), b"{\"data\":[]}");
        let s: FaultSpec = serde_json::from_str(
            r#"{"type":"malformed_text","malformation":"lone_surrogate","times":1}"#,
        )
        .unwrap();
        assert_eq!(
            s.kind,
            FaultKind::MalformedText {
                malformation: Malformation::LoneSurrogate
            }
        );
    }

    #[test]
    fn specs_parse_from_json() {
        let s: FaultSpec = serde_json::from_str(
            r#"{"type":"throttle","code":613,"status":403,"account":"1","times":1}"#,
        )
        .unwrap();
        assert_eq!(
            s.kind,
            FaultKind::Throttle {
                code: 613,
                status: 403
            }
        );
        let s: FaultSpec =
            serde_json::from_str(r#"{"type":"too_many_requests","retry_after":3}"#).unwrap();
        assert_eq!(s.kind, FaultKind::TooManyRequests { retry_after: 3 });
        let s: FaultSpec =
            serde_json::from_str(r#"{"type":"bad_request","endpoint":"follower_demographics"}"#)
                .unwrap();
        assert_eq!(s.kind, FaultKind::BadRequest);
        assert_eq!(s.endpoint, Some(Endpoint::FollowerDemographics));
    }
}
