"""Principals: users, service principals, groups (nested) and their personal access tokens."""
