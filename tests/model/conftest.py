"""Model layer: features contract, train/evaluate, thresholds, promote, monitor, scoring and serving.

These tests run on synthetic feature marts (tests/support/feature_fixtures.py, tests/model/
monitor_fixtures.py) rather than the warehouse, so the planted effects are known exactly. Each
module trains at most once (a module fixture) with its own small Optuna budget and its own MLflow
store under tmp_path; their budgets and rows differ on purpose (the registry, determinism and
serving checks pin them), so they are not merged into one session model.
"""
