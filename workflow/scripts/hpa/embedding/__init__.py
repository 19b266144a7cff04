"""The ArcFace embedding and the nearest-neighbour search for label transfer."""
