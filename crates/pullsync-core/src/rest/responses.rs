//! A source's response actions (`config.responses`): rules checked in order against every
//! answer, before its status is classified, each matching a status (or several) and/or a
//! text in the body, and saying what the answer means: the end of the listing, a failure
//! to retry, a page to skip, or a failure of the run.

use super::config::{Pagination, RestConfig};
use super::paging::{self, Answer, PagingError, Position, Walked};
use crate::error::{InputError, Result};
use crate::http::{FailureClass, Gate, Verdict};
use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The listing ends here, cleanly: the run completes.
    End,
    /// Transient: made again with the HTTP layer's backoff (`retries`).
    Retry,
    /// The page is left out and counted; the listing goes on where it can.
    Skip,
    /// The run fails with the rule's message.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Any of these statuses (empty: any status).
    pub status: Vec<u16>,
    /// A text the body holds.
    pub body_contains: Option<String>,
    pub action: Action,
    pub message: Option<String>,
}

/// The rules, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Responses(pub Vec<Rule>);

const ACTIONS: &str = "\"end\", \"retry\", \"skip\" or \"fail\"";

fn bad(key: &str, problem: &str, hint: impl Into<String>) -> InputError {
    InputError::invalid(format!("config.{key} {problem}"), hint)
}

impl Responses {
    /// `config.responses`: a list of `{"status", "body_contains", "action", "message"}`.
    pub fn parse(value: Option<&Value>) -> Result<Responses> {
        let rules = match value {
            None | Some(Value::Null) => return Ok(Responses::default()),
            Some(Value::Array(rules)) => rules,
            Some(_) => {
                return Err(bad(
                    "responses",
                    "must be a list of rules",
                    format!(
                        "Write [{{\"status\": 404, \"action\": \"end\"}}]; actions: {ACTIONS}."
                    ),
                ))
            }
        };
        rules
            .iter()
            .enumerate()
            .map(|(i, rule)| parse_rule(rule, &format!("responses[{i}]")))
            .collect::<Result<Vec<_>>>()
            .map(Responses)
    }

    /// The first rule an answer matches, and its place.
    pub fn matching(&self, status: u16, body: &[u8]) -> Option<(usize, &Rule)> {
        self.0.iter().enumerate().find(|(_, rule)| {
            (rule.status.is_empty() || rule.status.contains(&status))
                && rule
                    .body_contains
                    .as_ref()
                    .is_none_or(|text| contains(body, text.as_bytes()))
        })
    }

    /// What the matching rule does with an answer, if one matches.
    pub fn action(&self, status: u16, body: &[u8]) -> Option<Action> {
        self.matching(status, body).map(|(_, rule)| rule.action)
    }
}

fn contains(body: &[u8], text: &[u8]) -> bool {
    body.windows(text.len()).any(|w| w == text)
}

fn parse_rule(value: &Value, at: &str) -> Result<Rule> {
    let Some(obj) = value.as_object() else {
        return Err(bad(
            at,
            "must be a JSON object",
            format!("Write {{\"status\": 404, \"action\": \"end\"}}; actions: {ACTIONS}."),
        ));
    };
    let known = ["status", "body_contains", "action", "message"];
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(bad(
            &format!("{at}.{k}"),
            "is not a key pg_pullsync knows",
            format!("Known keys here: {}.", known.join(", ")),
        ));
    }
    let status = match obj.get("status") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|s| status_code(s, &format!("{at}.status")))
            .collect::<Result<_>>()?,
        Some(s) => vec![status_code(s, &format!("{at}.status"))?],
    };
    let text = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(Some(s.clone())),
        Some(_) => Err(bad(
            &format!("{at}.{key}"),
            "must be a non-empty string (at most 1024 bytes)",
            format!("Set {at}.{key} to a string."),
        )),
    };
    let body_contains = text("body_contains")?;
    let message = text("message")?;
    if status.is_empty() && body_contains.is_none() {
        return Err(bad(
            at,
            "matches nothing",
            "Give a rule a status (a number or a list), body_contains, or both.",
        ));
    }
    let action = match obj.get("action").and_then(Value::as_str) {
        Some("end") => Action::End,
        Some("retry") => Action::Retry,
        Some("skip") => Action::Skip,
        Some("fail") => Action::Fail,
        _ => {
            return Err(bad(
                &format!("{at}.action"),
                &format!("must be {ACTIONS}"),
                "Say what a matching answer means: the end of the listing, a failure to retry, a page to skip, a failure of the run.",
            ))
        }
    };
    Ok(Rule {
        status,
        body_contains,
        action,
        message,
    })
}

