//! A run's OAuth 2 access token (docs/REST.md, "OAuth 2"): the one committed while it is
//! still good, else a new one from the token endpoint over the shared HTTP layer. What
//! the endpoint answers is committed (sealed) in a transaction of its own before the
//! token is used: a rotated refresh token replaces the spent one, so a crash after the
//! exchange never loses the only valid one. A refused grant (`invalid_grant`) marks the
//! source, and no request is made for it until `rest_alter_source` gives new credentials.
//! Runs of one source at once (a worker's and a session's) renew one at a time.

use super::store;
use crate::error::Result;
use crate::plumbing::txn::Txn;
use crate::runtime::{self, Cancel};
use chrono::{DateTime, Utc};
use pullsync_core::http::{Failure, FailureClass, Form, HttpClient, Request, RequestAuth, Secrets};
use pullsync_core::rest::oauth::{self, OAuth2};
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The access token in use.
struct Current {
    token: String,
    expires_at: Option<DateTime<Utc>>,
    /// When this run had it from the endpoint (None: committed by an earlier one).
    obtained_at: Option<DateTime<Utc>>,
}

pub struct Session {
    name: String,
    client: OAuth2,
    client_secret: String,
    current: Mutex<Option<Current>>,
    /// Every token seen, to take out of messages.
    secrets: Mutex<Secrets>,
    /// How long a run waits for another run of the source to renew its token: one token
    /// request (the source's timeout) and a commit.
    renewal_wait: Duration,
}

impl Session {
    pub fn new(
        name: &str,
        client: &OAuth2,
        client_secret: Option<&str>,
        timeout: Duration,
    ) -> Session {
        let client_secret = client_secret.unwrap_or_default().to_string();
        let mut secrets = Secrets::default();
        secrets.add_basic(&client.client_id, &client_secret);
        Session {
            name: name.to_string(),
            client: client.clone(),
            client_secret,
            current: Mutex::new(None),
            secrets: Mutex::new(secrets),
            renewal_wait: timeout + Duration::from_secs(5),
        }
    }

