"""Pieces of the `monitor` stage: params, Evidently drift reports, per-group fairness, HTML pages.

The stage itself is pipelines/monitor.py (`run_monitor`).
"""
