"""Tests of the synthetic HPA field renderer.

The location tests only look at the rendered channels: the landmark channels
(blue nuclei, red/yellow cytoplasm) tell where the green signal should be, as a
person would check it. Every statistic is averaged over several seeds, so a
dim or sparse image cannot make a test flaky.
"""
from functools import cache

import numpy as np
import pytest
from scipy import ndimage as ndi

from hpa.classes import CHANNELS
from hpa.demo.render import DRAWERS, render_field

RED, GREEN, BLUE, YELLOW = range(4)
SEEDS = range(6)
NUCLEAR = [0, 1, 2, 3, 4, 5]  # nucleoplasm, membrane, nucleoli, fibrillar center, speckles, bodies
CYTOPLASMIC = [8, 9, 10, 11, 13, 14, 15, 20, 21, 22, 23, 25, 26, 27]


def render(labels, seed, size=128):
    return _render(frozenset(labels), seed, size)


@cache  # several tests look at the same fields
def _render(labels, seed, size):
    img = render_field(labels, size, np.random.default_rng(seed)).astype(float)
    img.flags.writeable = False
    return img


def landmarks(img):
    """Nucleus, cytoplasm and whole-cell masks from the blue, red and yellow channels."""
    red, blue, yellow = (ndi.gaussian_filter(img[c], 1) for c in (RED, BLUE, YELLOW))
    nucleus = blue > 0.4 * np.percentile(blue, 99.5)
    cells = nucleus | (red + yellow > 0.25 * np.percentile(red + yellow, 99))
    cytoplasm = cells & ~ndi.binary_dilation(nucleus, iterations=2)
    return nucleus, cytoplasm, cells


def bright(green):
    """Pixels clearly above the background of a (lightly smoothed) green channel."""
    g = ndi.gaussian_filter(green, 0.7)
    background = np.median(g)
    return g > background + 0.4 * (g.max() - background)


def corr(a, b):
    return np.corrcoef(a.ravel(), b.ravel())[0, 1]


def high_pass(a):
    return a - ndi.gaussian_filter(a, 2)


@pytest.mark.parametrize("size", [32, 128, 512])
def test_shape_dtype_and_signal_in_every_channel(size):
    img = render_field(frozenset({0, 25}), size, np.random.default_rng(0))
    assert img.shape == (len(CHANNELS), size, size) and img.dtype == np.uint8
    for channel in img.astype(float):
        assert channel.max() > np.median(channel) + 20


def test_same_rng_state_gives_same_image_and_other_states_do_not():
    a = render_field({3, 7}, 96, np.random.default_rng(42))
    assert np.array_equal(a, render_field({3, 7}, 96, np.random.default_rng(42)))
    assert not np.array_equal(a, render_field({3, 7}, 96, np.random.default_rng(43)))
    rng = np.random.default_rng(42)
    first = render_field({3, 7}, 96, rng)
    assert not np.array_equal(first, render_field({3, 7}, 96, rng))  # the generator advances


@pytest.mark.parametrize("labels", [set(), {28}, {-1}, {0, 30}])
def test_rejects_labels_outside_the_28_classes(labels):
    with pytest.raises(ValueError):
        render_field(labels, 64, np.random.default_rng(0))


def test_every_class_has_a_drawer_and_puts_green_in_cells():
    assert sorted(DRAWERS) == list(range(28))
    for label in range(28):
        greens = [render({label}, seed)[GREEN] for seed in range(2)]
        assert max(g.max() - np.median(g) for g in greens) > 20, label


def test_only_green_depends_on_the_labels():
    for seed in range(3):
        a, b = render({0}, seed), render({8, 21}, seed)
        for channel in (RED, BLUE, YELLOW):
            assert np.array_equal(a[channel], b[channel])
        assert np.abs(a[GREEN] - b[GREEN]).mean() > 1


