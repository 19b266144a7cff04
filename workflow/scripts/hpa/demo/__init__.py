"""The synthetic stand-in dataset: rendering fields of view, the Kaggle-layout demo, the HPAv18 mirror."""
