-- The same columns as the SQLite schema; JSON as jsonb, timestamps as epoch seconds.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    model TEXT NOT NULL,
    engine TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    stage TEXT,
    params JSONB NOT NULL,
    outputs JSONB,
    error JSONB,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    worker_id TEXT,
    lease_expires_at DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    media_token TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash TEXT,
    webhook JSONB,
    remixed_from TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION
);
CREATE INDEX jobs_queue ON jobs (status, engine, created_at);
CREATE INDEX jobs_owner ON jobs (owner, created_at);
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE job_events (
    seq BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL,
    stage TEXT
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    info JSONB NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL
);

-- Wake idle workers (LISTEN clipforge_jobs) whenever a job becomes claimable: on insert and on
-- requeue after a lost lease. The payload is the job's engine.
CREATE FUNCTION clipforge_notify_queued() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'queued' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'queued') THEN
        PERFORM pg_notify('clipforge_jobs', NEW.engine);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_notify_queued AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION clipforge_notify_queued();
