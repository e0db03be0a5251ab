-- pgferry's state on a migration's target, upgrade 4: parallel apply (`follow --apply-lanes`).
-- One row per lane other than lane 0 (whose position is pgferry.apply_progress), written in
-- the lane's own target transaction: the end of the last source transaction whose changes
-- to that lane's keys are committed. `lanes` is the lane count the row was written under;
-- `tables` the tables (quoted, schema-qualified) the lane committed changes of past lane 0.
CREATE TABLE IF NOT EXISTS pgferry.apply_lane (
    migration text NOT NULL,
    lane integer NOT NULL,
    lanes integer NOT NULL,
    applied_lsn pg_lsn NOT NULL,
    tables text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (migration, lane)
);
