"""Observability: Prometheus metrics, structured access logs, request ids, health probes."""
