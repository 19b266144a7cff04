"""The training loop every task shares: its config keys, trainer, optimiser and schedule, augmentation, epochs, resume."""
