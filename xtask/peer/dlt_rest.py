"""The peer of `cargo xtask bench --only rest`: dlt's declarative `rest_api` source over the
bench's paged JSON API, tuned as dlt's performance guide advises, upserting into a table
the bench created (dlt adds its `_dlt_load_id` and `_dlt_id` columns). Run by xtask with:
  REST_API      the API base URL
  REST_MODE     "listing": GET records?total=&limit= with its cursor (`next_cursor`) into
                bench_records; "fanout": GET parents/{id}/children for every id of the
                table bench_parents (read by a plain dlt resource, not loaded) into
                bench_children
  TOTAL, LIMIT  the listing's records and records per page (listing)
  PAGINATION    "cursor" (the default) or "page_number" (`page` from 1, to the first
                empty page) for the listing
  PER_PARENT    children per parent (fanout)
  PG_DSN        postgresql://user:password@host:port/database
  PIPELINES_DIR where dlt keeps its state
xtask counts the rows in the table: with csv files, dlt's own row counts are cells (rows
times columns, dlt 1.31.0).
"""

import os

import dlt
import psycopg2
from dlt.common.jsonpath import compile_path
from dlt.sources.rest_api import rest_api_source

DATASET = "dlt_rest"
# Compiled once: a data_selector given as a string is parsed on every response.
DATA = compile_path("data")


def tune():
    """dlt's performance guide for a large load: big in-memory buffers, files split so
    normalize and load work on them in parallel, uncompressed files, a worker per core to
    normalize, several load jobs at once, a wide extract thread pool."""
    dlt.config["data_writer.buffer_max_items"] = 100_000
    dlt.config["data_writer.file_max_items"] = 100_000
    dlt.config["data_writer.disable_compression"] = True
    dlt.config["normalize.workers"] = os.cpu_count() or 1
    dlt.config["load.workers"] = 8
    dlt.config["extract.workers"] = 32
    dlt.config["extract.max_parallel_items"] = 64


PAGINATORS = {
    "cursor": {
        "type": "cursor",
        "cursor_path": "next_cursor",
        "cursor_param": "cursor",
    },
    "page_number": {
        "type": "page_number",
        "base_page": 1,
        "page_param": "page",
        "total_path": None,
        "stop_after_empty_page": True,
    },
}


def client(base_url, pagination="cursor"):
    return {"base_url": base_url, "paginator": PAGINATORS[pagination]}


# Upsert: pg_pullsync's own semantics (INSERT … ON CONFLICT DO UPDATE on the key).
UPSERT = {"disposition": "merge", "strategy": "upsert"}


def listing(base_url, total, limit, pagination):
    return rest_api_source(
        {
            "client": client(base_url, pagination),
            "resource_defaults": {"write_disposition": UPSERT, "parallelized": True},
            "resources": [
                {
                    "name": "bench_records",
                    "primary_key": "id",
                    "endpoint": {
                        "path": "records",
                        "params": {"total": total, "limit": limit},
                        "data_selector": DATA,
                    },
                }
            ],
        },
        name="bench_rest",
        # The flag in the resource defaults is lost on top-level resources (dlt 1.31.0).
        parallelized=True,
    )


def fanout(base_url, dsn, per_parent):
    @dlt.resource(name="bench_parents", selected=False)
    def parents():
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT id FROM public.bench_parents ORDER BY id")
            yield [{"id": row[0]} for row in cursor.fetchall()]

    source = rest_api_source(
        {
            "client": client(base_url),
            "resource_defaults": {"write_disposition": UPSERT, "parallelized": True},
            "resources": [
                parents,
                {
                    "name": "bench_children",
                    "primary_key": "id",
                    "endpoint": {
                        "path": "parents/{resources.bench_parents.id}/children",
                        "params": {"per_parent": per_parent},
                        "data_selector": DATA,
                    },
                },
            ],
        },
        name="bench_rest",
        # The flag in the resource defaults is lost on top-level resources (dlt 1.31.0).
        parallelized=True,
    )
    return source.with_resources("bench_children")


def main():
    tune()
    mode = os.environ["REST_MODE"]
    dsn = os.environ["PG_DSN"]
    base_url = os.environ["REST_API"]
    if mode == "listing":
        pagination = os.environ.get("PAGINATION", "cursor")
        source = listing(base_url, int(os.environ["TOTAL"]), int(os.environ["LIMIT"]), pagination)
    elif mode == "fanout":
        source = fanout(base_url, dsn, int(os.environ["PER_PARENT"]))
    else:
        raise SystemExit(f"REST_MODE must be listing or fanout, not {mode!r}")
    pipeline = dlt.pipeline(
        pipeline_name=f"rest_bench_{mode}",
        pipelines_dir=os.environ["PIPELINES_DIR"],
        destination=dlt.destinations.postgres(credentials=dsn),
        dataset_name=DATASET,
    )
    # csv: Postgres loads it with COPY, the fastest of the formats dlt has for it.
    pipeline.run(source, loader_file_format="csv")


if __name__ == "__main__":
    main()
