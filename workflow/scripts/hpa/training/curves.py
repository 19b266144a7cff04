"""A model's learning curves (the ensemble's threshold figures are ``hpa.postprocess.threshold_figures``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from hpa.figures import save_figure


def training_curves(histories: dict[int, pd.DataFrame], title: str, path) -> None:
    """Loss and validation macro F1 per epoch, one line per fold."""
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(11, 4))
    for fold, h in sorted(histories.items()):
        line = ax_loss.plot(h["epoch"], h["train_loss"], label=f"fold {fold} train")[0]
        v = h.dropna(subset=["val_loss"])  # epochs without validation (validate_every > 1)
        ax_loss.plot(v["epoch"], v["val_loss"], "--o", color=line.get_color(), label=f"fold {fold} val")
        ax_f1.plot(v["epoch"], v["val_macro_f1_fitted"], "-o", color=line.get_color(), label=f"fold {fold} fitted thr.")
        ax_f1.plot(v["epoch"], v["val_macro_f1"], ":", color=line.get_color(), label=f"fold {fold} at 0.5")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    ax_f1.set(xlabel="epoch", ylabel="validation macro F1", title=f"{title}: macro F1", ylim=(0, None))
    ax_loss.legend(fontsize=7)
    ax_f1.legend(fontsize=7)
    save_figure(fig, path)
