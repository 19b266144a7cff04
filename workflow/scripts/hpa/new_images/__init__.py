"""A trained ensemble on a folder of new images: read in batches, blended and thresholded as the submission is."""
