-- Run history: a job's tags (a JSON copy to return with the job; one row per tag to filter on, indexed by
-- key and value) and its headline metrics, copied from the result when it finishes, so a run's epochs come
-- from one indexed query instead of parsing every stored result. Older rows keep NULL headlines (their
-- readers fall back to the result).
ALTER TABLE jobs ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN map50 DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN map50_95 DOUBLE PRECISION;
CREATE TABLE job_tags (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
);
CREATE INDEX job_tags_key_value ON job_tags (key, value, job_id);
