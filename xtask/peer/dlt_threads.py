"""The peer of `cargo xtask bench`: the Threads workload as a dlt pipeline.

What a team would write with dlt's REST helpers: posts per account with cursor pagination
and an incremental cursor on `timestamp`, each post's insights, the account's insights,
all merged into Postgres. Run by xtask with:
  THREADS_API    the API base URL (the simulator)
  ACCOUNTS_FILE  JSON list of {"user_id", "token"}
  PG_DSN         postgresql://user:password@host:port/database
  PIPELINES_DIR  where dlt keeps its state between runs (the incremental cursor)
  DLT_VARIANT    "default" (as above, everything in dlt's main thread) or "tuned": what
                 dlt's performance guide offers for I/O-bound REST pulls, the per-post
                 insights calls deferred (`@dlt.defer`) into dlt's extract thread pool and
                 the account insights `parallelized`, one REST client per account instead
                 of one per call, and EXTRACT__WORKERS=32 and EXTRACT__MAX_PARALLEL_ITEMS=64
                 unless they are set already; or "rest_api": the same work as dlt's
                 declarative `rest_api` source, one set of resources per account (each
                 has its own token), all `parallelized`, with the tuned thread pool
It prints one line: rows loaded per table.
"""

import functools
import json
import os
import time

import dlt
from dlt.common.jsonpath import compile_path
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from dlt.sources.rest_api import rest_api_resources

POST_FIELDS = (
    "id,media_product_type,media_type,media_url,permalink,owner,username,text,timestamp,"
    "shortcode,thumbnail_url,children,is_quote_post,quoted_post,reposted_post,alt_text,"
    "link_attachment_url,gif_url,topic_tag,has_replies,reply_audience"
)
POST_METRICS = "views,likes,replies,reposts,quotes,shares"
ACCOUNT_METRICS = "views,likes,replies,reposts,quotes,clicks,followers_count"
# Compiled once: a data_selector given as a string is parsed by jsonpath_ng on every
# response, ~1 ms of CPU under the GIL per call.
DATA, WHOLE = compile_path("data"), compile_path("$")


def metric_values(insights):
    """{"name": value} from an insights answer: time series or total_value."""
    values = {}
    for metric in insights.get("data", []):
        if "total_value" in metric:
            values[metric["name"]] = metric["total_value"].get("value")
        elif metric.get("values"):
            values[metric["name"]] = sum(v.get("value", 0) for v in metric["values"])
    return values


@dlt.source(name="threads")
def threads(base_url, accounts, tuned=False):
    def new_client(token):
        return RESTClient(
            base_url=base_url,
            auth=BearerTokenAuth(token),
            paginator=JSONResponseCursorPaginator(
                cursor_path="paging.cursors.after", cursor_param="after"
            ),
            data_selector="data",
        )

    # Tuned: one client per token, shared by dlt's threads (its HTTP sessions are per
    # thread). Building a client per call costs ~17 ms of CPU under the GIL, which caps the
    # thread pool at ~60 calls/s: 34 s instead of 8 s for 20 accounts × 100 posts.
    client = functools.cache(new_client) if tuned else new_client
    tokens = {a["user_id"]: a["token"] for a in accounts}

    @dlt.resource(primary_key="id", write_disposition="merge")
    def posts(
        # No row_order: with several accounts in one resource, "desc" would close the
        # resource at the first account's old posts and skip the other accounts.
        timestamp=dlt.sources.incremental(
            "timestamp", initial_value="1970-01-01T00:00:00+0000"
        ),
    ):
        for account in accounts:
            pages = client(account["token"]).paginate(
                f"{account['user_id']}/threads",
                params={"fields": POST_FIELDS, "limit": 100},
            )
            for page in pages:
                yield [dict(post, account_id=account["user_id"]) for post in page]

    def insights_of(post):
        answer = client(tokens[post["account_id"]]).get(
            f"{post['id']}/insights", params={"metric": POST_METRICS}
        )
        answer.raise_for_status()
        return dict(metric_values(answer.json()), id=post["id"])

    # Tuned: each call is yielded as a deferred function, which dlt runs in its thread pool.
    fetch_insights = dlt.defer(insights_of) if tuned else insights_of

    @dlt.transformer(data_from=posts, primary_key="id", write_disposition="merge")
    def post_insights(page):
        for post in page:
            if post.get("media_type") == "REPOST_FACADE":
                continue
            yield fetch_insights(post)

    @dlt.resource(
        primary_key=["account_id", "day"], write_disposition="merge", parallelized=tuned
    )
    def account_insights():
        now = int(time.time())
        day = now - now % 86400
        for account in accounts:
            answer = client(account["token"]).get(
                f"{account['user_id']}/threads_insights",
                params={"metric": ACCOUNT_METRICS, "since": day, "until": now},
            )
            answer.raise_for_status()
            yield dict(
                metric_values(answer.json()), account_id=account["user_id"], day=day
            )

    return posts, post_insights, account_insights


