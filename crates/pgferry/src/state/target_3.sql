-- pgferry's state on a migration's target, upgrade 3: a cutover or rehearse asking
-- the running `pgferry start` for the migration's runner lock (`pgferry::handover`).
-- One request per migration; the requester's session on the target (`requester_backend`)
-- tells whether it still waits, `wait_until` how long it will.
CREATE TABLE IF NOT EXISTS pgferry.handover (
    migration text PRIMARY KEY,
    command text NOT NULL,
    requester_pid integer NOT NULL,
    requester_host text NOT NULL,
    requester_backend integer NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    wait_until timestamptz NOT NULL,
    answer text,
    answered_at timestamptz
);
