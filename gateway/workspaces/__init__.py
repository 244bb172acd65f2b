"""Workspaces: names clients select, linked to stores in a link mode."""
