-- Files a job produced (plot data), shared by every replica that serves the job.
CREATE TABLE job_artifacts (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    content BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (job_id, name)
);
