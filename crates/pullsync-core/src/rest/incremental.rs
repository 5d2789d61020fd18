//! What an incremental REST source sends, beyond its mark: a lookback (the last part of the
//! mark read again), the boundary the API's `since` has (whether it takes the value it is
//! given), and the date windows of a first run's backfill, with where each window stands.

use super::paging::Position;
use crate::error::{InputError, Result};
use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most windows a backfill is sliced into: each is a request at least, and its state
/// is committed with every page.
pub const MAX_WINDOWS: usize = 10_000;

/// How much of the mark a run reads again.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookback {
    /// Seconds before a timestamp mark, or units below a numeric one.
    Number(f64),
    /// A time before a timestamp mark ("2 hours").
    Interval(Duration),
}

/// Whether the API's `since` takes records at exactly the value sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boundary {
    /// `since=v` lists records at `v` and after: the mark is sent as it is.
    #[default]
    Inclusive,
    /// `since=v` lists records after `v` only: the value just below the mark (in the
    /// mark's own precision) is sent, so the records at the mark are listed again.
    Exclusive,
}

/// A first run's backfill: `since` to `until` (or the run's start) in slices of `size`.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub since: String,
    pub until: Option<String>,
    pub size: Duration,
    pub until_param: String,
}

/// The incremental keys beyond field, param and initial.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    pub lookback: Option<Lookback>,
    pub boundary: Boundary,
    pub windows: Option<Windows>,
}

fn bad(key: &str, problem: impl std::fmt::Display, hint: &str) -> InputError {
    InputError::invalid(format!("config.incremental.{key} {problem}"), hint)
}

/// `"2 hours"`, `"7 days"`, `"1 day 12 hours"`, or a number of seconds: a positive span.
pub fn parse_interval(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Number(n) => n.as_f64().filter(|s| *s > 0.0 && s.is_finite())?,
        Value::String(s) => {
            let words: Vec<&str> = s.split_whitespace().collect();
            if words.is_empty() || !words.len().is_multiple_of(2) {
                return None;
            }
            let mut total = 0f64;
            for pair in words.chunks(2) {
                let n: f64 = pair[0].parse().ok().filter(|n: &f64| *n >= 0.0)?;
                let unit = match pair[1].to_ascii_lowercase().trim_end_matches('s') {
                    "second" | "sec" => 1.0,
                    "minute" | "min" => 60.0,
                    "hour" => 3600.0,
                    "day" => 86_400.0,
                    "week" => 604_800.0,
                    _ => return None,
                };
                total += n * unit;
            }
            Some(total).filter(|t| *t > 0.0)?
        }
        _ => return None,
    };
    // Whole microseconds: the finest a timestamp of PostgreSQL holds.
    let micros = (seconds * 1e6).round();
    (1.0..1e17)
        .contains(&micros)
        .then(|| Duration::microseconds(micros as i64))
}

fn timestamp(value: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(value.trim()).ok()
}

/// How a timestamp is written, so that what is sent reads as the API's own values do.
#[derive(Debug, Clone, Copy)]
struct Format {
    precision: SecondsFormat,
    zulu: bool,
}

impl Format {
    fn of(value: &str) -> Format {
        let digits = value
            .split_once('.')
            .map_or(0, |(_, f)| f.bytes().take_while(u8::is_ascii_digit).count());
        let precision = match digits {
            0 => SecondsFormat::Secs,
            1..=3 => SecondsFormat::Millis,
            4..=6 => SecondsFormat::Micros,
            _ => SecondsFormat::Nanos,
        };
        Format {
            precision,
            zulu: value.trim_end().ends_with(['Z', 'z']),
        }
    }

    /// The smallest step of this precision.
    fn unit(self) -> Duration {
        match self.precision {
            SecondsFormat::Secs => Duration::seconds(1),
            SecondsFormat::Millis => Duration::milliseconds(1),
            SecondsFormat::Micros => Duration::microseconds(1),
            _ => Duration::nanoseconds(1),
        }
    }

    fn write(self, at: DateTime<FixedOffset>) -> String {
        at.to_rfc3339_opts(self.precision, self.zulu)
    }
}

/// A numeric value written as an integer when it is one.
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// The decimal places a number is written with (its precision).
fn decimals(value: &str) -> i32 {
    value.split_once('.').map_or(0, |(_, f)| f.len() as i32)
}