def test_mitotic_classes_change_the_cells():
    for seed in range(3):
        interphase = render({0}, seed)
        assert not np.array_equal(interphase[BLUE], render({17}, seed)[BLUE])  # condensed chromatin
        assert not np.array_equal(interphase[BLUE], render({16}, seed)[BLUE])  # daughter nuclei


@pytest.mark.parametrize("a, b", [({2}, {3}), ({8}, {10}), ({11}, {14}), ({21}, {22}), ({0}, {0, 25})])
def test_green_differs_between_label_sets(a, b):
    for seed in range(3):
        assert np.abs(render(a, seed)[GREEN] - render(b, seed)[GREEN]).max() > 10


def test_nucleoplasm_follows_the_nuclear_stain():
    nucleoplasm = [corr(render({0}, s)[GREEN], render({0}, s)[BLUE]) for s in SEEDS]
    cytosol = [corr(render({25}, s)[GREEN], render({25}, s)[BLUE]) for s in SEEDS]
    assert np.mean(nucleoplasm) > 0.6 and min(nucleoplasm) > 0.4
    assert np.mean(cytosol) < 0.1


def test_cytosol_fills_the_cytoplasm_and_spares_the_nuclei():
    for seed in SEEDS:
        img = render({25}, seed)
        nucleus, cytoplasm, _ = landmarks(img)
        assert img[GREEN][cytoplasm].mean() > 2.5 * img[GREEN][nucleus].mean()
        img = render({0}, seed)
        nucleus, cytoplasm, _ = landmarks(img)
        assert img[GREEN][cytoplasm].mean() < 0.5 * img[GREEN][nucleus].mean()


def test_plasma_membrane_is_an_outline():
    edge_ratio, coverage = [], {21: [], 25: []}
    for seed in SEEDS:
        for label in (21, 25):
            img = render({label}, seed)
            nucleus, _, cells = landmarks(img)
            lit = bright(img[GREEN]) & cells
            coverage[label].append(lit.sum() / cells.sum())
            if label == 21:
                assert not (lit & nucleus).any()
                depth = ndi.distance_transform_edt(cells)  # px to the nearest cell-free pixel
                edge_ratio.append(depth[lit].mean() / depth[cells].mean())
    assert np.mean(coverage[21]) < 0.15 < np.mean(coverage[25])
    assert np.mean(edge_ratio) < 0.75  # lit pixels hug the cell edges (junctions lie deeper)


@pytest.mark.parametrize("label", NUCLEAR + CYTOPLASMIC)
def test_compartment_of_each_class(label):
    inside = []
    for seed in range(4):
        img = render({label}, seed)
        nucleus = ndi.binary_dilation(landmarks(img)[0])
        lit = bright(img[GREEN])
        inside.append((lit & nucleus).sum() / max(lit.sum(), 1))
    if label in NUCLEAR:
        assert np.mean(inside) > 0.6
    else:  # perinuclear classes (lysosomes) blur a little into the dilated nucleus
        assert np.mean(inside) < 0.3


def test_microtubules_follow_red_and_er_follows_yellow():
    for seed in SEEDS:
        img = {label: render({label}, seed) for label in (6, 14)}
        mt = [corr(high_pass(img[14][GREEN]), high_pass(img[14][c])) for c in (RED, YELLOW)]
        er = [corr(high_pass(img[6][GREEN]), high_pass(img[6][c])) for c in (RED, YELLOW)]
        assert mt[0] > mt[1] + 0.2
        assert er[1] > er[0] + 0.2


def test_lysosomes_are_fewer_and_larger_than_peroxisomes():
    count, area = {8: [], 10: []}, {8: [], 10: []}
    for seed in SEEDS:
        for label in (8, 10):
            spots, n = ndi.label(bright(render({label}, seed, 256)[GREEN]))
            count[label].append(n)
            area[label].append(np.median(np.bincount(spots.ravel())[1:]) if n else 0)
    assert np.mean(count[8]) > 2 * np.mean(count[10])
    assert np.mean(area[10]) > 2 * np.mean(area[8])
