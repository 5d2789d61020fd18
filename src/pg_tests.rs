//! In-database tests (`cargo pgrx test`). Cross-connection behaviour (privileges, SQLSTATEs
//! seen by a client, DROP EXTENSION) is tested in pgrx-tests/ over real connections.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::threads::tokens::open_primary_token;
    use pgrx::prelude::*;
    use pgrx::Uuid;

    const WORKSPACE: &str = "11111111-1111-1111-1111-111111111111";

    fn add_account(user_id: &str, token: &str) -> Uuid {
        Spi::get_one::<Uuid>(&format!(
            "SELECT pullsync.threads_add_account('{WORKSPACE}', '{user_id}', 'alice', '{token}', now() + interval '60 days')"
        ))
        .unwrap()
        .unwrap()
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
        Spi::run("SET pullsync.encryption_key = 'ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY='")
            .unwrap();
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
                    (workspace_threads_post_id, views, likes, replies, reposts, quotes, shares, captured_at)
             VALUES ('22222222-2222-2222-2222-222222222222', 1, 1, 1, 1, 1, 1, now());"
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
                    (workspace_threads_post_id, views, likes, replies, reposts, quotes, shares, captured_at)
             VALUES ('33333333-3333-3333-3333-333333333333', 1, 1, 1, 1, 1, 1, now());"
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
             RESET pullsync.allow_snapshot_delete;"
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
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM pullsync.workspace_threads_account_insights")
                .unwrap(),
            Some(0)
        );
    }

    #[pg_test(error = "Threads user 1008 is already connected to another workspace")]
    fn an_account_cannot_silently_move_workspaces() {
        add_account("1008", "t");
        Spi::run(
            "SELECT pullsync.threads_add_account('99999999-9999-9999-9999-999999999999', '1008', 'alice', 't', now() + interval '1 day')",
        )
        .unwrap();
    }
}
