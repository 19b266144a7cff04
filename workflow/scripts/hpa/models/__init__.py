"""Networks and losses: backbones with a 4-channel input, heads, the model factory, losses."""
