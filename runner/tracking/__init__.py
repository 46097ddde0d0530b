"""Experiment tracking: MLflow runs for jobs and sweeps (``tracking=mlflow``)."""
