-- pgferry's state on a migration's target, upgrade 2: what `pgferry report` draws.
-- the migration's history: copy phases, cutover steps, validations, the preflight's findings
CREATE TABLE IF NOT EXISTS pgferry.timeline (
    migration text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL,
    name text NOT NULL,
    detail jsonb
);
CREATE INDEX IF NOT EXISTS timeline_migration_at ON pgferry.timeline (migration, at);
-- change capture's lag and throughput, every status interval
CREATE TABLE IF NOT EXISTS pgferry.follow_sample (
    migration text NOT NULL,
    sampled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    applied_lsn pg_lsn NOT NULL,
    lag_bytes bigint NOT NULL,
    lag_seconds double precision NOT NULL,
    changes_per_second double precision NOT NULL,
    transactions bigint NOT NULL,
    changes bigint NOT NULL,
    slot_retained_bytes bigint,
    PRIMARY KEY (migration, sampled_at)
);
