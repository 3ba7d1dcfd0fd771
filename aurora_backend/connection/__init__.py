"""Connection handling: connect with retry, address choice, freshness before use, lifetime, statement re-run."""

#: Nothing here is for applications to import: the ENGINE drives it.
__all__: list[str] = []
