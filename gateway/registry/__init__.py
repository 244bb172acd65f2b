"""The model registry workflow in front of any MLflow store: transition requests, approvals, comments, activities."""
