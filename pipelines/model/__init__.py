"""Shared pieces of the train and evaluate stages (data split, preprocessing, thresholds, MLflow)."""
