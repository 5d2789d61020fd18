//! Redirects: followed only within the origin (scheme, host, port) a request went to, a
//! few times. reqwest would follow ten across hosts and keep custom headers such as an
//! API key's; here another origin ends the request unsent, with an error naming it. A POST
//! follows only the redirects that resend it as it is (307, 308): a 301, 302 or 303 would
//! make it a GET without its body, a request other than the one configured.

use reqwest::Url;

/// Redirects followed within one origin; more is a loop or a misconfiguration.
pub const MAX_REDIRECTS: usize = 5;

/// What to do with a redirect to `next`, after `previous` requests (the first one the
/// request itself).
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Follow,
    Refuse(RedirectRefused),
}

/// Why a redirect was not followed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    #[error("redirected to another origin ({0}), not followed: credentials go to the source's origin only")]
    OtherOrigin(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
    #[error("answered the POST with a redirect ({0}) that would resend it as a GET without its body, not followed: give the source the URL that answers the POST")]
    PostAsGet(u16),
}

pub fn decide(previous: &[Url], next: &Url) -> Decision {
    let origin = |url: &Url| {
        (
            url.scheme().to_string(),
            url.host_str().map(str::to_ascii_lowercase),
            url.port_or_known_default(),
        )
    };
    if previous.first().map(origin) != Some(origin(next)) {
        Decision::Refuse(RedirectRefused::OtherOrigin(
            next.origin().ascii_serialization(),
        ))
    } else if previous.len() > MAX_REDIRECTS {
        Decision::Refuse(RedirectRefused::TooMany)
    } else {
        Decision::Follow
    }
}

/// What to do with a redirect of a POST of status `status`: `decide`, for the redirects
/// that keep the method and the body.
pub fn decide_post(previous: &[Url], next: &Url, status: u16) -> Decision {
    match status {
        307 | 308 => decide(previous, next),
        other => Decision::Refuse(RedirectRefused::PostAsGet(other)),
    }
}

/// The client's policy.
pub(crate) fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| match decide(attempt.previous(), attempt.url()) {
        Decision::Follow => attempt.follow(),
        Decision::Refuse(why) => attempt.error(why),
    })
}

