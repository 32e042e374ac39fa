"""Reports: metrics and plots."""