fn status_code(value: &Value, at: &str) -> Result<u16> {
    value
        .as_u64()
        .filter(|s| (100..=599).contains(s))
        .map(|s| s as u16)
        .ok_or_else(|| {
            bad(
                at,
                "must be an HTTP status (100 to 599) or a list of them",
                "Write e.g. 404 or [204, 404].",
            )
        })
}

/// The rules, consulted by the HTTP layer on every answer: an answer an `end` or `skip`
/// rule matches is handed back whatever its status (`Answer::status`; the listing reads it
/// with `action`), `retry` makes it a transient failure, `fail` a refusal.
impl Gate for Responses {
    fn admit(&self) -> std::result::Result<(), crate::http::Failure> {
        Ok(())
    }

    fn answered(&self, _: &std::result::Result<crate::http::Answer, crate::http::Failure>) {}

    fn judge(&self, status: u16, body: &[u8]) -> Verdict {
        let Some((i, rule)) = self.matching(status, body) else {
            return Verdict::Usual;
        };
        let said = |what: &str| match &rule.message {
            Some(message) => format!("{message} (config.responses[{i}], {what})"),
            None => format!("the answer matched config.responses[{i}] ({what})"),
        };
        match rule.action {
            Action::End | Action::Skip => Verdict::Answer,
            Action::Retry => Verdict::Failure(FailureClass::Transient, said("retry")),
            Action::Fail => Verdict::Failure(FailureClass::Refused, said("fail")),
        }
    }
}