/// The policy of the client that POSTs.
pub(crate) fn same_origin_post_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        match decide_post(attempt.previous(), attempt.url(), attempt.status().as_u16()) {
            Decision::Follow => attempt.follow(),
            Decision::Refuse(why) => attempt.error(why),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpClient, Request, RequestAuth};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicU32;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn only_the_same_origin_is_followed() {
        let from = [url("http://api.example:8080/items?key=k")];
        assert_eq!(
            decide(&from, &url("http://API.example:8080/other")),
            Decision::Follow
        );
        for other in [
            "http://localhost:8080/items",
            "http://api.example:8081/items",
            "https://api.example:8080/items",
            "http://api.example/items",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(
                matches!(
                    decide(&from, &url(other)),
                    Decision::Refuse(RedirectRefused::OtherOrigin(_))
                ),
                "{other}"
            );
        }
        let https = [url("https://api.example/a")];
        assert_eq!(
            decide(&https, &url("https://api.example:443/b")),
            Decision::Follow
        );
        assert!(matches!(
            decide(&https, &url("http://api.example/b")),
            Decision::Refuse(RedirectRefused::OtherOrigin(o)) if o == "http://api.example"
        ));
    }

    #[test]
    fn a_few_redirects_at_most() {
        let mut chain = vec![url("http://a.example/0")];
        for i in 1..=MAX_REDIRECTS {
            assert_eq!(decide(&chain, &url("http://a.example/n")), Decision::Follow);
            chain.push(url(&format!("http://a.example/{i}")));
        }
        assert_eq!(
            decide(&chain, &url("http://a.example/n")),
            Decision::Refuse(RedirectRefused::TooMany)
        );
    }

    #[test]
    fn a_post_follows_only_redirects_that_keep_it() {
        let from = [url("http://api.example/search")];
        let same = url("http://api.example/v2/search");
        for status in [307, 308] {
            assert_eq!(decide_post(&from, &same, status), Decision::Follow);
            assert!(matches!(
                decide_post(&from, &url("http://other.example/search"), status),
                Decision::Refuse(RedirectRefused::OtherOrigin(_))
            ));
        }
        for status in [301, 302, 303] {
            assert_eq!(
                decide_post(&from, &same, status),
                Decision::Refuse(RedirectRefused::PostAsGet(status))
            );
        }
    }

    /// A one-shot HTTP server on loopback answering `reply` to each request and keeping
    /// the request heads it read.
    fn serve(reply: String) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(8).flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                while reader.read_line(&mut head).unwrap_or(0) > 2 && !head.ends_with("\r\n\r\n") {}
                kept.lock().unwrap().push(head);
                let _ = (&stream).write_all(reply.as_bytes());
            }
        });
        (port, seen)
    }

    fn client(allowed: &str) -> HttpClient {
        crate::http::test_client(Duration::from_secs(5), allowed)
    }

    fn classify(_: u16, _: &[u8]) -> (crate::http::FailureClass, String) {
        (crate::http::FailureClass::Refused, String::new())
    }

    #[tokio::test]
    async fn credentials_never_follow_a_redirect_to_another_origin() {
        let (elsewhere, seen_elsewhere) =
            serve("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]".into());
        let (api, seen_api) = serve(format!(
            "HTTP/1.1 302 Found\r\nLocation: http://localhost:{elsewhere}/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        let http = client("loopback");
        let request = Request {
            url: &format!("http://127.0.0.1:{api}/items"),
            auth: Some(RequestAuth::Basic("user", "pw")),
            header: Some(("X-Api-Key", "the-key")),
            query_secret: None,
        };
        let failure = http
            .get(&request, None, classify, &AtomicU32::new(0))
            .await
            .unwrap_err();
        assert_eq!(failure.class, crate::http::FailureClass::Refused);
        assert!(
            failure.message.contains(&format!(
                "redirected to another origin (http://localhost:{elsewhere})"
            )),
            "{}",
            failure.message
        );
        assert!(seen_api.lock().unwrap()[0].contains("the-key"));
        assert!(seen_elsewhere.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_posted_secret_never_follows_a_redirect_to_another_origin() {
        let (elsewhere, seen_elsewhere) =
            serve("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]".into());
        let (api, seen_api) = serve(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{elsewhere}/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        let http = client("loopback");
        let request = Request {
            url: &format!("http://127.0.0.1:{api}/search"),
            auth: Some(RequestAuth::Bearer("the-token")),
            header: None,
            query_secret: None,
        };
        let failure = http
            .post(
                &request,
                br#"{"q":1}"#,
                None,
                classify,
                &AtomicU32::new(0),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            failure.message.starts_with(&format!(
                "POST http://127.0.0.1:{api}/search: redirected to another origin"
            )),
            "{}",
            failure.message
        );
        let head = seen_api.lock().unwrap()[0].clone();
        assert!(head.starts_with("POST /search"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        assert!(seen_elsewhere.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_post_redirected_as_a_get_is_not_followed() {
        let (api, seen_api) = serve(
            "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        );
        let request = Request {
            url: &format!("http://127.0.0.1:{api}/search"),
            auth: None,
            header: None,
            query_secret: None,
        };
        let failure = client("loopback")
            .post(&request, b"{}", None, classify, &AtomicU32::new(0), None)
            .await
            .unwrap_err();
        assert_eq!(failure.class, crate::http::FailureClass::Refused);
        assert!(
            failure
                .message
                .contains("(302) that would resend it as a GET"),
            "{}",
            failure.message
        );
        assert_eq!(
            seen_api.lock().unwrap().len(),
            1,
            "the redirect is not followed"
        );
    }
}
