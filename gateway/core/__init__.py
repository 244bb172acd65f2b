"""Shared values every layer may use: errors, ports, the principal, workspace links, the route table, settings."""
