"""Connection handling: connect with retry, address choice, freshness before use, lifetime, statement re-run."""
