"""The MLflow web UI through the gateway: its page and files, and the browser sign-in in front of it."""
