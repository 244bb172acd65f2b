"""Backend stores that speak the MLflow REST API."""
