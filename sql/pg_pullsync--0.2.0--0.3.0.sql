-- pg_pullsync 0.2.0 → 0.3.0. Every schema change of 0.3.0 goes here and into the fresh
-- install (sql/*.sql); the upgrade test compares the two catalogs object by object.
\echo Use "ALTER EXTENSION pg_pullsync UPDATE TO '0.3.0'" to load this file. \quit
