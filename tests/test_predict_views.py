"""Per-view TTA probabilities: predict once, recombine any subset of views by mean or max."""

import numpy as np
import pandas as pd
import pytest
import torch

from hpa.inference.combine import combine_job
from hpa.inference.predict import views_of
from hpa.inference.tta import predict_probs, predict_views
from hpa.tables import prob_columns

PROB_COLUMNS = prob_columns(28)


class Corner(torch.nn.Module):
    """Orientation-sensitive: the logit of class k is the top-left pixel of channel 0, times k."""

    def forward(self, x):
        return x[:, 0, 0, 0].float()[:, None] * torch.linspace(-1, 1, 28)[None] / 50


def test_views_are_the_union_of_the_ensembles_tta():
    assert views_of(["none"]) == [0] and views_of(["flips", "none"]) == [0, 2, 4, 6]
    assert views_of(["dihedral", "flips"]) == list(range(8))


def test_recombined_views_equal_a_direct_tta_pass(tmp_path):
    x = torch.randint(0, 255, (6, 4, 8, 8), dtype=torch.uint8)
    batches = [x[:4], x[4:]]
    views = views_of(["dihedral"])
    per_view = predict_views(Corner(), batches, torch.device("cpu"), views, n_classes=28)
    assert per_view.shape == (8, 6, 28) and not np.allclose(per_view[0], per_view[1])
    ids = np.array([f"i{k}" for k in range(6)])
    path = tmp_path / "views.npz"
    np.savez(path, view_t=np.asarray(views), view_crop=np.zeros(8, int), oof=per_view, oof_ids=ids,
             test=per_view[:, :2], test_ids=ids[:2])
    for tta, aggregate in (("flips", "mean"), ("flips", "max"), ("dihedral", "mean"), ("none", "mean")):
        combine_job(views_npz=path, tta=tta, aggregate=aggregate, oof_csv=tmp_path / "o.csv",
                    test_csv=tmp_path / "t.csv")
        direct = predict_probs(Corner(), batches, torch.device("cpu"), tta=tta, aggregate=aggregate, n_classes=28)
        table = pd.read_csv(tmp_path / "o.csv")
        assert list(table["Id"]) == list(ids)
        assert np.allclose(table[PROB_COLUMNS].to_numpy(), direct, atol=1e-6), (tta, aggregate)  # tables keep 6 decimals
        assert len(pd.read_csv(tmp_path / "t.csv")) == 2


def test_a_tta_whose_views_were_not_predicted_says_to_rerun_predict(tmp_path):
    path = tmp_path / "views.npz"
    np.savez(path, view_t=np.array([0]), view_crop=np.array([0]), oof=np.zeros((1, 1, 28), np.float32), oof_ids=np.array(["a"]),
             test=np.zeros((1, 1, 28), np.float32), test_ids=np.array(["b"]))
    with pytest.raises(ValueError, match=r"views \[2, 4, 6\].*rerun its predict job"):
        combine_job(views_npz=path, tta="flips", aggregate="mean", oof_csv=tmp_path / "o.csv",
                    test_csv=tmp_path / "t.csv")
