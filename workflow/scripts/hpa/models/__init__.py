"""Networks and losses: backbones with a C-channel input, heads, the model factory, losses."""
