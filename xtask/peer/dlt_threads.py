"""The peer of `cargo xtask bench`: the Threads workload as a dlt pipeline.

What a team would write with dlt's REST helpers: posts per account with cursor pagination
and an incremental cursor on `timestamp`, each post's insights, the account's insights,
all merged into Postgres. Run by xtask with:
  THREADS_API    the API base URL (the simulator)
  ACCOUNTS_FILE  JSON list of {"user_id", "token"}
  PG_DSN         postgresql://user:password@host:port/database
  PIPELINES_DIR  where dlt keeps its state between runs (the incremental cursor)
It prints one line: rows loaded per table.
"""

import json
import os
import time

import dlt
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

POST_FIELDS = (
    "id,media_product_type,media_type,media_url,permalink,owner,username,text,timestamp,"
    "shortcode,thumbnail_url,children,is_quote_post,quoted_post,reposted_post,alt_text,"
    "link_attachment_url,gif_url,topic_tag,has_replies,reply_audience"
)
POST_METRICS = "views,likes,replies,reposts,quotes,shares"
ACCOUNT_METRICS = "views,likes,replies,reposts,quotes,clicks,followers_count"


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
def threads(base_url, accounts):
    def client(token):
        return RESTClient(
            base_url=base_url,
            auth=BearerTokenAuth(token),
            paginator=JSONResponseCursorPaginator(
                cursor_path="paging.cursors.after", cursor_param="after"
            ),
            data_selector="data",
        )

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

    @dlt.transformer(data_from=posts, primary_key="id", write_disposition="merge")
    def post_insights(page):
        for post in page:
            if post.get("media_type") == "REPOST_FACADE":
                continue
            answer = client(tokens[post["account_id"]]).get(
                f"{post['id']}/insights", params={"metric": POST_METRICS}
            )
            answer.raise_for_status()
            yield dict(metric_values(answer.json()), id=post["id"])

    @dlt.resource(primary_key=["account_id", "day"], write_disposition="merge")
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


def main():
    with open(os.environ["ACCOUNTS_FILE"]) as f:
        accounts = json.load(f)
    pipeline = dlt.pipeline(
        pipeline_name="threads_bench",
        pipelines_dir=os.environ["PIPELINES_DIR"],
        destination=dlt.destinations.postgres(credentials=os.environ["PG_DSN"]),
        dataset_name="dlt_threads",
    )
    pipeline.run(threads(os.environ["THREADS_API"], accounts))
    counts = pipeline.last_trace.last_normalize_info.row_counts
    print(json.dumps({k: v for k, v in counts.items() if not k.startswith("_dlt")}))


if __name__ == "__main__":
    main()
