"""Defaults of the SDK, in one place."""

from __future__ import annotations

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
BASE_URL_ENV = "CLIPFORGE_BASE_URL"
API_KEY_ENVS = ("CLIPFORGE_API_KEY", "AIMLAPI_API_KEY")

DEFAULT_TIMEOUT = 60.0          # seconds per HTTP request (connect, read, write, pool)
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5       # seconds; doubled per retry
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0          # a longer Retry-After is not waited for; the usual backoff applies instead
RETRY_STATUSES = frozenset({429, 502, 503, 504})

DEFAULT_POLL_INTERVAL = 2.0     # seconds between polls when the server sends no Retry-After
MIN_POLL_INTERVAL = 0.1
MAX_POLL_INTERVAL = 30.0

I2V_MODEL = "klingai/video-v2-6-pro-image-to-video"
T2V_MODEL = "klingai/video-v2-6-pro-text-to-video"
GENERATIONS_PATH = "/v2/video/generations"
USER_AGENT = "clipforge-python/0.1.0"
