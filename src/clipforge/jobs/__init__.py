"""Job stores: one interface (`JobStore`), in-memory, SQLite and PostgreSQL backends."""

from clipforge.jobs.base import JobStore, LeaseState, open_store

__all__ = ["JobStore", "LeaseState", "open_store"]
