"""Cells: segmentation of a field into cells (embedded or the user's masks) and its quality measure."""