def rest_api_config(base_url, account, day, now):
    """One account's rest_api config: its own token, resources named after the account."""
    user_id = account["user_id"]
    posts = f"posts_{user_id}"
    # The child's records carry these parent fields (dlt names them `_<parent>_<field>`).
    post_id, media_type = f"_{posts}_id", f"_{posts}_media_type"
    return {
        "client": {
            "base_url": base_url,
            "auth": {"type": "bearer", "token": account["token"]},
            "paginator": {
                "type": "cursor",
                "cursor_path": "paging.cursors.after",
                "cursor_param": "after",
            },
        },
        # Parallelized: the child's calls are deferred into dlt's thread pool one per post,
        # as `@dlt.defer` does in the tuned variant.
        "resource_defaults": {"write_disposition": "merge", "parallelized": True},
        "resources": [
            {
                "name": posts,
                "table_name": "posts",
                "primary_key": "id",
                "endpoint": {
                    "path": f"{user_id}/threads",
                    "params": {"fields": POST_FIELDS, "limit": 100},
                    "data_selector": DATA,
                    "incremental": {
                        "cursor_path": "timestamp",
                        "initial_value": "1970-01-01T00:00:00+0000",
                    },
                },
                "processing_steps": [{"map": lambda post: dict(post, account_id=user_id)}],
            },
            {
                "name": f"post_insights_{user_id}",
                "table_name": "post_insights",
                "primary_key": "id",
                "endpoint": {
                    "path": f"{{resources.{posts}.id}}/insights",
                    "params": {"metric": POST_METRICS},
                    "paginator": "single_page",
                    # The whole answer as one record, flattened by the map below.
                    "data_selector": WHOLE,
                },
                "include_from_parent": ["id", "media_type"],
                # A child calls once per parent record: REPOST_FACADE posts are dropped
                # after their (empty) answer, not before the call.
                "processing_steps": [
                    {"filter": lambda answer: answer[media_type] != "REPOST_FACADE"},
                    {"map": lambda answer: dict(metric_values(answer), id=answer[post_id])},
                ],
            },
            {
                "name": f"account_insights_{user_id}",
                "table_name": "account_insights",
                "primary_key": ["account_id", "day"],
                "endpoint": {
                    "path": f"{user_id}/threads_insights",
                    "params": {"metric": ACCOUNT_METRICS, "since": day, "until": now},
                    "paginator": "single_page",
                    "data_selector": WHOLE,
                },
                "processing_steps": [
                    {
                        "map": lambda answer: dict(
                            metric_values(answer), account_id=user_id, day=day
                        )
                    }
                ],
            },
        ],
    }


# parallelized: the flag in a rest_api resource config is lost on top-level resources
# (dlt 1.31.0): the 20 posts resources ran one at a time, 2.8 s for all posts instead of
# 0.4 s. The source's flag parallelizes every resource once it is built.
@dlt.source(name="threads", parallelized=True)
def threads_rest_api(base_url, accounts):
    """The same source from rest_api configs, one per account (each has its own token),
    loading into the shared tables; each account also keeps its own posts cursor."""
    now = int(time.time())
    day = now - now % 86400
    return [
        resource
        for account in accounts
        for resource in rest_api_resources(rest_api_config(base_url, account, day, now))
    ]


def main():
    variant = os.environ.get("DLT_VARIANT", "default")
    if variant not in ("default", "tuned", "rest_api"):
        raise SystemExit(f"DLT_VARIANT must be default, tuned or rest_api, not {variant!r}")
    tuned = variant == "tuned"
    if variant != "default":
        # dlt's defaults are 5 workers and 20 items in flight.
        os.environ.setdefault("EXTRACT__WORKERS", "32")
        os.environ.setdefault("EXTRACT__MAX_PARALLEL_ITEMS", "64")
    with open(os.environ["ACCOUNTS_FILE"]) as f:
        accounts = json.load(f)
    pipeline = dlt.pipeline(
        pipeline_name="threads_bench",
        pipelines_dir=os.environ["PIPELINES_DIR"],
        destination=dlt.destinations.postgres(credentials=os.environ["PG_DSN"]),
        dataset_name="dlt_threads",
    )
    if variant == "rest_api":
        source = threads_rest_api(os.environ["THREADS_API"], accounts)
    else:
        source = threads(os.environ["THREADS_API"], accounts, tuned)
    pipeline.run(source)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    print(json.dumps({k: v for k, v in counts.items() if not k.startswith("_dlt")}))


if __name__ == "__main__":
    main()
