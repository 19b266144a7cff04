"""Images in the Kaggle layout: ingest, decoding, the uint8 cache, folds."""
