"""Plotly figures shared by the evaluate stage's files and the dashboard: one theme, one builder per figure."""
