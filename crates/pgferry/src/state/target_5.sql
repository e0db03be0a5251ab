-- pgferry's state on a migration's target, upgrade 5: the instance cutover each database's
-- cutover belongs to (`cutover --all-databases`; NULL for a database cut over alone). The
-- instance's one switch runs only once every database journaled `switching`, so a rerun that
-- finds a database of the same instance cutover stopped before it knows the switch never ran.
ALTER TABLE pgferry.cutover ADD COLUMN IF NOT EXISTS instance_cutover text;
