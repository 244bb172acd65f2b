"""Secrets: the built-in vault (values encrypted in PostgreSQL) and its envelope."""
