"""Training one model on one fold: config, loader, trainer, epoch loop, checkpoints, ranks."""
