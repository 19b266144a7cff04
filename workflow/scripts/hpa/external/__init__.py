"""HPAv18 external data: fetching, the resumable download, hashing and de-duplication, cleaning."""
