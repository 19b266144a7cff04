"""The demo's truth about cells: same images byte for byte, consistent labels, files that read back."""

import numpy as np
import pandas as pd
import pytest

from hpa.cells.masks import load_masks
from hpa.cells.truth import read_regions
from hpa.demo.dataset import sample_label_sets
from hpa.demo.render import render_field
from hpa.demo.truth import write_cells_table, write_truth

# Fields of every kind: one label, the cell-cycle pair, rare classes, many labels, none.
FIELDS = [((0,), 64, 1), ((16, 17), 64, 2), ((0, 25), 128, 3), ((2, 7, 21), 96, 4),
          ((12, 13, 14, 23), 128, 5), ((16,), 48, 6), ((27, 6, 24), 128, 7), ((), 64, 8)]


@pytest.mark.parametrize("labels,size,seed", FIELDS)
def test_images_are_byte_identical_with_and_without_truth(labels, size, seed):
    """Asking for the truth must not move a single rng draw: the same image, byte for byte, and the
    generator left in the same state, so every later image of the demo is unchanged too."""
    plain_rng, truth_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    plain = render_field(set(labels), size, plain_rng, allow_empty=True)
    image, truth = render_field(set(labels), size, truth_rng, allow_empty=True, truth=True)
    assert plain.dtype == image.dtype and np.array_equal(plain, image)
    assert plain_rng.bit_generator.state == truth_rng.bit_generator.state
    assert truth.cells.shape == (size, size) and truth.cells.dtype == np.int32
    assert truth.n_cells > 0 and (truth.cells > 0).any()


def fields(n=12, size=64, seed=0):
    rng = np.random.default_rng(seed)
    for k, labels in enumerate(sample_label_sets(n, rng, min_per_class=0)):
        yield set(labels), render_field(set(labels), size, np.random.default_rng(1000 + k), truth=True)


def test_truth_is_consistent_with_the_image_labels():
    for labels, (_, truth) in fields():
        ids = np.unique(truth.cells)
        assert list(ids) == list(range(truth.n_cells + 1)), "cells numbered 1..n, all visible"
        drawn = set().union(*map(set, truth.labels))
        assert drawn <= labels
        assert drawn == {k for k in labels if truth.regions[k].any()}, "a label drawn in a cell has a region"
        for k in labels:
            region_cells = set(np.unique(truth.cells[truth.regions[k]]))
            holders = {c + 1 for c, cell_labels in enumerate(truth.labels) if k in cell_labels}
            assert region_cells <= holders, "a label's region lies in the cells that show it"
        assert len(drawn) >= len(labels) - 1  # at most a rare label lacks a visible cell


def test_special_labels_are_drawn_only_in_their_cells():
    _, truth = render_field({16, 17, 0}, 96, np.random.default_rng(3), truth=True)
    with_16 = [c for c, k in enumerate(truth.labels) if 16 in k]
    with_17 = [c for c, k in enumerate(truth.labels) if 17 in k]
    assert 1 <= len(with_16) <= 2 and len(with_17) == 1
    assert not set(with_16) & set(with_17)


def test_truth_files_read_back(tmp_path):
    rows = []
    for k, (_labels, (_, truth)) in enumerate(fields(n=3)):
        rows += write_truth(tmp_path, f"im{k}", truth)
        assert np.array_equal(load_masks(tmp_path / "test_cells", f"im{k}"), truth.cells)
        regions = read_regions(tmp_path / "test_regions" / f"im{k}.npz")
        assert regions.keys() == truth.regions.keys()
        assert all(np.array_equal(regions[c], truth.regions[c]) for c in regions)
    write_cells_table(rows[::-1], tmp_path / "test_cells.csv")
    table = pd.read_csv(tmp_path / "test_cells.csv", dtype={"Target": str}, keep_default_na=False)
    assert list(table.columns) == ["Id", "cell", "Target"]
    assert table["Id"].is_monotonic_increasing and len(table) == len(rows)
    assert all(t == " ".join(sorted(t.split(), key=int)) for t in table["Target"])
