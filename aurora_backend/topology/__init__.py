"""Failover faster than DNS: the cluster's topology (state) and connects routed by it (router)."""

#: Nothing here is for applications to import: OPTIONS["aurora"] drives it.
__all__: list[str] = []
