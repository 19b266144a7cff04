"""Blending, thresholds, submission, evaluation on test labels, label transfer, the run's summary."""
