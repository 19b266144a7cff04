"""The ``cell_gallery`` rule: a page per class (``hpa.cells.gallery``) of an ensemble's test images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hpa.cells.frames import SQUARE
from hpa.cells.gallery import KINDS, composite, file_name, page, pick, protein_channel, protein_panel, row_image
from hpa.cells.masks import load_masks
from hpa.classes import Vocabulary
from hpa.data.images import decode_field
from hpa.data.ingest import manifest_files
from hpa.files import atomic_path
from hpa.tables import labels_to_matrix

log = logging.getLogger(__name__)


def write_gallery(*, out_dir, vocab: Vocabulary, probs: pd.DataFrame, thresholds, truth: pd.DataFrame | None,
                  maps_npz, scores: pd.DataFrame, masks_dir, manifest: pd.DataFrame, depth, fits: dict,
                  per_kind: int) -> list[Path]:
    """One JPEG per class under ``out_dir`` (noisy fluorescence: half the size of a PNG); the pages written."""
    with np.load(maps_npz) as saved:
        map_ids, maps = saved["ids"].astype(str), saved["maps"]
    has_cells = set(scores["Id"])
    map_row = {i: k for k, i in enumerate(map_ids)}
    shown = probs[probs["Id"].isin(has_cells) & probs["Id"].isin(map_row)].reset_index(drop=True)
    p = shown.filter(regex=r"^p\d+$").to_numpy(float)
    predicted = p >= np.asarray(thresholds)[None, :]
    true = None
    if truth is not None:
        target = truth.set_index("Id")["Target"].reindex(shown["Id"]).fillna("")
        true = labels_to_matrix(target.tolist(), vocab.n_classes).astype(bool)
    files = {r["Id"]: manifest_files(r, vocab.channels) for r in manifest.to_dict("records")}
    by_image = {i: t for i, t in scores.groupby("Id")}
    decoded: dict[str, tuple] = {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for c, name in enumerate(vocab.classes):
        rows = []
        for kind, r in pick(p[:, c], predicted[:, c], None if true is None else true[:, c], per_kind):
            image_id = shown["Id"].iloc[r]
            if image_id not in decoded:
                decoded[image_id] = _picture(image_id, files[image_id], vocab, depth, masks_dir)
            protein, colour, mask = decoded[image_id]
            cells = by_image[image_id]
            cell_score = dict(zip(cells["cell"], cells[f"p{c}"]))
            labelled = {int(k) for k, s in cell_score.items() if s >= thresholds[c]}
            caption = f"{KINDS[kind]}  p={p[r, c]:.2f}  {len(labelled)}/{len(cells)} cells  {image_id}"
            grid = maps[map_row[image_id], c].astype(np.float32)
            rows.append(row_image(protein, colour, grid, fits.get(image_id, SQUARE),
                                  mask, cell_score, labelled, caption))
        path = out_dir / file_name(c, name)
        with atomic_path(path) as tmp:
            page(f"{c} {name}: threshold {thresholds[c]:.2f}", rows).save(tmp, format="JPEG", quality=90)
        written.append(path)
    log.info("%d gallery pages, %d images drawn", len(written), len(decoded))
    return written


def _picture(image_id: str, files: dict, vocab: Vocabulary, depth, masks_dir) -> tuple[np.ndarray, ...]:
    """The protein panel, the composite and the mask of one image."""
    planes = dict(zip(files, decode_field(files, None, depth)[0]))
    return protein_panel(planes[protein_channel(vocab)]), composite(planes, vocab.rgb), load_masks(masks_dir, image_id)
