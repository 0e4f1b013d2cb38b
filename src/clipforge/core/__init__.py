"""Domain types with no I/O: generation specs, job records, errors, settings, model routing."""