/// Where the listing goes after a skipped page at `at`: a page number or offset moves on
/// by a whole page, a `Link` header the skipped answer still carried is followed; a cursor
/// or next URL would come from the skipped body, so the listing ends there.
pub fn after_skip(
    config: &RestConfig,
    at: &Position,
    link: Option<&str>,
) -> std::result::Result<Option<Position>, PagingError> {
    Ok(match &config.pagination {
        // The page's records were not read: it counts as a whole one.
        Pagination::PageNumber { start, .. } => Some(Position::Page {
            page: match at {
                Position::Page { page } => page + 1,
                _ => start + 1,
            },
        }),
        Pagination::Offset { limit, .. } => Some(Position::Offset {
            offset: match at {
                Position::Offset { offset } => offset + limit,
                _ => *limit,
            },
        }),
        Pagination::LinkHeader => {
            let empty: &RawValue = serde_json::from_str("[]").expect("an empty array");
            let answer = Answer { body: empty, link };
            paging::next(config, at, &answer, &Walked::default())?
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(value: Value) -> Responses {
        Responses::parse(Some(&value)).unwrap()
    }

    fn refusal(value: Value) -> String {
        match Responses::parse(Some(&value)) {
            Err(InputError::Invalid { message, hint }) => {
                assert!(!hint.is_empty());
                message
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn rules_parse_with_a_status_a_list_or_a_body_text() {
        let r = rules(json!([
            {"status": 404, "action": "end"},
            {"status": [500, 503], "body_contains": "busy", "action": "retry"},
            {"body_contains": "\"error\"", "action": "fail", "message": "the API said no"},
        ]));
        assert_eq!(r.0.len(), 3);
        assert_eq!(r.0[1].status, vec![500, 503]);
        assert_eq!(r.0[2].message.as_deref(), Some("the API said no"));
        assert_eq!(Responses::parse(None).unwrap(), Responses::default());
    }

    #[test]
    fn every_refusal_names_the_key() {
        assert!(refusal(json!({"status": 404})).starts_with("config.responses "));
        assert!(refusal(json!([1])).starts_with("config.responses[0] "));
        assert!(refusal(json!([{"status": 404, "action": "ignore"}]))
            .starts_with("config.responses[0].action"));
        assert!(refusal(json!([{"action": "end"}])).starts_with("config.responses[0] matches"));
        assert!(refusal(json!([{"status": 700, "action": "end"}]))
            .starts_with("config.responses[0].status"));
        assert!(refusal(json!([{"status": [], "action": "end"}]))
            .starts_with("config.responses[0].status"));
        assert!(
            refusal(json!([{"status": 404, "action": "end"}, {"status": 1, "action": "end"}]))
                .starts_with("config.responses[1].status")
        );
        assert!(
            refusal(json!([{"status": 404, "action": "end", "when": 1}]))
                .starts_with("config.responses[0].when")
        );
        assert!(refusal(json!([{"body_contains": "", "action": "end"}]))
            .starts_with("config.responses[0].body_contains"));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let r = rules(json!([
            {"status": 200, "body_contains": "rate exceeded", "action": "retry"},
            {"status": [204, 404], "action": "end"},
            {"body_contains": "broken", "action": "skip"},
            {"status": 200, "body_contains": "\"error\"", "action": "fail"},
        ]));
        assert_eq!(
            r.action(200, b"{\"error\": \"rate exceeded\"}"),
            Some(Action::Retry)
        );
        assert_eq!(r.action(404, b"not found"), Some(Action::End));
        assert_eq!(r.action(204, b""), Some(Action::End));
        assert_eq!(r.action(500, b"broken"), Some(Action::Skip));
        assert_eq!(r.action(200, b"{\"error\": \"no\"}"), Some(Action::Fail));
        assert_eq!(r.action(200, b"[1, 2]"), None);
        assert_eq!(r.action(500, b"down"), None);
    }

    #[test]
    fn the_http_layer_gets_a_verdict() {
        let r = rules(json!([
            {"status": 404, "action": "end"},
            {"status": 200, "body_contains": "busy", "action": "retry"},
            {"status": 400, "action": "fail", "message": "bad query"},
        ]));
        assert_eq!(r.judge(404, b""), Verdict::Answer);
        assert_eq!(r.judge(200, b"[]"), Verdict::Usual);
        assert!(
            matches!(r.judge(200, b"busy"), Verdict::Failure(FailureClass::Transient, m) if m.contains("responses[1]"))
        );
        assert_eq!(
            r.judge(400, b""),
            Verdict::Failure(
                FailureClass::Refused,
                "bad query (config.responses[2], fail)".into()
            )
        );
    }

    fn config(pagination: Value) -> RestConfig {
        let value = json!({
            "base_url": "http://api.test",
            "primary_key": "id",
            "pagination": pagination,
            "target": {"table": "public.t", "columns": {"id": "id"}},
        });
        RestConfig::parse(&value, false).unwrap().0
    }

    #[test]
    fn a_skipped_page_moves_on_where_the_position_does_not_come_from_it() {
        let pages = config(json!({"style": "page_number", "param": "page", "size": 10}));
        assert_eq!(
            after_skip(&pages, &Position::Start, None).unwrap(),
            Some(Position::Page { page: 2 })
        );
        assert_eq!(
            after_skip(&pages, &Position::Page { page: 4 }, None).unwrap(),
            Some(Position::Page { page: 5 })
        );
        let offsets = config(json!({"style": "offset", "limit": 50}));
        assert_eq!(
            after_skip(&offsets, &Position::Offset { offset: 100 }, None).unwrap(),
            Some(Position::Offset { offset: 150 })
        );
        let links = config(json!({"style": "link_header"}));
        assert_eq!(
            after_skip(
                &links,
                &Position::Start,
                Some("<http://api.test/x?p=2>; rel=\"next\"")
            )
            .unwrap(),
            Some(Position::Url {
                url: "http://api.test/x?p=2".into()
            })
        );
        assert_eq!(after_skip(&links, &Position::Start, None).unwrap(), None);
        let cursor = config(json!({"style": "cursor", "param": "after", "cursor_path": "next"}));
        assert_eq!(after_skip(&cursor, &Position::Start, None).unwrap(), None);
    }
}
