"""clipforge."""
