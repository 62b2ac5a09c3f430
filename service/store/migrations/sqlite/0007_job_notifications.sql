-- Completion webhooks: one notification per job that asked for one (callback_url), written with the job.
-- It is delivered once the job is final, by whichever replica claims it (a lease, like jobs), retried with
-- backoff until next_attempt_at allows; undelivered ones survive restarts here.
CREATE TABLE job_notifications (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    owner TEXT,
    lease_expires_at REAL,
    last_error TEXT,
    last_status_code INTEGER,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX job_notifications_due ON job_notifications (state, next_attempt_at);
