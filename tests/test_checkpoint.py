"""Checkpoints are plain data: torch.load's safe default opens them, and a pickled object is refused by name."""

import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from test_train import run

import hpa.loop.fit as loop_fit
import hpa.training.classifier as classifier
from hpa.config.spec import TrainConfig
from hpa.embedding.model import load_embedder
from hpa.loop.convert_checkpoint import convert
from hpa.loop.fit import Run
from hpa.runtime.checkpoint import load_checkpoint, read_checkpoint


class Payload:
    """What an attacker's checkpoint would carry: an object whose unpickling runs code."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def zip_names(path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return [z.read(n).decode("latin-1") for n in z.namelist() if n.endswith("data.pkl")]


def killed_after(tmp_path, cfg, epochs_saved: int):
    """Train ``cfg`` in ``tmp_path`` until it is killed after ``epochs_saved`` epochs; last.pt is left."""
    real, calls = classifier.evaluate, {"n": 0}

    def evaluate_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > epochs_saved:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    classifier.evaluate = evaluate_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, cfg)
    finally:
        classifier.evaluate = real
    return tmp_path / "last.pt"


def plain_load_in_a_fresh_process(path) -> str:
    code = "import sys, torch; c = torch.load(sys.argv[1]); print(sorted(c))"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}).stdout.strip()


def test_last_pt_and_model_pt_open_with_a_plain_torch_load(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=8)
    last = killed_after(tmp_path, cfg, epochs_saved=1)
    assert plain_load_in_a_fresh_process(last) == "['identity', 'run', 'state']"
    run(tmp_path, cfg)
    assert plain_load_in_a_fresh_process(tmp_path / "model.pt") == "['config', 'epoch', 'metrics', 'model']"
    metrics = torch.load(tmp_path / "model.pt")["metrics"]
    assert all(type(v) in (int, float) for v in metrics.values()), "numbers stored as Python numbers"


@pytest.mark.parametrize("reader", [read_checkpoint, load_checkpoint, load_embedder])
def test_a_checkpoint_carrying_a_pickled_object_is_refused_naming_the_file(tmp_path, reader, capfd):
    path = tmp_path / "tampered.pt"
    torch.save({"model": {}, "config": {"model": Payload()}}, path)
    with pytest.raises(ValueError, match=r"tampered\.pt: refused.*pickled.*convert_checkpoint"):
        reader(path, torch.device("cpu"))
    assert "pwned" not in capfd.readouterr().out, "the payload never ran"


def test_a_tampered_last_pt_stops_the_resume_instead_of_running(tmp_path):
    torch.save({"identity": {}, "state": {}, "run": Payload()}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"last\.pt: refused.*deleted"):
        run(tmp_path, TrainConfig(epochs=1, batch_size=8))


def test_an_old_last_pt_with_a_pickled_run_converts_and_resumes_to_the_same_model(tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=8, seed=5)
    full_history, full_oof = run(tmp_path / "full", cfg)
    last = killed_after(tmp_path / "old", cfg, epochs_saved=2)
    # Rewrite it the way this pipeline wrote last.pt before: the Run object pickled under its old
    # module (hpa.training.fit, which no longer exists), numpy inside.
    saved = torch.load(last)
    old_run = Run.from_data(saved["run"])
    old_run.history = [{k: np.float64(v) if isinstance(v, float) else v for k, v in row.items()}
                       for row in old_run.history]
    with monkeypatch.context() as old_layout:
        old_layout.setattr(Run, "__module__", "hpa.training.fit")
        old_layout.setitem(sys.modules, "hpa.training.fit", loop_fit)
        torch.save({**saved, "run": old_run}, last)
    assert "hpa.training.fit" in "".join(zip_names(last)), "pickled under the old module, as old files are"
    with pytest.raises(pickle.UnpicklingError):
        torch.load(last)
    with pytest.raises(ValueError, match="convert_checkpoint"):
        run(tmp_path / "old", cfg)
    convert(last)
    history, oof = run(tmp_path / "old", cfg)
    assert list(history["epoch"]) == [1, 2, 3]
    assert np.allclose(oof, full_oof, atol=1e-6)
    assert np.allclose(history["train_loss"], full_history["train_loss"], atol=1e-6)


def test_the_conversion_runs_as_a_command(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 1, "metrics": {"val_loss": np.float64(0.5)}}, path)
    subprocess.run([sys.executable, "-m", "hpa.loop.convert_checkpoint", str(path)], check=True,
                   capture_output=True)
    assert torch.load(path)["metrics"] == {"val_loss": 0.5}
