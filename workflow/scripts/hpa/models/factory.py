"""Model factory: torchvision or timm backbones with a C-channel input and an n-logit head.

The channels are the dataset's (``Vocabulary.channels``); ``rgb_source`` says, per channel,
which pretrained RGB filter it starts from (``Vocabulary.rgb_source()``), and its length is
the number of input channels. ``arch: timm/<name>`` builds any timm model
(``hpa.models.timm_backbones``), its stem adapted by timm itself; the rest of this note is
about torchvision's.

Two ways to feed C channels to an ImageNet backbone (``hpa.models.backbones``):
- a C-channel stem: each channel mapped to R, G or B gets that pretrained filter, the others
  (the atlas's yellow) one initialised from the pretrained RGB filters (``mean_rg``,
  ``copy_r``) or ``zeros``;
- an ``adapter``: a learned 1x1 conv C->3 in front of the unchanged backbone,
  initialised to pass the mapped channels to R, G, B.
Models take raw uint8 (or 0..255 float) images: per-channel normalisation is
the first layer, with the dataset's statistics as buffers, so a checkpoint
needs nothing else to predict.

Options from the competition write-ups (all newly initialised parts count as
the head, for differential learning rates and head-only warm-up):
- ``head="gapnet"`` (4th place): every stage's feature map (ResNet layer1..4,
  DenseNet blocks, VGG pools, EfficientNet strides 4..32) through a
  squeeze-and-excitation block, globally pooled, concatenated, into one linear;
- ``decoder=True`` (4th place): a small decoder on the deepest map rebuilds the
  normalised input, for a second (MSE) loss via ``model(x, reconstruct=True)``;
- ``arch="branchnet"`` (NTU's baseline): trained from scratch, each channel in
  its own convolutional branch before shared layers; no pretrained weights,
  no adapter (the stem inits have nothing to initialise and are ignored);
- ``extra_blocks=n`` (Stanford, torchvision ResNets only): n more stride-2 residual blocks
  after layer4, so large inputs are reduced further before pooling.
The plain linear head without a decoder keeps the torchvision model and its
state-dict keys unchanged; the other options run the backbone as a feature
extractor (``torchvision`` FX), which keeps the same module names.
"""

from __future__ import annotations

from torchvision.models.feature_extraction import create_feature_extractor

from hpa.models.backbones import (
    SCRATCH,
    STEMS,
    add_extra_blocks,
    build_backbone,
    channel_stem,
    classification_head,
    rgb_adapter,
)
from hpa.models.heads import LOGITS, Decoder, GAPHead, HPANet, output_channels, stage_nodes
from hpa.models.timm_backbones import build_timm, timm_name

HEADS = ("linear", "gapnet")


def check_options(arch: str, stem: str, head: str, se_reduction: int) -> None:
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {list(STEMS)}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {list(HEADS)}")
    if se_reduction < 1:
        raise ValueError(f"se_reduction must be >= 1, got {se_reduction}")
    if arch in SCRATCH and stem == "adapter":
        raise ValueError(f"stem 'adapter' does not apply to arch {arch!r}: it takes the channels "
                         f"natively, each in its own branch; leave stem at its default (ignored)")


def channel_statistics(rgb_source, mean, std) -> tuple[int, tuple, tuple]:
    """(input channels, mean, std): one channel per ``rgb_source`` entry, statistics defaulting to 0 and 1,
    refused when their length is not the vocabulary's (a stats file from another source)."""
    in_channels = len(rgb_source)
    if in_channels < 1:
        raise ValueError("rgb_source is empty: give one entry per input channel (Vocabulary.rgb_source())")
    mean = (0.0,) * in_channels if mean is None else mean
    std = (1.0,) * in_channels if std is None else std
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"channel statistics for {len(mean)} channels, a model of {in_channels}: the stats file "
                         "and the vocabulary disagree; rerun channel_stats")
    return in_channels, mean, std


