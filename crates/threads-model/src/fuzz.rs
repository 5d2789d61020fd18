//! Property tests: whatever bytes or JSON the API sends, parsing and reading it gives a
//! value or a clean error, never a panic.

use crate::insights::InsightsResponse;
use crate::{AccountInsights, ErrorEnvelope, Page, Post, PostMetrics, Profile, TokenResponse};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Keys the real answers use, so generated objects reach deep into the models.
const KEYS: &[&str] = &[
    "data",
    "paging",
    "cursors",
    "after",
    "before",
    "next",
    "name",
    "period",
    "values",
    "value",
    "total_value",
    "link_total_values",
    "link_url",
    "breakdowns",
    "end_time",
    "id",
    "media_type",
    "timestamp",
    "text",
    "children",
    "owner",
    "access_token",
    "token_type",
    "expires_in",
    "user_id",
    "error",
    "code",
    "message",
];

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        Just(Value::from(i64::MAX)),
        Just(Value::from(i64::MIN)),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        "[A-Z_]{0,14}".prop_map(Value::from),
        "(19|20|99)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{4}"
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..8).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Every model, and every reading of it.
fn read_everything(bytes: &[u8]) {
    if let Ok(page) = serde_json::from_slice::<Page<Post>>(bytes) {
        let _ = page.next_after();
    }
    if let Ok(insights) = serde_json::from_slice::<InsightsResponse>(bytes) {
        let _ = PostMetrics::from_response(&insights);
        let _ = AccountInsights::from_response(&insights);
    }
    let _ = serde_json::from_slice::<TokenResponse>(bytes);
    let _ = serde_json::from_slice::<Profile>(bytes);
    if let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(bytes) {
        let _ = crate::error::classify(400, Some(&envelope.error));
    }
}

const DOCUMENTED: &str = r#"{"data":[{"name":"views","period":"day","values":[{"value":10,"end_time":"2024-07-12T07:00:00+0000"}]},
  {"name":"likes","period":"day","total_value":{"value":3}},
  {"name":"clicks","period":"day","link_total_values":[{"value":11,"link_url":"https://x"}]}],
  "paging":{"cursors":{"before":"B","after":"A"},"next":"https://graph.threads.net/v1.0/1/threads?after=A"}}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        read_everything(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        read_everything(value.to_string().as_bytes());
        // The same value wrapped as a listing or an insights answer.
        read_everything(json!({ "data": [value.clone()] }).to_string().as_bytes());
        read_everything(json!({ "data": value }).to_string().as_bytes());
    }

    #[test]
    fn a_documented_answer_cut_or_altered_never_panics(cut in 0..DOCUMENTED.len(), at in 0..DOCUMENTED.len(), byte in any::<u8>()) {
        read_everything(&DOCUMENTED.as_bytes()[..cut]);
        let mut altered = DOCUMENTED.as_bytes().to_vec();
        altered[at] = byte;
        read_everything(&altered);
    }

    #[test]
    fn timestamps_parse_or_fail_cleanly(text in any::<String>()) {
        let _ = crate::time::parse(&text);
    }
}

#[test]
fn sums_that_overflow_are_bad_data() {
    let answer = |views: Value, clicks: Value| -> InsightsResponse {
        serde_json::from_value(json!({"data": [
            {"name": "views", "values": views},
            {"name": "likes", "total_value": {"value": 1}},
            {"name": "replies", "total_value": {"value": 1}},
            {"name": "reposts", "total_value": {"value": 1}},
            {"name": "quotes", "total_value": {"value": 1}},
            {"name": "followers_count", "total_value": {"value": 1}},
            {"name": "clicks", "link_total_values": clicks}
        ]}))
        .unwrap()
    };
    let huge = json!([{"value": i64::MAX, "link_url": "a"}, {"value": 1, "link_url": "b"}]);
    let small = json!([{"value": 1, "link_url": "a"}]);
    let huge_series = json!([{"value": i64::MAX}, {"value": 1}]);
    let small_series = json!([{"value": 1}]);
    assert_eq!(
        AccountInsights::from_response(&answer(huge_series, small.clone())),
        Err(crate::InsightsError::OutOfRange("views"))
    );
    assert_eq!(
        AccountInsights::from_response(&answer(small_series.clone(), huge)),
        Err(crate::InsightsError::OutOfRange("clicks"))
    );
    assert_eq!(
        AccountInsights::from_response(&answer(small_series, small)).map(|a| a.clicks),
        Ok(1)
    );
}
