-- pgferry's state on a migration's target, upgrade 1: every table as this release
-- uses it. Only IF NOT EXISTS statements, so that it also brings up to date the
-- tables an earlier release made before upgrades were numbered.
-- the copy's journal: the migration, its copied pieces, its partitions' files
CREATE TABLE IF NOT EXISTS pgferry.migration (
    name text PRIMARY KEY,
    phase text NOT NULL,
    slot_lsn pg_lsn,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgferry.migration ADD COLUMN IF NOT EXISTS slot_name text;
ALTER TABLE pgferry.migration ADD COLUMN IF NOT EXISTS source_system_identifier text;
ALTER TABLE pgferry.migration ADD COLUMN IF NOT EXISTS source_database_oid oid;
CREATE TABLE IF NOT EXISTS pgferry.copied_chunk (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    chunk int NOT NULL,
    chunks int NOT NULL,
    rows bigint NOT NULL,
    bytes bigint NOT NULL,
    snapshot_lsn pg_lsn NOT NULL,
    copied_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (migration, table_schema, table_name, chunk)
);
ALTER TABLE pgferry.copied_chunk ADD COLUMN IF NOT EXISTS finished_at timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE TABLE IF NOT EXISTS pgferry.partition_file (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    relfilenode oid NOT NULL,
    PRIMARY KEY (migration, table_schema, table_name)
);
-- change capture's applied position and per-table counts
CREATE TABLE IF NOT EXISTS pgferry.apply_progress (
    migration text PRIMARY KEY,
    applied_lsn pg_lsn NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    source_commit_time timestamptz
);
CREATE TABLE IF NOT EXISTS pgferry.apply_table_stats (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    inserts bigint NOT NULL DEFAULT 0,
    updates bigint NOT NULL DEFAULT 0,
    deletes bigint NOT NULL DEFAULT 0,
    truncates bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (migration, table_schema, table_name)
);
ALTER TABLE pgferry.apply_progress ADD COLUMN IF NOT EXISTS changes_per_second double precision;
-- the rows change capture touched, for the changed-rows check
CREATE TABLE IF NOT EXISTS pgferry.touched_keys (
    migration text NOT NULL,
    lsn pg_lsn NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    whole boolean NOT NULL,
    keys jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS touched_keys_position ON pgferry.touched_keys (migration, lsn);
DO $pgferry$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'pgferry.touched_keys'::regclass AND attname = 'reason') THEN
        ALTER TABLE pgferry.touched_keys ADD COLUMN reason text;
    END IF;
END $pgferry$;
-- replayed and stopped DDL commands
CREATE TABLE IF NOT EXISTS pgferry.ddl (
    migration text NOT NULL,
    source_lsn pg_lsn,
    source_command text NOT NULL,
    applied text,
    state text NOT NULL CHECK (state IN ('applied', 'operator', 'pending')),
    reason text,
    at timestamptz NOT NULL DEFAULT now()
);
-- A command is identified by its message's position in the source's WAL, never
-- by its text: each is journaled once, in the transaction of its replay.
CREATE UNIQUE INDEX IF NOT EXISTS ddl_once ON pgferry.ddl (migration, source_lsn);
-- the cutover's steps
CREATE TABLE IF NOT EXISTS pgferry.cutover (
    migration text PRIMARY KEY,
    step text NOT NULL,
    fenced_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgferry.cutover ADD COLUMN IF NOT EXISTS switch_pid integer;
ALTER TABLE pgferry.cutover ADD COLUMN IF NOT EXISTS switch_host text;
ALTER TABLE pgferry.cutover ADD COLUMN IF NOT EXISTS downtime_seconds double precision;
ALTER TABLE pgferry.cutover ADD COLUMN IF NOT EXISTS views_after_switch boolean NOT NULL DEFAULT false;
ALTER TABLE pgferry.cutover ADD COLUMN IF NOT EXISTS source_system_identifier text;
ALTER TABLE pgferry.cutover ADD COLUMN IF NOT EXISTS source_database_oid oid;
-- the last validation's verdict
CREATE TABLE IF NOT EXISTS pgferry.validation (
    migration text PRIMARY KEY,
    mode text NOT NULL,
    equal boolean NOT NULL,
    mismatched_chunks bigint NOT NULL,
    changing_chunks bigint NOT NULL,
    rows_compared bigint NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgferry.validation ADD COLUMN IF NOT EXISTS verdict text;
-- materialized views' measured refresh times
CREATE TABLE IF NOT EXISTS pgferry.view_refresh (
    migration text NOT NULL,
    view text NOT NULL,
    seconds double precision NOT NULL,
    measured_by text NOT NULL,
    measured_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, view)
);
-- tables copied again by validate --repair
CREATE TABLE IF NOT EXISTS pgferry.repair (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    snapshot_lsn pg_lsn NOT NULL,
    rows bigint NOT NULL,
    repaired_at timestamptz NOT NULL DEFAULT now()
);
-- replica identities set FULL, to set back
CREATE TABLE IF NOT EXISTS pgferry.replica_identity (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    original text NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, table_schema, table_name)
);
-- a seeded migration's attach
CREATE TABLE IF NOT EXISTS pgferry.seed (
    migration text PRIMARY KEY,
    redo_lsn pg_lsn NOT NULL,
    start_lsn pg_lsn NOT NULL,
    seeded_at timestamptz NOT NULL DEFAULT now()
);-- pgferry target prepare (AWS DMS): the foreign keys and triggers it changed
CREATE TABLE IF NOT EXISTS pgferry.saved_foreign_key (
    table_schema text NOT NULL,
    table_name text NOT NULL,
    constraint_name text NOT NULL,
    definition text NOT NULL,
    validated boolean NOT NULL,
    partitioned_table boolean NOT NULL,
    state text NOT NULL CHECK (state IN ('saved', 'dropped', 'added')),
    saved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name, constraint_name)
);
CREATE TABLE IF NOT EXISTS pgferry.saved_trigger (
    table_schema text NOT NULL,
    table_name text NOT NULL,
    trigger_name text NOT NULL,
    saved_state text NOT NULL CHECK (saved_state IN ('origin', 'replica', 'always')),
    cloned_from_parent boolean NOT NULL,
    definition text NOT NULL,
    state text NOT NULL CHECK (state IN ('saved', 'disabled')),
    saved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name, trigger_name)
);
