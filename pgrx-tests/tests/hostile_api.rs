//! The REST source against an API that plays the attacker, and a tenant that points its
//! source where the server must not go (issue 36): a redirect to another origin carries
//! no credential; loopback is refused unless `pullsync.http_allowed_hosts` opens it; an
//! open port fails like a closed one; an API that echoes the request back leaves no form
//! of the secret in the error or in sync_logs. Every server here is started by the test
//! on a free loopback port.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use postgres::Client;
use pullsync_tests::db::{fresh_extension_database, fresh_role};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A loopback listener answering every request with `reply(request head)`, keeping the
/// heads it read. It serves until the test process ends.
struct Listener {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    fn start(reply: impl Fn(&str) -> Vec<u8> + Send + 'static) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let head = read_head(&stream);
                kept.lock().unwrap().push(head.clone());
                let _ = (&stream).write_all(&reply(&head));
            }
        });
        Listener { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn read_head(stream: &TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    while reader.read_line(&mut head).unwrap_or(0) > 0 && !head.ends_with("\r\n\r\n") {}
    head
}

fn http(status: &str, content_type: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A free loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn source(base_url: &str, auth: Value) -> Value {
    json!({
        "base_url": base_url,
        "path": "/items",
        "auth": auth,
        "primary_key": "id",
        "target": { "table": "public.items", "columns": { "id": "id" } },
        "retries": 0,
        "timeout_ms": 5000
    })
}

fn add(db: &mut Client, name: &str, config: &Value) {
    db.query_one("SELECT pullsync.rest_add_source($1, $2)", &[&name, config])
        .unwrap();
}

/// The pull's result, or the ERROR's (SQLSTATE, message).
fn pull(db: &mut Client, name: &str) -> Result<Value, (String, String)> {
    db.query_one("SELECT pullsync.rest_pull($1)", &[&name])
        .map(|row| row.get(0))
        .map_err(|e| {
            let e = e.as_db_error().expect("an ERROR of the server").clone();
            (e.code().code().to_string(), e.message().to_string())
        })
}

fn database(name: &str) -> Client {
    let mut db = fresh_extension_database(name);
    db.batch_execute("CREATE TABLE public.items (id bigint PRIMARY KEY)")
        .unwrap();
    db
}

#[test]
fn a_redirect_to_another_origin_carries_no_credential() {
    let mut db = database("it_hostile_redirect");
    let thief = Listener::start(|_| http("200 OK", "application/json", "[]", ""));
    let target = format!("http://localhost:{}/collect", thief.port);
    let api = Listener::start(move |_| {
        http(
            "302 Found",
            "text/plain",
            "",
            &format!("Location: {target}\r\n"),
        )
    });
    let base = format!("http://127.0.0.1:{}", api.port);
    add(
        &mut db,
        "keyed",
        &source(
            &base,
            json!({ "type": "api_key", "header": "X-Api-Key", "key": "redirect-key-0123456789" }),
        ),
    );
    add(
        &mut db,
        "basic",
        &source(
            &base,
            json!({ "type": "basic", "username": "alice", "password": "redirect-password" }),
        ),
    );
    for name in ["keyed", "basic"] {
        let result = pull(&mut db, name).unwrap();
        assert_eq!(result["status"], "failed", "{result}");
        let error = result["error"].as_str().unwrap();
        assert!(
            error.contains(&format!(
                "redirected to another origin (http://localhost:{}), not followed",
                thief.port
            )),
            "{error}"
        );
    }
    assert_eq!(api.heads().len(), 2, "each source asked its API once");
    assert!(
        api.heads()[0]
            .to_ascii_lowercase()
            .contains("x-api-key: redirect-key-0123456789"),
        "the API itself got the key"
    );
    assert_eq!(
        thief.heads(),
        Vec::<String>::new(),
        "the other origin got no request, so no X-Api-Key or Authorization"
    );
}

#[test]
fn destinations_the_operator_did_not_open_are_refused() {
    let mut db = database("it_hostile_destinations");
    let api = Listener::start(|_| http("200 OK", "application/json", "[]", ""));
    let port = api.port;
    // The test cluster opens loopback; this session closes it again (a superuser may).
    db.batch_execute("SET pullsync.http_allowed_hosts = ''")
        .unwrap();
    for (name, host) in [
        ("v4", "127.0.0.1".to_string()),
        ("v6", "[::1]".to_string()),
        ("named", "localhost".to_string()),
        ("mapped", "[::ffff:127.0.0.1]".to_string()),
        ("metadata", "169.254.169.254".to_string()),
        ("private", "10.0.0.1".to_string()),
        ("cgnat", "100.64.0.1".to_string()),
    ] {
        add(
            &mut db,
            name,
            &source(
                &format!("http://{host}:{port}"),
                json!({ "type": "bearer", "token": "t-0123456789" }),
            ),
        );
        let (sqlstate, message) = pull(&mut db, name).unwrap_err();
        assert_eq!(sqlstate, "42501", "{name}: {message}");
        assert!(
            message.contains("is not an allowed destination")
                && message.contains("pullsync.http_allowed_hosts"),
            "{name}: {message}"
        );
    }
    assert!(api.heads().is_empty(), "nothing reached the listener");
    // The feed consumer goes through the same layer.
    db.query_one(
        "SELECT pullsync.feed_add_source('upstream', $1, 'feed-key-0123456789abcdef')",
        &[&format!("http://127.0.0.1:{port}")],
    )
    .unwrap();
    let refused = db
        .query_one("SELECT pullsync.feed_pull('upstream')", &[])
        .unwrap_err();
    assert_eq!(refused.code().unwrap().code(), "42501", "{refused}");
    assert!(api.heads().is_empty());

    // The operator opens what is needed: the same pull then reaches the API.
    db.batch_execute("SET pullsync.http_allowed_hosts = 'loopback'")
        .unwrap();
    assert_eq!(pull(&mut db, "v4").unwrap()["status"], "completed");
    assert_eq!(api.heads().len(), 1);
    db.batch_execute("SET pullsync.http_allowed_hosts = 'api.internal:8443, 10.0.0.0/8'")
        .unwrap();
    assert_eq!(pull(&mut db, "v4").unwrap_err().0, "42501");
    let bad = db
        .batch_execute("SET pullsync.http_allowed_hosts = '10.0.0.0/99'")
        .unwrap_err();
    assert_eq!(bad.code().unwrap().code(), "22023", "{bad}");

    // Only a superuser decides where the server may go.
    fresh_role(&mut db, "hostile_tenant");
    db.batch_execute("SET ROLE hostile_tenant").unwrap();
    let denied = db
        .batch_execute("SET pullsync.http_allowed_hosts = 'loopback'")
        .unwrap_err();
    assert_eq!(denied.code().unwrap().code(), "42501", "{denied}");
}

#[test]
fn an_open_port_fails_like_a_closed_one() {
    let mut db = database("it_hostile_ports");
    let postgres_port: String = db.query_one("SHOW port", &[]).unwrap().get(0);
    // Not HTTP: a banner; a server that closes at once; the cluster's own port.
    let banner = Listener::start(|_| b"SSH-2.0-OpenSSH_9.6\r\n".to_vec());
    let hangup = Listener::start(|_| Vec::new());
    let ports = [
        ("closed", closed_port()),
        ("banner", banner.port),
        ("hangup", hangup.port),
        ("postgres", postgres_port.parse().unwrap()),
    ];
    let mut errors = Vec::new();
    for (name, port) in ports {
        add(
            &mut db,
            name,
            &source(
                &format!("http://127.0.0.1:{port}"),
                json!({ "type": "bearer", "token": "t-0123456789" }),
            ),
        );
        let result = pull(&mut db, name).unwrap();
        assert_eq!(result["status"], "failed", "{result}");
        let error = result["error"]
            .as_str()
            .unwrap()
            .replace(&port.to_string(), "PORT");
        errors.push((name, error));
    }
    for (name, error) in &errors {
        assert_eq!(
            error, "GET http://127.0.0.1:PORT/items: could not reach 127.0.0.1",
            "{name}"
        );
    }
}

/// Every form of `secret` an echo could carry: raw, base64, percent-encoded (`%20` and `+`
/// for a blank) and JSON-escaped.
fn forms(secret: &str) -> Vec<String> {
    let percent: String = secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let json = serde_json::to_string(secret).unwrap();
    vec![
        secret.to_string(),
        STANDARD.encode(secret),
        percent.clone(),
        percent.replace("%20", "+"),
        json[1..json.len() - 1].to_string(),
    ]
}

#[test]
fn an_echoing_api_leaves_no_form_of_the_secret_in_errors_or_logs() {
    let mut db = database("it_hostile_echo");
    // Echoes the request line and its credentials, JSON-escaped, first in a 400's body.
    let echo = |head: &str| {
        let line = head.lines().next().unwrap_or("").to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let body = json!({ "echo": [header("authorization"), header("x-api-key"), line] });
        http("400 Bad Request", "application/json", &body.to_string(), "")
    };
    let json_api = Listener::start(echo);
    let text_api = Listener::start(|head| {
        http(
            "404 Not Found",
            "text/plain",
            &format!("no route for {head}"),
            "",
        )
    });
    let password = "pa ss+wörd/\"é";
    let key = "key with+plus/slash\"";
    let configs = [
        (
            "basic",
            json!({ "type": "basic", "username": "alice", "password": password }),
        ),
        (
            "query",
            json!({ "type": "api_key", "query": "api_key", "key": key }),
        ),
        (
            "header",
            json!({ "type": "api_key", "header": "X-Api-Key", "key": key }),
        ),
        ("bearer", json!({ "type": "bearer", "token": key })),
    ];
    let mut secret_forms = forms(password);
    secret_forms.extend(forms(key));
    secret_forms.extend(forms(&format!("alice:{password}")));
    secret_forms.retain(|f| f != "alice");
    for api in [&json_api, &text_api] {
        for (kind, auth) in &configs {
            let name = format!("{kind}_{}", api.port);
            add(
                &mut db,
                &name,
                &source(&format!("http://127.0.0.1:{}", api.port), auth.clone()),
            );
            let result = pull(&mut db, &name).unwrap();
            assert_eq!(result["status"], "failed", "{result}");
            let error = result["error"].as_str().unwrap().to_string();
            let logged: String = db
                .query_one(
                    "SELECT error FROM pullsync.sync_logs WHERE source = 'rest' AND subject = $1 ORDER BY id DESC LIMIT 1",
                    &[&name],
                )
                .unwrap()
                .get(0);
            for text in [&error, &logged] {
                for form in &secret_forms {
                    assert!(!text.contains(form.as_str()), "{name}: {form:?} in {text}");
                }
            }
            if api.port == json_api.port {
                assert!(error.contains("HTTP 400: {\"echo\":["), "{error}");
                assert!(error.contains("[redacted]"), "{error}");
            } else {
                assert!(
                    error.ends_with("HTTP 404: the answer is not JSON (not shown)"),
                    "{error}"
                );
            }
        }
    }
    let mut heads = json_api.heads().join("\n");
    heads.push_str(&text_api.heads().join("\n"));
    assert!(
        heads.contains(&STANDARD.encode(format!("alice:{password}"))),
        "the APIs got the credentials they echoed"
    );
}
