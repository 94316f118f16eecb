"""Data quality: checks, results history, exceptions, alerts, the HTML report."""
