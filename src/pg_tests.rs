//! In-database tests (`cargo pgrx test`). Cross-connection behaviour (privileges, SQLSTATEs
//! seen by a client, DROP EXTENSION) is tested in pgrx-tests/ over real connections.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::error::Result;
    use pgrx::prelude::*;
    use pgrx::Uuid;

    /// The plaintext primary token of an account, opened as the sync opens it.
    fn open_primary_token(account_id: Uuid) -> Result<String> {
        let (token_id, sealed) = Spi::get_two_with_args::<Uuid, String>(
            "SELECT id, access_token_encrypted FROM pullsync.workspace_threads_tokens
              WHERE workspace_threads_account_id = $1 AND is_primary",
            &[account_id.into()],
        )?;
        let token_id = token_id.map(|t| t.to_string()).unwrap_or_default();
        crate::secrets::open(&sealed.unwrap_or_default(), || {
            format!("token {token_id} of account {account_id}")
        })
    }

    const WORKSPACE: &str = "11111111-1111-1111-1111-111111111111";

    /// Points this session at a private key file holding `key`.
    fn use_key(key: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path =
            std::env::temp_dir().join(format!("pullsync-session-{}.key", std::process::id()));
        std::fs::write(&path, key).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Spi::run(&format!(
            "SET pullsync.encryption_key_file = '{}'",
            path.display()
        ))
        .unwrap();
    }

    fn add_account(user_id: &str, token: &str) -> Uuid {
        Spi::get_one::<Uuid>(&format!(
            "SELECT pullsync.threads_add_account('{WORKSPACE}', '{user_id}', 'alice', '{token}', now() + interval '60 days')"
        ))
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn an_older_answer_never_replaces_newer_values() {
        use crate::threads::store::{write_account, LogContext};
        use pullsync_core::threads::pull::{AccountPull, Reading};
        let account = add_account("1010", "THAAordering");
        Spi::run(&format!(
            "INSERT INTO pullsync.workspace_threads_posts (workspace_threads_account_id, threads_post_id, media_type, published_at)
             VALUES ('{account}', '555', 'TEXT_POST', now() - interval '1 day')"
        ))
        .unwrap();
        let log = LogContext {
            job_log_id: None,
            job_type: "test",
            started_at: chrono::Utc::now(),
        };
        let answered = chrono::Utc::now();
        let write = |views: i64, fetched_at| {
            let pull = AccountPull {
                metrics: vec![(
                    "555".to_string(),
                    Reading {
                        values: [Some(views), Some(1), Some(1), Some(1), Some(1), Some(1)],
                        fetched_at,
                    },
                )],
                ..AccountPull::default()
            };
            write_account(account, &pull, chrono::Utc::now(), 86_400, &log).unwrap()
        };
        // A worker's answer, then a manual sync's older answer written after it.
        write(10, answered);
        let late = write(7, answered - chrono::Duration::seconds(30));
        assert_eq!(late.snapshots, 0, "the older answer writes no snapshot");
        let (views, snapshots) = Spi::get_two::<i64, i64>(
            "SELECT current_views, (SELECT count(*) FROM pullsync.workspace_threads_post_metrics)
               FROM pullsync.workspace_threads_posts WHERE threads_post_id = '555'",
        )
        .unwrap();
        assert_eq!((views, snapshots), (Some(10), Some(1)));
        // A metric the answer left out keeps its value: no false delta.
        let pull = AccountPull {
            metrics: vec![(
                "555".to_string(),
                Reading {
                    values: [None, Some(2), Some(1), Some(1), Some(1), Some(1)],
                    fetched_at: answered + chrono::Duration::seconds(30),
                },
            )],
            ..AccountPull::default()
        };
        write_account(account, &pull, chrono::Utc::now(), 86_400, &log).unwrap();
        let views_delta = Spi::get_one::<i64>(
            "SELECT views_delta FROM pullsync.workspace_threads_post_metrics_deltas ORDER BY period_end DESC LIMIT 1",
        )
        .unwrap();
        assert_eq!(views_delta, Some(0));
    }

    #[pg_test]
    fn a_new_post_is_written_once_with_its_first_layers_and_its_text_as_sent() {
        use crate::threads::store::{write_account, LogContext};
        use pullsync_core::threads::pull::{AccountPull, PulledPost, Reading};
        let account = add_account("1011", "THAAfirst-write");
        Spi::run(&format!(
            "INSERT INTO pullsync.workspace_threads_posts (workspace_threads_account_id, threads_post_id, media_type,
                    published_at, current_views, metrics_snapshot_at, content_hash)
             VALUES ('{account}', 'stored', 'TEXT_POST', now() - interval '2 days', 4, now() - interval '1 day', 1)"
        ))
        .unwrap();
        let post = |id: &str, text: &str, children: &[&str]| {
            let mut post = serde_json::json!({
                "id": id, "media_type": "TEXT_POST", "text": text,
                "timestamp": "2026-11-30T10:00:00+0000",
            });
            if !children.is_empty() {
                post["children"] = serde_json::json!({
                    "data": children.iter().map(|c| serde_json::json!({ "id": c })).collect::<Vec<_>>()
                });
            }
            PulledPost {
                post: serde_json::from_value(post).unwrap(),
                content_hash: 2,
            }
        };
        let fetched_at = chrono::Utc::now();
        let reading = |views| Reading {
            values: [Some(views), Some(2), Some(0), Some(0), Some(0), Some(0)],
            fetched_at,
        };
        let pull = AccountPull {
            posts: vec![
                post("measured", "a\0b", &[r#"c"1"#, r"c\2", "c,3"]),
                post("facade", "no insights", &[]),
                post("unasked", "not checked yet", &[]),
                post("stored", "edited", &[]),
            ],
            metrics: vec![
                ("measured".to_string(), reading(9)),
                ("stored".to_string(), reading(6)),
            ],
            metrics_checked: ["measured", "facade", "stored"].map(String::from).to_vec(),
            ..AccountPull::default()
        };
        let log = LogContext {
            job_log_id: None,
            job_type: "test",
            started_at: fetched_at,
        };
        let updates_so_far = || {
            Spi::get_one::<i64>(
                "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'pullsync.workspace_threads_posts'::regclass",
            )
            .unwrap()
            .unwrap_or(0)
        };
        let before = updates_so_far();
        let counts = write_account(account, &pull, chrono::Utc::now(), 86_400, &log).unwrap();
        assert_eq!(
            (
                counts.posts_new,
                counts.posts_updated,
                counts.snapshots,
                counts.deltas
            ),
            (3, 1, 2, 2)
        );
        // The stored post: its content, then its layers. The new ones: one insert each.
        assert_eq!(updates_so_far() - before, 2);

        let post_row = |id: &str| {
            Spi::get_three::<i64, bool, bool>(&format!(
                "SELECT current_views, metrics_updated_at IS NOT NULL, metrics_snapshot_at IS NOT NULL
                   FROM pullsync.workspace_threads_posts WHERE threads_post_id = '{id}'"
            ))
            .unwrap()
        };
        assert_eq!(post_row("measured"), (Some(9), Some(true), Some(true)));
        assert_eq!(post_row("facade"), (Some(0), Some(true), Some(false)));
        assert_eq!(post_row("unasked"), (Some(0), Some(false), Some(false)));
        assert_eq!(post_row("stored"), (Some(6), Some(true), Some(true)));

        // Each post's deltas add up to its current views; the first counts from zero.
        let (first_delta, first_start) = Spi::get_two::<i64, bool>(
            "SELECT d.views_delta, d.period_start IS NULL
               FROM pullsync.workspace_threads_post_metrics_deltas d
               JOIN pullsync.workspace_threads_posts p ON p.id = d.workspace_threads_post_id
              WHERE p.threads_post_id = 'measured'",
        )
        .unwrap();
        assert_eq!((first_delta, first_start), (Some(9), Some(true)));
        let stored_delta = Spi::get_one::<i64>(
            "SELECT d.views_delta FROM pullsync.workspace_threads_post_metrics_deltas d
               JOIN pullsync.workspace_threads_posts p ON p.id = d.workspace_threads_post_id
              WHERE p.threads_post_id = 'stored'",
        )
        .unwrap();
        assert_eq!(stored_delta, Some(2));

        let (text, children) = Spi::get_two::<String, Vec<String>>(
            "SELECT text, children_ids FROM pullsync.workspace_threads_posts WHERE threads_post_id = 'measured'",
        )
        .unwrap();
        assert_eq!(text.as_deref(), Some("ab"), "Postgres text holds no NUL");
        assert_eq!(
            children,
            Some(vec![
                r#"c"1"#.to_string(),
                r"c\2".to_string(),
                "c,3".to_string()
            ])
        );
    }

    #[pg_test]
    fn sealed_token_round_trips_and_hides_the_plaintext() {
        let account = add_account("1001", "THAAplaintext-token");
        let sealed = Spi::get_one::<String>(
            "SELECT access_token_encrypted FROM pullsync.workspace_threads_tokens WHERE is_primary",
        )
        .unwrap()
        .unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("plaintext"));
        assert_eq!(open_primary_token(account).unwrap(), "THAAplaintext-token");
    }

    #[pg_test]
    fn a_new_token_revokes_the_earlier_primary() {
        let first = add_account("1002", "token-one");
        let second = add_account("1002", "token-two");
        assert_eq!(first, second);
        let (primaries, revoked) = Spi::get_two::<i64, i64>(&format!(
            "SELECT count(*) FILTER (WHERE is_primary), count(*) FILTER (WHERE revoked_at IS NOT NULL)
               FROM pullsync.workspace_threads_tokens WHERE workspace_threads_account_id = '{first}'"
        ))
        .unwrap();
        assert_eq!((primaries, revoked), (Some(1), Some(1)));
        assert_eq!(open_primary_token(first).unwrap(), "token-two");
    }

    #[pg_test]
    fn a_token_sealed_with_another_key_fails_cleanly_naming_the_row() {
        let account = add_account("1003", "THAAsecret-xyz");
        use_key("ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=");
        let err = open_primary_token(account).unwrap_err().to_string();
        assert!(err.contains(&account.to_string()), "{err}");
        assert!(err.contains("does not open"), "{err}");
        assert!(!err.contains("secret-xyz"), "{err}");
    }

    #[pg_test(error = "rows of pullsync.workspace_threads_post_metrics are immutable snapshots")]
    fn post_snapshots_refuse_update() {
        let account = add_account("1004", "t");
        Spi::run(&format!(
            "INSERT INTO pullsync.workspace_threads_posts (id, workspace_threads_account_id, threads_post_id, media_type, published_at)
             VALUES ('22222222-2222-2222-2222-222222222222', '{account}', 'p1', 'TEXT_POST', now());
             INSERT INTO pullsync.workspace_threads_post_metrics
                    (workspace_threads_account_id, workspace_threads_post_id, views, likes, replies, reposts, quotes,
                     shares, captured_at)
             VALUES ('{account}', '22222222-2222-2222-2222-222222222222', 1, 1, 1, 1, 1, 1, now());"
        ))
        .unwrap();
        Spi::run("UPDATE pullsync.workspace_threads_post_metrics SET views = 2").unwrap();
    }

    #[pg_test(
        error = "rows of pullsync.workspace_threads_account_insights are immutable snapshots"
    )]
    fn account_snapshots_refuse_update() {
        let account = add_account("1005", "t");
        Spi::run(&format!(
            "INSERT INTO pullsync.workspace_threads_account_insights
                    (workspace_threads_account_id, followers_count, views, likes, replies, reposts, quotes, clicks, captured_at)
             VALUES ('{account}', 1, 1, 1, 1, 1, 1, 1, now())"
        ))
        .unwrap();
        Spi::run("UPDATE pullsync.workspace_threads_account_insights SET views = 2").unwrap();
    }

    #[pg_test(
        error = "rows of pullsync.workspace_threads_post_metrics are deleted only by the retention path"
    )]
    fn snapshots_refuse_delete_outside_retention() {
        let account = add_account("1006", "t");
        Spi::run(&format!(
            "INSERT INTO pullsync.workspace_threads_posts (id, workspace_threads_account_id, threads_post_id, media_type, published_at)
             VALUES ('33333333-3333-3333-3333-333333333333', '{account}', 'p2', 'TEXT_POST', now());
             INSERT INTO pullsync.workspace_threads_post_metrics
                    (workspace_threads_account_id, workspace_threads_post_id, views, likes, replies, reposts, quotes,
                     shares, captured_at)
             VALUES ('{account}', '33333333-3333-3333-3333-333333333333', 1, 1, 1, 1, 1, 1, now());"
        ))
        .unwrap();
        Spi::run("DELETE FROM pullsync.workspace_threads_post_metrics").unwrap();
    }

    #[pg_test]
    fn snapshots_go_with_their_account_and_with_retention() {
        let account = add_account("1007", "t");
        Spi::run(&format!(
            "INSERT INTO pullsync.workspace_threads_account_insights
                    (workspace_threads_account_id, followers_count, views, likes, replies, reposts, quotes, clicks, captured_at)
             VALUES ('{account}', 1, 1, 1, 1, 1, 1, 1, now() - interval '1 day'), ('{account}', 2, 2, 2, 2, 2, 2, 2, now());
             SET LOCAL pullsync.allow_snapshot_delete = on;
             DELETE FROM pullsync.workspace_threads_account_insights WHERE captured_at < now() - interval '1 hour';
             RESET pullsync.allow_snapshot_delete;
             INSERT INTO pullsync.sync_logs (job_type, source, workspace_threads_account_id, status, started_at)
             VALUES ('threads_sync', 'threads', '{account}', 'completed', now());
             INSERT INTO pullsync.reconciliation_runs (source, workspace_threads_account_id, window_start, window_end, status)
             VALUES ('threads', '{account}', now() - interval '1 day', now(), 'success');"
        ))
        .unwrap();
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM pullsync.workspace_threads_account_insights")
                .unwrap(),
            Some(1)
        );
        Spi::run(&format!(
            "DELETE FROM pullsync.workspace_threads_accounts WHERE id = '{account}'"
        ))
        .unwrap();
        // Its snapshots by foreign key, its logs by the forget_account trigger.
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT (SELECT count(*) FROM pullsync.workspace_threads_account_insights)
                      + (SELECT count(*) FROM pullsync.sync_logs)
                      + (SELECT count(*) FROM pullsync.reconciliation_runs)"
            )
            .unwrap(),
            Some(0)
        );
    }

    #[pg_test]
    fn rotation_reseals_every_value_and_the_old_key_opens_none() {
        const NEW_KEY: &str = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleSE=";
        let account = add_account("1009", "THAArotate-me");
        Spi::run(
            "SELECT pullsync.feed_add_consumer('partner', 'consumer-key-0123456789');
             SELECT pullsync.feed_add_source('upstream', 'http://127.0.0.1:9', 'source-key-0123456789');
             CREATE TABLE public.rotated (id bigint PRIMARY KEY);
             SELECT pullsync.rest_add_source('api', '{\"base_url\": \"http://127.0.0.1:9\",
               \"auth\": {\"type\": \"bearer\", \"token\": \"rest-token-0123456789\"},
               \"primary_key\": \"id\", \"target\": {\"table\": \"public.rotated\", \"columns\": {\"id\": \"id\"}}}');
             SELECT pullsync.rest_add_source('oauth', '{\"base_url\": \"http://127.0.0.1:9\",
               \"auth\": {\"type\": \"oauth2\", \"grant\": \"refresh_token\", \"token_url\": \"http://127.0.0.1:9/token\",
                          \"client_id\": \"app\", \"client_secret\": \"client-secret-0123456789\", \"refresh_token\": \"refresh-0123456789\"},
               \"primary_key\": \"id\", \"target\": {\"table\": \"public.rotated\", \"columns\": {\"id\": \"id\"}}}');",
        )
        .unwrap();
        crate::rest::store::save_tokens("oauth", "access-0123456789", None, None).unwrap();
        let sealed = || {
            Spi::get_one::<String>(
                "SELECT string_agg(v, ',' ORDER BY v) FROM (
                   SELECT access_token_encrypted AS v FROM pullsync.workspace_threads_tokens
                   UNION ALL SELECT api_key_encrypted FROM pullsync.feed_consumers
                   UNION ALL SELECT api_key_encrypted FROM pullsync.feed_sources
                   UNION ALL SELECT secret_encrypted FROM pullsync.rest_sources
                   UNION ALL SELECT refresh_token_encrypted FROM pullsync.rest_sources
                   UNION ALL SELECT access_token_encrypted FROM pullsync.rest_sources) s",
            )
            .unwrap()
            .unwrap()
        };
        let before = sealed();
        let result = Spi::get_one::<pgrx::JsonB>(&format!(
            "SELECT pullsync.rotate_encryption_key('{NEW_KEY}')"
        ))
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(result["resealed"]["workspace_threads_tokens"], 1);
        assert_eq!(result["resealed"]["feed_consumers"], 1);
        assert_eq!(result["resealed"]["feed_sources"], 1);
        // Two secrets, a refresh token and an access token.
        assert_eq!(result["resealed"]["rest_sources"], 4);
        assert!(!result.to_string().contains(NEW_KEY));
        let after = sealed();
        assert!(
            before.split(',').all(|v| !after.contains(v)),
            "every value changed"
        );
        // With the new key in the key file everything opens.
        use_key(NEW_KEY);
        assert_eq!(open_primary_token(account).unwrap(), "THAArotate-me");
        assert!(crate::feed::provider::load_source("upstream").is_ok());
        assert_eq!(
            crate::rest::store::load("api").unwrap().secret.as_deref(),
            Some("rest-token-0123456789")
        );
        let tokens = crate::rest::store::load_tokens("oauth").unwrap();
        assert_eq!(
            (tokens.refresh.as_deref(), tokens.access.as_deref()),
            (Some("refresh-0123456789"), Some("access-0123456789"))
        );
        // With the old key nothing opens any more.
        Spi::run(&format!(
            "SET pullsync.encryption_key_file = '{}'",
            crate::pg_test::KEY_FILE
        ))
        .unwrap();
        assert!(open_primary_token(account).is_err());
        assert!(crate::feed::provider::load_source("upstream").is_err());
        assert!(crate::rest::store::load("api").is_err());
        assert!(crate::rest::store::load_tokens("oauth").is_err());
    }

    #[pg_test(
        error = "pullsync.encryption_key is no longer accepted: the key must not be a setting"
    )]
    fn the_key_itself_is_refused_as_a_setting() {
        Spi::run("SET pullsync.encryption_key = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='")
            .unwrap();
    }

    #[pg_test(error = "new_key is the key already in use")]
    fn rotating_to_the_same_key_is_refused() {
        Spi::run(
            "SELECT pullsync.rotate_encryption_key('MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=')",
        )
        .unwrap();
    }

    /// A correctly signed conversations cursor at `xid`, issued `age_secs` ago (negative:
    /// ahead) by this provider.
    fn signed_cursor_at(xid: u64, age_secs: i64) -> String {
        use pullsync_core::feed::cursor::{encode, Cursor, Position};
        Spi::run("SELECT pullsync.feed_add_consumer('partner', 'cursor-test-key-0123456789')")
            .unwrap();
        let cursor = Cursor {
            position: Position {
                xid,
                id: String::new(),
            },
            stream: "conversations".into(),
            origin: crate::feed::serve::identity().unwrap().origin,
            issued_at: chrono::Utc::now().timestamp() - age_secs,
        };
        encode(&cursor, &crate::feed::serve::cursor_key().unwrap(), 7)
    }

    fn signed_cursor(age_secs: i64) -> String {
        signed_cursor_at(0, age_secs)
    }

    #[pg_test(
        error = "invalid cursor: the cursor was issued by another provider, or by this one before it was restored, recovered or promoted"
    )]
    fn a_cursor_of_an_earlier_epoch_is_refused() {
        let cursor = signed_cursor(60);
        let epoch = Spi::get_one::<i64>("SELECT epoch FROM pullsync.feed_epoch").unwrap();
        let new =
            Spi::get_one::<i64>("SELECT pullsync.feed_new_epoch('restored from a disk snapshot')")
                .unwrap();
        assert_eq!(new, epoch.map(|e| e + 1));
        Spi::run(&format!(
            "SELECT pullsync.feed_conversations('partner', NULL, '{cursor}')"
        ))
        .unwrap();
    }

    #[pg_test(
        error = "invalid cursor: the cursor was issued by another provider, or by this one before it was restored, recovered or promoted"
    )]
    fn a_cursor_ahead_of_every_transaction_is_refused() {
        let cursor = signed_cursor_at(u64::from(u32::MAX) * 1000, 60);
        Spi::run(&format!(
            "SELECT pullsync.feed_conversations('partner', NULL, '{cursor}')"
        ))
        .unwrap();
    }

    #[pg_test(error = "invalid cursor: the cursor is older than 30 days")]
    fn an_expired_cursor_is_refused() {
        let cursor = signed_cursor(31 * 86_400);
        Spi::run(&format!(
            "SELECT pullsync.feed_conversations('partner', NULL, '{cursor}')"
        ))
        .unwrap();
    }

    #[pg_test(error = "invalid cursor: the cursor was issued in the future")]
    fn a_cursor_from_the_future_is_refused() {
        let cursor = signed_cursor(-3_600);
        Spi::run(&format!(
            "SELECT pullsync.feed_conversations('partner', NULL, '{cursor}')"
        ))
        .unwrap();
    }

    #[pg_test]
    fn a_fresh_signed_cursor_is_accepted() {
        let cursor = signed_cursor(60);
        let page = Spi::get_one::<pgrx::JsonB>(&format!(
            "SELECT pullsync.feed_conversations('partner', NULL, '{cursor}')"
        ))
        .unwrap()
        .unwrap();
        assert!(page.0["items"].is_array());
    }

    #[pg_test(error = "Threads user 1008 is already connected to another workspace")]
    fn an_account_cannot_silently_move_workspaces() {
        add_account("1008", "t");
        Spi::run(
            "SELECT pullsync.threads_add_account('99999999-9999-9999-9999-999999999999', '1008', 'alice', 't', now() + interval '1 day')",
        )
        .unwrap();
    }

    #[pg_test]
    fn one_row_per_threads_user_without_a_unique_constraint_on_it() {
        let derived = Spi::get_one::<Uuid>("SELECT md5('pullsync:threads-account:1020')::uuid")
            .unwrap()
            .unwrap();
        assert_eq!(add_account("1020", "t1"), derived);
        assert_eq!(add_account("1020", "t2"), derived);
        // An account from before 0.2.0 has a random id: it is found, not doubled.
        Spi::run(&format!(
            "INSERT INTO pullsync.workspace_threads_accounts (id, workspace_id, threads_user_id, username)
             VALUES ('44444444-4444-4444-4444-444444444444', '{WORKSPACE}', '1021', 'old')"
        ))
        .unwrap();
        assert_eq!(
            add_account("1021", "t3").to_string(),
            "44444444-4444-4444-4444-444444444444"
        );
        let rows = Spi::get_one::<i64>(
            "SELECT count(*) FROM pullsync.workspace_threads_accounts WHERE threads_user_id IN ('1020', '1021')",
        )
        .unwrap();
        assert_eq!(rows, Some(2));
    }

    #[pg_test]
    fn a_pulled_message_that_moves_conversation_keeps_one_row() {
        use crate::feed::store::upsert_items;
        let item = |conversation: &str, updated_at: &str| {
            serde_json::json!({"id": "m1", "conversation_id": conversation, "role": "user",
                               "created_at": "2026-06-01T00:00:00Z", "updated_at": updated_at})
        };
        let rows = || {
            Spi::get_one::<String>(
                "SELECT string_agg(conversation_id, ',' ORDER BY conversation_id)
                   FROM pullsync.conversation_messages WHERE feed_source = 'src' AND id = 'm1'",
            )
            .unwrap()
        };
        upsert_items("src", "messages", &[item("c1", "2026-06-01T00:00:00Z")]).unwrap();
        upsert_items("src", "messages", &[item("c2", "2026-06-01T00:01:00Z")]).unwrap();
        assert_eq!(rows().as_deref(), Some("c2"));
        // An older version in its old conversation does not come back.
        upsert_items("src", "messages", &[item("c1", "2026-06-01T00:00:30Z")]).unwrap();
        assert_eq!(rows().as_deref(), Some("c2"));
        // Two versions in one page: the newer one is the row.
        upsert_items(
            "src",
            "messages",
            &[
                item("c4", "2026-06-01T00:02:00Z"),
                item("c3", "2026-06-01T00:03:00Z"),
            ],
        )
        .unwrap();
        assert_eq!(rows().as_deref(), Some("c3"));
        // Another source's message of the same id is its own row.
        upsert_items("other", "messages", &[item("c9", "2026-06-01T00:00:00Z")]).unwrap();
        assert_eq!(rows().as_deref(), Some("c3"));
    }

    #[pg_test]
    fn a_kept_plan_is_planned_again_when_its_table_is_made_anew() {
        use crate::plumbing::prepared;
        const LABEL_OF: &str = "SELECT label FROM public.kept_plan_probe WHERE id = $1";
        Spi::run(
            "CREATE TABLE public.kept_plan_probe (id int PRIMARY KEY, label text);
             INSERT INTO public.kept_plan_probe VALUES (1, 'first')",
        )
        .unwrap();
        let label = || prepared::get_one::<String>(LABEL_OF, &[1_i32.into()]).unwrap();
        assert_eq!(label().as_deref(), Some("first"));
        // A new table of the same name, its columns in another order: the kept plan of the
        // old one would read a dropped relation.
        Spi::run(
            "DROP TABLE public.kept_plan_probe;
             CREATE TABLE public.kept_plan_probe (label text, id int PRIMARY KEY);
             INSERT INTO public.kept_plan_probe VALUES ('second', 1)",
        )
        .unwrap();
        assert_eq!(label().as_deref(), Some("second"));
        // Another argument type is a plan of its own.
        let by_bigint = prepared::get_one::<String>(LABEL_OF, &[1_i64.into()]).unwrap();
        assert_eq!(by_bigint.as_deref(), Some("second"));
    }

    #[pg_test]
    fn a_worker_claims_its_share_of_a_run_less_what_it_holds() {
        use crate::jobs::queue::claim_units;
        let run = Spi::get_one::<i64>(
            "INSERT INTO pullsync.jobs (kind, state, phase, units_total)
             VALUES ('share_test_run', 'running', 'pulling', 10) RETURNING id",
        )
        .unwrap()
        .unwrap();
        Spi::run(&format!(
            "INSERT INTO pullsync.jobs (parent_id, kind, payload)
             SELECT {run}, 'share_test_unit', jsonb_build_object('n', n) FROM generate_series(1, 10) n"
        ))
        .unwrap();
        // Two workers (the default): half of the 10 units, though the batch could take all.
        let first = claim_units("share_test_run", 256).unwrap();
        assert_eq!(first.len(), 5);
        // While it holds them (a batch still being pulled), no more.
        assert!(claim_units("share_test_run", 256).unwrap().is_empty());
        // Its 5 written: half of the 5 left, rounded up.
        let ids: Vec<i64> = first.iter().map(|u| u.id).collect();
        Spi::run_with_args(
            "UPDATE pullsync.jobs SET state = 'completed' WHERE id = ANY($1)",
            &[ids.into()],
        )
        .unwrap();
        Spi::run(&format!(
            "UPDATE pullsync.jobs SET units_done = 5 WHERE id = {run}"
        ))
        .unwrap();
        assert_eq!(claim_units("share_test_run", 256).unwrap().len(), 3);
        assert_eq!(claim_units("share_test_run", 2).unwrap().len(), 0);
    }

    #[pg_test]
    fn statements_over_a_fleet_run_with_little_work_mem_and_no_jit() {
        use crate::jobs::queue::with_fleet_settings;
        let settings = || {
            Spi::get_two::<String, String>(
                "SELECT current_setting('work_mem'), current_setting('jit')",
            )
            .unwrap()
        };
        Spi::run("SET LOCAL work_mem = '8MB'; SET LOCAL jit = on").unwrap();
        let inside = with_fleet_settings(|| Ok(settings())).unwrap();
        assert_eq!(inside, (Some("256kB".into()), Some("off".into())));
        assert_eq!(settings(), (Some("8MB".into()), Some("on".into())));
        Spi::run("SET LOCAL work_mem = '64kB'").unwrap();
        let inside = with_fleet_settings(|| Ok(settings())).unwrap();
        assert_eq!(
            inside.0.as_deref(),
            Some("64kB"),
            "a smaller setting is kept"
        );
    }

    /// One test, not two: runs of one kind are claimed one at a time, so two tests
    /// scheduling runs at once would take turns.
    #[pg_test]
    fn planning_and_closing_a_run_give_the_settings_back() {
        use crate::jobs::queue::claim_and_plan_run;
        let work_mem = || Spi::get_one::<String>("SELECT current_setting('work_mem')").unwrap();
        let state = |id: i64| {
            Spi::get_one::<String>(&format!("SELECT state FROM pullsync.jobs WHERE id = {id}"))
                .unwrap()
        };
        Spi::run("SET LOCAL work_mem = '8MB'").unwrap();
        // No account to pull: the run is closed as soon as it is planned.
        Spi::run("SELECT pullsync.threads_scheduled_sync()").unwrap();
        let empty = claim_and_plan_run()
            .unwrap()
            .expect("the empty run is claimed");
        assert_eq!(state(empty.id).as_deref(), Some("completed"));
        assert_eq!(work_mem().as_deref(), Some("8MB"));

        add_account("2020", "THAAplanone");
        add_account("2021", "THAAplantwo");
        Spi::run("SELECT pullsync.threads_scheduled_sync()").unwrap();
        let job = claim_and_plan_run().unwrap().expect("the run is claimed");
        let planned = Spi::get_one::<i32>(&format!(
            "SELECT units_total FROM pullsync.jobs WHERE id = {}",
            job.id
        ))
        .unwrap();
        assert_eq!(planned, Some(2));
        assert_eq!(state(job.id).as_deref(), Some("running"));
        assert_eq!(work_mem().as_deref(), Some("8MB"));
    }

    /// A Postgres ERROR caught in a unit of work keeps its SQLSTATE, message and detail, and
    /// is raised at the SQL boundary with that SQLSTATE, not as XX000.
    #[pg_test]
    fn a_caught_error_is_raised_again_with_its_own_sqlstate() {
        use crate::error::{PullsyncError, SqlState};
        use crate::plumbing::txn::Txn;
        use pgrx::pg_sys::panic::CaughtError;
        use pgrx::PgTryBuilder;
        Spi::run(
            "CREATE TABLE public.kept_sqlstate (id int PRIMARY KEY);
             INSERT INTO public.kept_sqlstate VALUES (1);
             CREATE ROLE kept_sqlstate_nobody",
        )
        .unwrap();
        let duplicate = Txn::Subtransaction
            .run(|| Ok(Spi::run("INSERT INTO public.kept_sqlstate VALUES (1)")?))
            .unwrap_err();
        assert_eq!(
            duplicate.sqlstate(),
            SqlState::UNIQUE_VIOLATION,
            "{duplicate}"
        );
        match &duplicate {
            PullsyncError::Postgres {
                message, detail, ..
            } => {
                assert!(message.contains("kept_sqlstate_pkey"), "{message}");
                assert_eq!(detail.as_deref(), Some("Key (id)=(1) already exists."));
            }
            other => panic!("{other:?}"),
        }
        // A REST write's path: as the source's owner, who may not write there.
        let denied = crate::rest::store::as_role("kept_sqlstate_nobody", || {
            Ok(Spi::run("INSERT INTO public.kept_sqlstate VALUES (2)")?)
        })
        .unwrap_err();
        assert_eq!(
            denied.sqlstate(),
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{denied}"
        );

        for (error, expected) in [
            (duplicate, SqlState::UNIQUE_VIOLATION),
            (denied, SqlState::INSUFFICIENT_PRIVILEGE),
        ] {
            let error = std::panic::AssertUnwindSafe(error);
            let raised = PgTryBuilder::new(move || {
                let error = error;
                error.0.raise_now()
            })
            .catch_others(|caught| match caught {
                CaughtError::PostgresError(e) | CaughtError::ErrorReport(e) => {
                    SqlState::from_packed(e.sql_error_code() as i32)
                }
                CaughtError::RustPanic { ereport, .. } => panic!("{}", ereport.message()),
            })
            .execute();
            assert_eq!(raised, expected);
        }
    }
}
