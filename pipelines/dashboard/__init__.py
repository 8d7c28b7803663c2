"""The report stage's dashboard: queries on the marts, figures, findings and the HTML page."""
