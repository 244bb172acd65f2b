"""Talking to MLflow stores: what each one can do, and the client every caller of a store uses."""