    /// The access token the next request sends.
    pub fn access_token(&self) -> Option<String> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|c| c.token.clone())
    }

    /// `text` without any token or secret of this session.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets.redact(text)
    }

    fn learn(&self, secret: &str) {
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets.add(secret);
    }

    /// Whether the token in use is still good for a request now.
    fn usable(&self) -> bool {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .is_some_and(|c| oauth::still_usable(c.expires_at, c.obtained_at, Utc::now()))
    }

    /// A usable access token at hand: the one in use, the one committed, or a new one.
    /// The inner error is why the run cannot go on, without any secret.
    pub fn ensure(
        &self,
        http: &HttpClient,
        calls: &AtomicU32,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<std::result::Result<(), Failure>> {
        if self.usable() {
            return Ok(Ok(()));
        }
        self.renew(http, calls, None, txn, cancel)
    }

    /// A good access token again, after the API refused `refused` (revoked, or expired
    /// early), or with none in use: the one another run committed since, else a new one.
    /// Under the source's renewal lock: a rotating refresh token is spent by the run that
    /// sends it first, and a second run sending it too would be refused (invalid_grant)
    /// and mark the source; it takes the token the first committed.
    pub fn renew(
        &self,
        http: &HttpClient,
        calls: &AtomicU32,
        refused: Option<String>,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<std::result::Result<(), Failure>> {
        if !self.lock_renewal(txn, cancel)? {
            return Ok(Err(Failure::new(
                FailureClass::Transient,
                format!(
                    "REST source {}: another run has been renewing its OAuth 2 token for {} s; this run stops here",
                    self.name,
                    self.renewal_wait.as_secs()
                ),
            )));
        }
        let outcome = self.ensure_locked(http, calls, refused, txn, cancel);
        let released = txn.run(|| store::unlock_token_renewal(&self.name));
        let outcome = outcome?;
        released?;
        Ok(outcome)
    }

    /// Takes the source's renewal lock, waiting (without a transaction open) while
    /// another run holds it; false when that run held it past `renewal_wait`.
    fn lock_renewal(&self, txn: Txn, cancel: Cancel) -> Result<bool> {
        let started = Instant::now();
        loop {
            if txn.run(|| store::try_lock_token_renewal(&self.name))? {
                return Ok(true);
            }
            if started.elapsed() >= self.renewal_wait {
                return Ok(false);
            }
            runtime::sleep(Duration::from_millis(50), cancel)?;
        }
    }

    /// `ensure` under the renewal lock: the committed access token unless it is the one
    /// the API `refused`, else a new one.
    fn ensure_locked(
        &self,
        http: &HttpClient,
        calls: &AtomicU32,
        refused: Option<String>,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<std::result::Result<(), Failure>> {
        let committed = txn.run(|| store::load_tokens(&self.name))?;
        for secret in [&committed.refresh, &committed.access]
            .into_iter()
            .flatten()
        {
            self.learn(secret);
        }
        if let Some(reason) = committed.needs_reauth {
            return Ok(Err(self.needs_reauth(&reason)));
        }
        if let Some(token) = committed.access.filter(|t| Some(t) != refused.as_ref()) {
            let cached = Current {
                token,
                expires_at: committed.expires_at,
                obtained_at: None,
            };
            if oauth::still_usable(cached.expires_at, None, Utc::now()) {
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(cached);
                return Ok(Ok(()));
            }
        }
        self.exchange(http, calls, committed.refresh.as_deref(), txn, cancel)
    }

    /// A new access token from the token endpoint (with `refresh`, the committed refresh
    /// token, for that grant), committed with a rotated refresh token before it is used;
    /// `invalid_grant` marks the source as needing re-authorisation.
    fn exchange(
        &self,
        http: &HttpClient,
        calls: &AtomicU32,
        refresh: Option<&str>,
        txn: Txn,
        cancel: Cancel,
    ) -> Result<std::result::Result<(), Failure>> {
        let asked = self.client.request(&self.client_secret, refresh);
        let basic = asked.basic.as_ref();
        if let Some((id, secret)) = basic {
            // As the Basic header carries them (form-encoded first).
            let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
            secrets.add_basic(id, secret);
        }
        let request = Request {
            url: &self.client.token_url,
            auth: basic.map(|(id, secret)| RequestAuth::Basic(id, secret)),
            header: None,
            query_secret: None,
        };
        let form_secrets = self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let form = Form {
            body: &asked.form,
            secrets: &form_secrets,
        };
        let post = http.post_form(&request, &form, oauth::classify_token_error, calls);
        let now = Utc::now();
        let answer = match runtime::block_on_until(post, cancel)? {
            Ok(answer) => answer,
            Err(failure) if failure.class == FailureClass::Auth => {
                let reason = self.redact(&failure.message);
                txn.run(|| store::needs_reauth(&self.name, &reason))?;
                return Ok(Err(self.needs_reauth(&reason)));
            }
            Err(mut failure) => {
                failure.message =
                    format!("no OAuth 2 access token: {}", self.redact(&failure.message));
                return Ok(Err(failure));
            }
        };
        let token = match oauth::parse_token(&answer.body, now) {
            Ok(token) => token,
            Err(problem) => {
                return Ok(Err(Failure::new(
                    FailureClass::BadData,
                    format!("no OAuth 2 access token: {problem}"),
                )))
            }
        };
        self.learn(&token.access_token);
        if let Some(refresh) = &token.refresh_token {
            self.learn(refresh);
        }
        // Committed before the token is sent anywhere: the rotated refresh token is the
        // only valid one from now on.
        txn.run(|| {
            store::save_tokens(
                &self.name,
                &token.access_token,
                token.expires_at,
                token.refresh_token.as_deref(),
            )
        })?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Current {
            token: token.access_token,
            expires_at: token.expires_at,
            obtained_at: Some(now),
        });
        Ok(Ok(()))
    }

    /// Why a source that waits for new credentials is not pulled, and what to do.
    fn needs_reauth(&self, reason: &str) -> Failure {
        let name = &self.name;
        Failure::new(
            FailureClass::Auth,
            format!(
                "REST source {name} needs re-authorisation: the authorization server refused its grant ({reason}); no request is made for it until new credentials are given. Hint: give the auth again with a new refresh token (or client secret): SELECT pullsync.rest_alter_source('{name}', '{{\"auth\": {{\"type\": \"oauth2\", …, \"refresh_token\": …}}}}')"
            ),
        )
    }
}
