"""Test-time augmentation and prediction, on the cache and on new images."""
