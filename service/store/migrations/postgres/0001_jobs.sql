-- The jobs table as the single-node schema had it (same columns as SQLite's version 1).
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    error TEXT,
    result TEXT,
    per_image TEXT
);
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
