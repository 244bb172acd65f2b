"""Saved SQL queries: the table and repository (`repository.py`), the rules and life cycle (`service.py`), and
the Databricks-shaped REST API (`routes.py`: `/api/2.0/sql/queries`, `/api/2.0/permissions/queries/{id}`)."""
