"""The demo's training script: plain MLflow code, and the gateway's client module for its database password."""

from __future__ import annotations

import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

from gateway.client import get_secret

rng = np.random.default_rng(7)
X = rng.random((200, 4))
y = (X[:, 0] + X[:, 1] > 1).astype(int)

mlflow.set_experiment("demo-churn")
with mlflow.start_run(run_name="logreg") as run:
    # Read by the running run from team-a's default secret scope; never printed, never logged.
    password = get_secret("db-password")
    print(f"[team-a] run read secret db-password: {'*' * 8} ({len(password)} characters)")
    mlflow.log_params({"C": 1.0, "solver": "lbfgs"})
    model = LogisticRegression(C=1.0).fit(X, y)
    for step in range(5):
        mlflow.log_metric("accuracy", float(model.score(X, y)) - (4 - step) / 100, step=step)
    mlflow.log_text("features: x0..x3\n", "notes/features.txt")
    info = mlflow.sklearn.log_model(model, name="model", registered_model_name="churn-model")
print(f"[team-a] run {run.info.run_id} logged; registered churn-model version {info.registered_model_version}")

loaded = mlflow.pyfunc.load_model(f"models:/churn-model/{info.registered_model_version}")
print(f"[team-a] loaded models:/churn-model/{info.registered_model_version}; predictions: {loaded.predict(X[:5])}")