/// What a run sends for the stored `mark`: the lookback taken off it, then, for an API
/// whose `since` excludes the value it is given, one step of the mark's precision less
/// (so the records at the mark itself are listed). A mark that is neither a number nor an
/// RFC 3339 timestamp can take neither; the error says so.
pub fn since_for(mark: &str, options: &Options) -> std::result::Result<String, String> {
    if options.lookback.is_none() && options.boundary == Boundary::Inclusive {
        return Ok(mark.to_string());
    }
    if let Ok(n) = mark.trim().parse::<f64>() {
        let back = match &options.lookback {
            None => 0.0,
            Some(Lookback::Number(back)) => *back,
            Some(Lookback::Interval(_)) => {
                return Err(format!(
                    "config.incremental.lookback is a time, but the mark {mark:?} is a number: give the lookback as a number"
                ))
            }
        };
        let step = match options.boundary {
            Boundary::Inclusive => 0.0,
            Boundary::Exclusive => 10f64.powi(-decimals(mark.trim())),
        };
        let places = decimals(mark.trim());
        let sent = n - back - step;
        return Ok(if places > 0 {
            format!("{sent:.0$}", places as usize)
        } else {
            number_text(sent)
        });
    }
    let Some(at) = timestamp(mark) else {
        return Err(format!(
            "the mark {mark:?} is neither a number nor an RFC 3339 timestamp: config.incremental.lookback and an exclusive boundary need one"
        ));
    };
    let format = Format::of(mark);
    let back = match &options.lookback {
        None => Duration::zero(),
        Some(Lookback::Interval(d)) => *d,
        Some(Lookback::Number(seconds)) => Duration::microseconds((seconds * 1e6).round() as i64),
    };
    let step = match options.boundary {
        Boundary::Inclusive => Duration::zero(),
        Boundary::Exclusive => format.unit(),
    };
    let sent = at
        .checked_sub_signed(back + step)
        .ok_or_else(|| format!("the mark {mark:?} less the lookback is out of range"))?;
    Ok(format.write(sent))
}

/// Whether `value` is at or below `mark` (compared as `paging::higher` does): a record a
/// run reads again.
pub fn not_above(value: &str, mark: &str) -> bool {
    match (value.parse::<f64>(), mark.parse::<f64>()) {
        (Ok(v), Ok(m)) => v <= m,
        _ => value <= mark,
    }
}

/// `url` with `param=value` added to its query (a window's end).
pub fn with_param(mut url: String, param: &str, value: &str) -> String {
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&crate::http::urlencode(param));
    url.push('=');
    url.push_str(&crate::http::urlencode(value));
    url
}

/// Reads the incremental keys of this module from `inc` (its other keys are checked by
/// the configuration).
pub fn parse_options(inc: &Map<String, Value>) -> Result<Options> {
    let lookback = match inc.get("lookback") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(Lookback::Number(
            n.as_f64().filter(|v| *v >= 0.0 && v.is_finite()).ok_or_else(|| {
                bad("lookback", "must not be negative", "Pass e.g. 3600 or \"2 hours\".")
            })?,
        )),
        Some(v) => Some(Lookback::Interval(parse_interval(v).ok_or_else(|| {
            bad(
                "lookback",
                format!("is not a number or an interval: {v}"),
                "Pass a number (seconds before a timestamp mark, units below a numeric one) or an interval such as \"2 hours\" or \"1 day 6 hours\".",
            )
        })?)),
    };
    let boundary = match inc.get("boundary") {
        None | Some(Value::Null) => Boundary::Inclusive,
        Some(Value::String(s)) if s == "inclusive" => Boundary::Inclusive,
        Some(Value::String(s)) if s == "exclusive" => Boundary::Exclusive,
        Some(v) => {
            return Err(bad(
                "boundary",
                format!("is not \"inclusive\" or \"exclusive\": {v}"),
                "\"inclusive\": the API's since lists records at the value sent; \"exclusive\": only after it.",
            ))
        }
    };
    let windows = match inc.get("windows") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_windows(v)?),
    };
    if windows.is_some() && inc.get("initial").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            "windows",
            "and incremental.initial both say where a first run starts",
            "Leave initial out: the first run backfills from windows.since.",
        ));
    }
    Ok(Options {
        lookback,
        boundary,
        windows,
    })
}

