-- Metrics page through finished jobs by finish time (JobStore.finished_since).
CREATE INDEX jobs_finished ON jobs (finished_at, id);
