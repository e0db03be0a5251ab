-- pgferry's state on a migration's source, upgrade 1 (IF NOT EXISTS only: see target_1.sql).
-- the fence's saved settings and the switch's start
CREATE TABLE IF NOT EXISTS pgferry.source_fence (
    migration text NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    previous text,
    raised_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, kind, name)
);
-- a seeded migration's marker, inherited by the physical copy
CREATE TABLE IF NOT EXISTS pgferry.seed_marker (
    migration text PRIMARY KEY,
    token text NOT NULL,
    lsn pg_lsn NOT NULL,
    slot_lsn pg_lsn NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgferry.seed_marker ADD COLUMN IF NOT EXISTS slot_name text;
