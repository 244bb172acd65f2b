"""Database: SQLAlchemy models, engine, embedded PostgreSQL and Alembic migrations."""
