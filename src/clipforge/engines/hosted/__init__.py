"""Hosted engines: forward a job to a video provider, poll it, bring the result home.

The contract (who calls what):

- The worker's runner sees `engine.hosted` and calls `engine.run(task)` instead of `generate`: a
  `HostedTask` carries the spec, the stored input images as bytes (sent up as data URIs, so private
  inputs never need a public URL), a directory for the download, the step callback (progress, cancel,
  lost lease), and the job's checkpoint with a function to save a new one.
- `HostedEngine.run` (base.py) is the one loop every provider shares: submit (or resume the upstream id
  an earlier attempt checkpointed), poll with backoff that honours `Retry-After`, map the provider's
  state to progress and stage, then download the result (http.py, download.py). All of it ends by the
  job's deadline (`job_timeout_seconds`): a wait the time left cannot cover fails the job at once. A cancel cancels
  upstream and stops; a lost lease (worker shutdown) stops without cancelling, so the next attempt
  resumes polling the same upstream job.
- Failures: the provider's message, prefixed with the engine name, as `EngineError`; transient ones
  (connection errors, 5xx, 429 past the retries) as `EngineUnavailable`, which the runner turns into a
  fail-over to the next engine of the model's route.
- Each provider module (aiml.py, fal.py, replicate.py) only maps fields and states: `submit`, `status`,
  `cancel`, `check_credentials`.

Keys come from the environment variable that `api_key_env` names; they are sent only to the configured
`base_url`, never to media hosts, and are masked out of every message an engine raises.
"""
