"""Blending, thresholds, submission, evaluation on test labels, label transfer."""
