CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    model TEXT NOT NULL,
    engine TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    stage TEXT,
    params TEXT NOT NULL,
    outputs TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    worker_id TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    media_token TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash TEXT,
    webhook TEXT,
    remixed_from TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX jobs_queue ON jobs (status, engine, created_at);
CREATE INDEX jobs_owner ON jobs (owner, created_at);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE job_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    ts REAL NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL,
    stage TEXT
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    seen_at REAL NOT NULL
);
