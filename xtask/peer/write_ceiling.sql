-- What a REST page's write can cost at best, beside COPY (docs/BENCHMARKS.md, "Why not half
-- of COPY"): 200,000 rows of the REST bench's shape loaded four ways into the same table, in
-- 200 statements of 1,000 rows (a page each) in one transaction, so no page's commit is
-- counted:
--   COPY          COPY FROM a file of the rows (the ceiling);
--   typed INSERT  INSERT … SELECT from a table of the rows already typed;
--   typed upsert  the same with pg_pullsync's ON CONFLICT … DO UPDATE;
--   JSON upsert   pg_pullsync's statement: jsonb_populate_recordset of a page's JSON rows,
--                 with the same ON CONFLICT.
-- Three rounds, alternating. Run as a superuser (COPY reads and writes a server file) in a
-- scratch database: psql -d scratch -f xtask/peer/write_ceiling.sql
\set ON_ERROR_STOP on
DROP TABLE IF EXISTS ceiling_target, ceiling_typed, ceiling_pages;
CREATE TABLE ceiling_target (id bigint PRIMARY KEY, title text, status text, amount numeric, updated_at timestamptz);
CREATE TABLE ceiling_pages AS
SELECT p, '[' || string_agg(format('{"id":%s,"title":"record number %s","status":"open","amount":"%s.25","updated_at":"2026-12-01T10:00:%sZ"}',
                                   i, i, i % 1000, lpad((i % 60)::text, 2, '0')), ',') || ']' AS body
  FROM generate_series(0, 199) p, generate_series(p * 1000, p * 1000 + 999) i
 GROUP BY p;
CREATE TABLE ceiling_typed AS
SELECT r.* FROM ceiling_pages, jsonb_populate_recordset(NULL::ceiling_target, body::jsonb) r;
ALTER TABLE ceiling_typed ADD PRIMARY KEY (id);
COPY ceiling_typed TO '/tmp/write_ceiling.copy';
VACUUM ANALYZE ceiling_typed;

CREATE PROCEDURE pg_temp.report(what text, started timestamptz) LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE '%: % ms', what, round(extract(epoch FROM clock_timestamp() - started) * 1000);
END $$;

CREATE PROCEDURE pg_temp.copy_load() LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    COPY ceiling_target FROM '/tmp/write_ceiling.copy';
    CALL pg_temp.report('COPY', started);
END $$;

CREATE PROCEDURE pg_temp.typed_insert() LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    FOR p IN 0..199 LOOP
        INSERT INTO ceiling_target SELECT * FROM ceiling_typed WHERE id BETWEEN p * 1000 AND p * 1000 + 999;
    END LOOP;
    CALL pg_temp.report('typed INSERT', started);
END $$;

CREATE PROCEDURE pg_temp.typed_upsert() LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    FOR p IN 0..199 LOOP
        INSERT INTO ceiling_target SELECT * FROM ceiling_typed WHERE id BETWEEN p * 1000 AND p * 1000 + 999
        ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, status = EXCLUDED.status,
                                       amount = EXCLUDED.amount, updated_at = EXCLUDED.updated_at;
    END LOOP;
    CALL pg_temp.report('typed upsert', started);
END $$;

CREATE PROCEDURE pg_temp.json_upsert() LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    page record;
BEGIN
    FOR page IN SELECT body FROM ceiling_pages ORDER BY p LOOP
        EXECUTE 'INSERT INTO ceiling_target (id, title, status, amount, updated_at)
                 SELECT id, title, status, amount, updated_at
                   FROM pg_catalog.jsonb_populate_recordset(NULL::ceiling_target, $1::jsonb)
                 ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, status = EXCLUDED.status,
                                                amount = EXCLUDED.amount, updated_at = EXCLUDED.updated_at'
          USING page.body;
    END LOOP;
    CALL pg_temp.report('JSON upsert', started);
END $$;

-- Each load is a transaction of its own, on the table emptied.
CREATE PROCEDURE pg_temp.rounds() LANGUAGE plpgsql AS $$
BEGIN
    FOR round IN 1..3 LOOP
        TRUNCATE ceiling_target;
        COMMIT;
        CALL pg_temp.copy_load();
        TRUNCATE ceiling_target;
        COMMIT;
        CALL pg_temp.typed_insert();
        TRUNCATE ceiling_target;
        COMMIT;
        CALL pg_temp.typed_upsert();
        TRUNCATE ceiling_target;
        COMMIT;
        CALL pg_temp.json_upsert();
        COMMIT;
    END LOOP;
END $$;

CALL pg_temp.rounds();
DROP TABLE ceiling_target, ceiling_typed, ceiling_pages;