fn parse_windows(value: &Value) -> Result<Windows> {
    let hint = "Pass {\"since\": \"2024-01-01T00:00:00Z\", \"until\": optional, \"size\": \"7 days\", \"until_param\": \"until\"}.";
    let w = value
        .as_object()
        .ok_or_else(|| bad("windows", "must be a JSON object", hint))?;
    if let Some(k) = w
        .keys()
        .find(|k| !["since", "until", "size", "until_param"].contains(&k.as_str()))
    {
        return Err(bad(
            &format!("windows.{k}"),
            "is not a key pg_pullsync knows",
            "Known keys here: since, until, size, until_param.",
        ));
    }
    let time = |key: &str| -> Result<Option<(String, DateTime<FixedOffset>)>> {
        match w.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if timestamp(s).is_some() => {
                Ok(timestamp(s).map(|t| (s.trim().to_string(), t)))
            }
            Some(v) => Err(bad(
                &format!("windows.{key}"),
                format!("is not an RFC 3339 timestamp: {v}"),
                "Pass e.g. \"2024-01-01T00:00:00Z\".",
            )),
        }
    };
    let (since, from) = time("since")?.ok_or_else(|| bad("windows.since", "is missing", hint))?;
    let until = time("until")?;
    if until.as_ref().is_some_and(|(_, to)| *to <= from) {
        return Err(bad(
            "windows.until",
            "is not after windows.since",
            "Pass an until later than since, or leave it out for the time of the first run.",
        ));
    }
    let size = match w.get("size") {
        None | Some(Value::Null) => return Err(bad("windows.size", "is missing", hint)),
        Some(v) => parse_interval(v).ok_or_else(|| {
            bad(
                "windows.size",
                format!("is not a positive interval: {v}"),
                "Pass e.g. \"7 days\", \"12 hours\" or a number of seconds.",
            )
        })?,
    };
    if let Some((_, to)) = &until {
        let count = (*to - from).num_microseconds().unwrap_or(i64::MAX) as f64
            / size.num_microseconds().unwrap_or(1).max(1) as f64;
        if count > MAX_WINDOWS as f64 {
            return Err(bad(
                "windows.size",
                format!("slices since..until into more than {MAX_WINDOWS} windows"),
                "Take larger windows.",
            ));
        }
    }
    let until_param = match w.get("until_param") {
        None | Some(Value::Null) => "until".to_string(),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.[]".contains(&b)) =>
        {
            s.clone()
        }
        Some(v) => {
            return Err(bad(
                "windows.until_param",
                format!("is not a plain name: {v}"),
                "Use letters, digits, '-', '_', '.', '[' and ']' (at most 128).",
            ))
        }
    };
    Ok(Windows {
        since,
        until: until.map(|(s, _)| s),
        size,
        until_param,
    })
}

/// One window of a backfill and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub since: String,
    pub until: String,
    /// The page the window goes on with; None once its last page is written.
    pub next: Option<Position>,
}

impl Window {
    pub fn done(&self) -> bool {
        self.next.is_none()
    }
}

/// A backfill under way, committed with each page (`rest_sources.run_position`): its
/// windows and the highest incremental value written so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    pub windows: Vec<Window>,
    pub high_water: Option<String>,
}

impl Backfill {
    /// `windows.since` to `windows.until` (else `now`) in slices of `size`, the last one
    /// cut at the end, written in `since`'s format.
    pub fn slice(windows: &Windows, now: DateTime<Utc>) -> std::result::Result<Backfill, String> {
        let from = timestamp(&windows.since).ok_or("windows.since is not a timestamp")?;
        let to = match &windows.until {
            Some(u) => timestamp(u).ok_or("windows.until is not a timestamp")?,
            None => now.with_timezone(from.offset()),
        };
        let format = Format::of(&windows.since);
        let mut out = Vec::new();
        let mut at = from;
        while at < to {
            if out.len() == MAX_WINDOWS {
                return Err(format!(
                    "config.incremental.windows slices since..until into more than {MAX_WINDOWS} windows; take larger windows"
                ));
            }
            let end = at
                .checked_add_signed(windows.size)
                .map_or(to, |e| e.min(to));
            out.push(Window {
                since: format.write(at),
                until: format.write(end),
                next: Some(Position::Start),
            });
            at = end;
        }
        if out.is_empty() {
            return Err(format!(
                "config.incremental.windows.since ({}) is not before the end of the backfill",
                windows.since
            ));
        }
        Ok(Backfill {
            windows: out,
            high_water: None,
        })
    }

    pub fn done(&self) -> bool {
        self.windows.iter().all(Window::done)
    }

