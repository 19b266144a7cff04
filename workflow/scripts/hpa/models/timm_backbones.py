"""timm backbones (``arch: timm/<name>``) with a C-channel input, as ``HPANet`` bodies.

timm adapts the stem itself: ``in_chans=C`` repeats the pretrained RGB filters
(for the atlas's four: R, G, B, R) and rescales them by 3/C, so the first layer's response
keeps its size (one channel: the filters' sum). The torchvision stem inits (``mean_rg``,
``copy_r``, ``zeros``) and ``channels.rgb`` therefore do not apply to the stem (ignored, as
for branchnet); ``stem: adapter`` puts the learned C->3 conv, which follows ``channels.rgb``,
in front of an unchanged 3-channel model instead.

The three bodies match the torchvision ones in what they return:
- the classifier (linear head, no decoder): logits;
- ``TimmStages`` (GAPNet head): {stage: map}, from timm's ``features_only``
  model at output strides 4 and deeper (as ResNet's layer1..4);
- ``TimmWithFeatures`` (linear head with a decoder): the deepest map under
  ``FEATURES`` and the logits under ``LOGITS``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from hpa.models.heads import LOGITS

PREFIX = "timm/"
FEATURES = "features"


def timm_name(arch: str) -> str | None:
    """The timm model name of ``timm/<name>``; None for a torchvision arch."""
    return arch[len(PREFIX):] if arch.startswith(PREFIX) else None


def check_name(arch: str) -> str:
    name = timm_name(arch)
    import timm  # here, not at the top: 0.2 s of every torchvision model's job start-up

    if not name or not timm.is_model(name):
        close = difflib.get_close_matches(name or "", timm.list_models(), n=5)
        hint = (f"close names: {', '.join(PREFIX + c for c in close)}" if close else
                '`python -c "import timm; print(timm.list_models())"` lists them')
        raise ValueError(f"arch {arch!r}: timm has no model {name!r}; {hint}")
    return name


class WeightsUnavailable(RuntimeError):
    """ImageNet weights that timm could not fetch (offline machine, no local copy)."""


class TimmStages(nn.Module):
    """A ``features_only`` timm model returning its maps at stride >= 4 as {module name: map}."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        info = model.feature_info
        self.keep = [i for i, r in enumerate(info.reduction()) if r >= 4]
        self.nodes = [info.module_name()[i] for i in self.keep]
        self.channels = [info.channels()[i] for i in self.keep]

    def forward(self, x):
        maps = self.model(x)
        return {self.nodes[k]: maps[i] for k, i in enumerate(self.keep)}


class TimmWithFeatures(nn.Module):
    """A timm classifier returning its deepest (pre-pool) map beside the logits, for the decoder."""

    def __init__(self, model: nn.Module, arch: str, in_chans: int):
        super().__init__()
        self.model = model
        self.nodes = [FEATURES]
        self.channels = [model.num_features]
        shape = _feature_shape(model, in_chans)
        if len(shape) != 4:
            raise ValueError(f"decoder needs a 2-D feature map, but {arch} gives features of shape {shape} "
                             f"(tokens, not a map); use head: gapnet, whose timm stage maps are 2-D, "
                             f"or set reconstruction_weight: 0")

    def forward(self, x):
        features = self.model.forward_features(x)
        return {FEATURES: features, LOGITS: self.model.forward_head(features)}


@torch.no_grad()
def _feature_shape(model: nn.Module, in_chans: int) -> tuple[int, ...]:
    """Shape of ``forward_features`` on one blank image of the model's own input size, in eval mode."""
    training = model.training
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))[1:]
    shape = tuple(model.eval().forward_features(torch.zeros(1, in_chans, *size)).shape)
    model.train(training)
    return shape


def _create(arch: str, name: str, pretrained: str | None, weights: str | None, **kwargs) -> nn.Module:
    """``timm.create_model``, loading ImageNet (or local) weights through timm, with an offline error that helps."""
    import timm

    if weights:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights: {path} does not exist; give the path of a {arch} "
                                    f"ImageNet checkpoint (.safetensors, .pth or .bin, 3-channel, as timm publishes it)")
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    if pretrained != "imagenet":
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:
        hub = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None) or name
        raise WeightsUnavailable(
            f"could not load ImageNet weights for {arch} ({type(err).__name__}: {err}). timm fetches them "
            f"from the Hugging Face Hub ({hub}) into $HF_HOME/hub (default ~/.cache/huggingface/hub). "
            f"On a machine with internet, download https://huggingface.co/{hub}/resolve/main/model.safetensors "
            f"and set `weights: <path of that file>` in this model's config, or copy that machine's "
            f"$HF_HOME/hub/models--{hub.replace('/', '--')} folder into this one's; or set pretrained: null"
        ) from err


def build_timm(arch: str, *, num_classes: int, in_chans: int, dropout: float, body: str,
               pretrained: str | None = None, weights: str | None = None) -> tuple[nn.Module, list[str]]:
    """The timm body of kind ``body`` (classifier, stages or features) and its newly made modules' names."""
    name = check_name(arch)
    common = {"in_chans": in_chans}
    if body == "stages":
        try:
            model = _create(arch, name, pretrained, weights, features_only=True, **common)
        except WeightsUnavailable:
            raise
        except (RuntimeError, TypeError, AttributeError) as err:
            raise ValueError(f"head='gapnet' needs the stage maps of {arch}, which timm cannot give "
                             f"(features_only: {err}); use head: linear") from err
        return TimmStages(model), []
    model = _create(arch, name, pretrained, weights, num_classes=num_classes, drop_rate=dropout, **common)
    classifier = model.pretrained_cfg.get("classifier", "fc")
    classifiers = [classifier] if isinstance(classifier, str) else list(classifier)
    if body == "classifier":
        return model, classifiers
    return TimmWithFeatures(model, arch, in_chans), [f"model.{c}" for c in classifiers]

