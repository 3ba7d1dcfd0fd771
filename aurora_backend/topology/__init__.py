"""Failover faster than DNS: the cluster's topology (state) and connects routed by it (router)."""