    /// The windows still to read, in order.
    pub fn open(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.windows.len()).filter(|&i| !self.windows[i].done())
    }

    /// The mark a finished backfill leaves: the highest value written, else the start of
    /// the first window (nothing before it is wanted).
    pub fn mark(&self) -> Option<String> {
        self.high_water
            .clone()
            .or_else(|| self.windows.first().map(|w| w.since.clone()))
    }

    /// Whether `value` is this state as stored (a backfill, not a plain position).
    pub fn from_stored(value: &Value) -> Option<Backfill> {
        value
            .get("windows")
            .and_then(|_| serde_json::from_value(value.clone()).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(lookback: Option<Value>, boundary: &str) -> Options {
        let mut inc = Map::new();
        if let Some(l) = lookback {
            inc.insert("lookback".into(), l);
        }
        inc.insert("boundary".into(), json!(boundary));
        parse_options(&inc).unwrap()
    }

    #[test]
    fn intervals_read_units_and_numbers() {
        let i = |v: Value| parse_interval(&v).map(|d| d.num_seconds());
        assert_eq!(i(json!("2 hours")), Some(7200));
        assert_eq!(i(json!("7 days")), Some(604_800));
        assert_eq!(i(json!("1 day 6 hours")), Some(108_000));
        assert_eq!(i(json!("90 min")), Some(5400));
        assert_eq!(i(json!(30)), Some(30));
        assert_eq!(i(json!("1 week")), Some(604_800));
        for bad in [
            json!("two hours"),
            json!("2"),
            json!("2 fortnights"),
            json!(0),
            json!(-1),
            json!("0 days"),
            json!([]),
        ] {
            assert_eq!(parse_interval(&bad), None, "{bad}");
        }
    }

    #[test]
    fn inclusive_without_lookback_sends_the_mark_as_it_is() {
        let o = Options::default();
        assert_eq!(since_for("whatever", &o).unwrap(), "whatever");
        assert_eq!(
            since_for("2024-01-01T00:25:00Z", &o).unwrap(),
            "2024-01-01T00:25:00Z"
        );
    }

    #[test]
    fn lookback_goes_back_in_the_marks_own_format() {
        let o = options(Some(json!("2 hours")), "inclusive");
        assert_eq!(
            since_for("2024-01-01T00:25:00Z", &o).unwrap(),
            "2023-12-31T22:25:00Z"
        );
        assert_eq!(
            since_for("2024-01-01T00:25:00.250+02:00", &o).unwrap(),
            "2023-12-31T22:25:00.250+02:00"
        );
        let o = options(Some(json!(90)), "inclusive");
        assert_eq!(
            since_for("2024-01-01T00:25:00Z", &o).unwrap(),
            "2024-01-01T00:23:30Z"
        );
        assert_eq!(since_for("1700000000", &o).unwrap(), "1699999910");
        // A time is no amount of a number.
        let o = options(Some(json!("1 hour")), "inclusive");
        assert!(since_for("1700000000", &o)
            .unwrap_err()
            .contains("lookback"));
        assert!(since_for("abc", &o).unwrap_err().contains("abc"));
    }

    #[test]
    fn exclusive_sends_one_step_below_the_mark() {
        let o = options(None, "exclusive");
        assert_eq!(
            since_for("2024-01-01T00:25:00Z", &o).unwrap(),
            "2024-01-01T00:24:59Z"
        );
        assert_eq!(
            since_for("2024-01-01T00:25:00.000Z", &o).unwrap(),
            "2024-01-01T00:24:59.999Z"
        );
        assert_eq!(
            since_for("2024-01-01T00:25:00.000001Z", &o).unwrap(),
            "2024-01-01T00:25:00.000000Z"
        );
        assert_eq!(since_for("42", &o).unwrap(), "41");
        assert_eq!(since_for("4.25", &o).unwrap(), "4.24");
        let o = options(Some(json!(10)), "exclusive");
        assert_eq!(since_for("42", &o).unwrap(), "31");
    }

    #[test]
    fn a_window_end_joins_the_query() {
        assert_eq!(
            with_param(
                "https://a/x?since=1".into(),
                "until",
                "2024-01-08T00:00:00Z"
            ),
            "https://a/x?since=1&until=2024-01-08T00%3A00%3A00Z"
        );
        assert_eq!(
            with_param("https://a/x".into(), "to", "2"),
            "https://a/x?to=2"
        );
    }

    #[test]
    fn a_record_at_or_below_the_mark_is_read_again() {
        assert!(not_above("2024-01-01T00:25:00Z", "2024-01-01T00:25:00Z"));
        assert!(not_above("2024-01-01T00:24:00Z", "2024-01-01T00:25:00Z"));
        assert!(!not_above("2024-01-01T00:26:00Z", "2024-01-01T00:25:00Z"));
        assert!(not_above("9", "10"));
        assert!(!not_above("11", "10"));
    }

    #[test]
    fn options_are_checked_key_by_key() {
        let refused = |inc: Value| match parse_options(inc.as_object().unwrap()) {
            Err(InputError::Invalid { message, .. }) => message,
            other => panic!("{inc}: {other:?}"),
        };
        assert!(refused(json!({ "lookback": -5 })).starts_with("config.incremental.lookback"));
        assert!(refused(json!({ "lookback": "soon" })).starts_with("config.incremental.lookback"));
        assert!(refused(json!({ "boundary": "open" })).starts_with("config.incremental.boundary"));
        assert!(refused(json!({ "windows": { "size": "7 days" } }))
            .starts_with("config.incremental.windows.since"));
        assert!(
            refused(json!({ "windows": { "since": "2024-01-01T00:00:00Z" } }))
                .starts_with("config.incremental.windows.size")
        );
        assert!(
            refused(json!({ "windows": { "since": "2024-01-01", "size": 1 } }))
                .starts_with("config.incremental.windows.since")
        );
        assert!(refused(json!({ "windows": { "since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z", "size": 1 } }))
            .starts_with("config.incremental.windows.until"));
        assert!(refused(
            json!({ "windows": { "since": "2024-01-01T00:00:00Z", "size": 1, "step": 1 } })
        )
        .starts_with("config.incremental.windows.step"));
        assert!(refused(json!({ "windows": { "since": "2024-01-01T00:00:00Z", "size": 1, "until_param": "a b" } }))
            .starts_with("config.incremental.windows.until_param"));
        assert!(refused(json!({ "windows": { "since": "2020-01-01T00:00:00Z", "until": "2024-01-01T00:00:00Z", "size": 60 } }))
            .starts_with("config.incremental.windows.size"));
        assert!(refused(
            json!({ "initial": "x", "windows": { "since": "2024-01-01T00:00:00Z", "size": 1 } })
        )
        .starts_with("config.incremental.windows"));
        let o = parse_options(json!({ "lookback": 0 }).as_object().unwrap()).unwrap();
        assert_eq!(
            (o.lookback, o.boundary),
            (Some(Lookback::Number(0.0)), Boundary::Inclusive)
        );
    }

    #[test]
    fn a_backfill_is_sliced_into_windows_and_resumes_the_open_ones() {
        let inc = json!({ "windows": { "since": "2024-01-01T00:00:00Z", "until": "2024-01-20T00:00:00Z", "size": "7 days" } });
        let w = parse_options(inc.as_object().unwrap())
            .unwrap()
            .windows
            .unwrap();
        assert_eq!(w.until_param, "until");
        let mut b = Backfill::slice(&w, Utc::now()).unwrap();
        let bounds: Vec<(&str, &str)> = b
            .windows
            .iter()
            .map(|w| (w.since.as_str(), w.until.as_str()))
            .collect();
        assert_eq!(
            bounds,
            [
                ("2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"),
                ("2024-01-08T00:00:00Z", "2024-01-15T00:00:00Z"),
                ("2024-01-15T00:00:00Z", "2024-01-20T00:00:00Z"),
            ]
        );
        assert_eq!(b.mark().as_deref(), Some("2024-01-01T00:00:00Z"));
        b.windows[1].next = None;
        b.high_water = Some("2024-01-09T00:00:00Z".into());
        let stored = serde_json::to_value(&b).unwrap();
        let back = Backfill::from_stored(&stored).unwrap();
        assert_eq!(back.open().collect::<Vec<_>>(), [0, 2]);
        assert!(!back.done());
        assert_eq!(back.mark().as_deref(), Some("2024-01-09T00:00:00Z"));
        // A plain position is no backfill.
        assert_eq!(Backfill::from_stored(&json!({ "at": "start" })), None);
        // Without until, the windows end at the run's start.
        let open = Windows { until: None, ..w };
        let now = DateTime::parse_from_rfc3339("2024-01-03T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = Backfill::slice(&open, now).unwrap();
        assert_eq!(b.windows.last().unwrap().until, "2024-01-03T12:00:00Z");
        assert_eq!(b.windows.len(), 1);
        let later = now - Duration::days(10);
        assert!(
            Backfill::slice(&open, later).is_err(),
            "nothing to backfill"
        );
    }
}
