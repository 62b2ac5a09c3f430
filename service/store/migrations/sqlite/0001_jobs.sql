-- The single-node schema the service shipped before versioned migrations. IF NOT EXISTS: a database
-- created by that version adopts this as version 1 and keeps its rows.
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    source TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    error TEXT,
    result TEXT,
    per_image TEXT
);
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
