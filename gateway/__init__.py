"""fedgate: one MLflow tracking URI for every workspace of an account."""

__version__ = "0.1.0"