def build_model(
    arch: str,
    mean=None,
    std=None,
    pretrained: str | None = None,
    dropout: float = 0.0,
    stem: str = "mean_rg",
    weights: str | None = None,
    *,
    num_classes: int,
    rgb_source,
    head: str = "linear",
    se_reduction: int = 16,
    extra_blocks: int = 0,
    decoder: bool = False,
    normalize: str = "dataset",
) -> HPANet:
    """The classifier; ``rgb_source`` (one entry per input channel: its pretrained RGB filter or None) sets
    the input channels, ``mean``/``std`` (per channel, 0..1 scale; default 0 and 1) the normalisation."""
    check_options(arch, stem, head, se_reduction)
    in_channels, mean, std = channel_statistics(rgb_source, mean, std)
    if timm_name(arch) is not None:
        if extra_blocks:
            raise ValueError(f"extra_blocks={extra_blocks} applies to torchvision resnet archs only, not {arch}; "
                             f"use extra_blocks: 0 (or a deeper timm model)")
        body = "stages" if head == "gapnet" else "features" if decoder else "classifier"
        # timm adapts its stem to in_chans itself (repeating R, G, B), whatever channels.rgb says.
        backbone, new = build_timm(arch, num_classes=num_classes, in_chans=3 if stem == "adapter" else in_channels,
                                   dropout=dropout, body=body, pretrained=pretrained, weights=weights)
        adapter = rgb_adapter(rgb_source) if stem == "adapter" else None
        head_modules = [f"backbone.{name}" for name in new]
        if body == "classifier":
            return HPANet(backbone, head_modules, mean, std, adapter, normalize=normalize)
        return _with_heads(backbone, head_modules, backbone.nodes, backbone.channels, mean, std, adapter,
                           head, decoder, dropout, se_reduction, normalize, num_classes)

    backbone = build_backbone(arch, pretrained, weights, in_channels=in_channels)
    adapter = rgb_adapter(rgb_source) if stem == "adapter" else None
    if adapter is None and arch not in SCRATCH:
        channel_stem(backbone, rgb_source, stem)
    new = add_extra_blocks(backbone, extra_blocks)
    if head == "linear":
        new.append(classification_head(backbone, num_classes, dropout))
    head_modules = [f"backbone.{name}" for name in new]
    if head == "linear" and not decoder:
        return HPANet(backbone, head_modules, mean, std, adapter, normalize=normalize)

    stages = stage_nodes(backbone)
    taps = stages if head == "gapnet" else stages[-1:]
    outputs = {node: node for node in taps}
    if head == "linear":
        outputs[new[-1]] = LOGITS
    # Train and eval graphs differ by design (dropout, stochastic depth); the
    # returned module switches between them with .train()/.eval().
    extractor = create_feature_extractor(backbone, outputs, suppress_diff_warning=True)
    channels = output_channels(extractor, taps, in_channels if adapter is None else 3)
    return _with_heads(extractor, head_modules, taps, channels, mean, std, adapter,
                       head, decoder, dropout, se_reduction, normalize, num_classes)


def _with_heads(extractor, head_modules, taps, channels, mean, std, adapter, head, decoder, dropout,
                se_reduction, normalize, num_classes) -> HPANet:
    """``HPANet`` around a body returning {tap: map}: the GAPNet head on every tap, the decoder on the last."""
    gap_head = GAPHead(taps, channels, num_classes, dropout, se_reduction) if head == "gapnet" else None
    recon = Decoder(taps[-1], channels[-1], out_channels=len(mean)) if decoder else None  # one mean a channel
    return HPANet(extractor, head_modules, mean, std, adapter, gap_head, recon, normalize)


def build_from_config(cfg: dict, stats: dict, vocabulary, *, pretrained: bool = True):
    """The classifier a ``models:`` entry describes (every key given, as ``dataclasses.asdict`` of the
    training config and a checkpoint's ``config["model"]`` hold it) for the dataset's ``vocabulary``
    (its classes and channels); ``pretrained=False`` skips weights a checkpoint will replace. Takes
    the plain dict so that reading a checkpoint needs no training code."""
    return build_model(
        cfg["arch"], stats["mean"], stats["std"], cfg["pretrained"] if pretrained else None, cfg["dropout"],
        cfg["stem"], cfg["weights"] if pretrained else None, num_classes=vocabulary.n_classes,
        rgb_source=vocabulary.rgb_source(), head=cfg["head"], se_reduction=cfg["se_reduction"],
        extra_blocks=cfg["extra_blocks"], decoder=cfg["reconstruction_weight"] > 0, normalize=cfg["normalize"],
    )
