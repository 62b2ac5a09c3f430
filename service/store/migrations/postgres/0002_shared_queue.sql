-- The shared queue: which checkpoint a job needs, who holds its lease and until when, where it may run.
ALTER TABLE jobs ADD COLUMN model_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN pinned_to TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- claim (status = 'queued' ORDER BY seq), lists filtered by status, the lease sweep over active jobs
CREATE INDEX jobs_status_seq ON jobs (status, seq);
