"""Synthetic Human Protein Atlas (HPA) immunofluorescence fields of view.

The pipeline's embedded stand-in dataset: render_field(labels, size, rng) draws
a 4-channel field whose green channel shows the given subcellular locations.

Scene model
  1. Cells: 3-8 visible cells (radius ~ size/6) placed with a minimum spacing,
     some cut by the border, neighbours touching. A cell is a star-shaped blob
     (radius modulated by low angular harmonics); a pixel belongs to the cell
     with the smallest normalised distance |p - c| / r(theta) < 1, so
     overlapping blobs share a border as in a confluent culture. Labels 16/17
     change the geometry: a central cell becomes two daughter cells joined by
     a bridge, or a rounded mitotic cell with a chromatin plate and a spindle.
  2. Masks: each cell has an off-centre, irregular elliptic nucleus. The label
     map gives nucleus / cytoplasm / edge masks plus two coordinates used to
     place structures: q (0 at the nuclear centre, 1 at the envelope) and depth
     (0 at the nucleus, 1 at the plasma membrane).
  3. Landmarks: blue = DAPI (textured nuclei, darker nucleoli), red =
     microtubules (curved filaments from the nucleus to the cell edge), yellow
     = ER (a reticular mesh, denser near the nucleus).
  4. Green: the maximum over the labels of one layer per label, drawn by the
     function in DRAWERS and kept in the cells that express it (most of them),
     each cell at its own intensity.
  5. Acquisition: per-channel gain (green sometimes dim), blur, background,
     shot and read noise, uint8.
Lengths are multiples of the cell radius, so a field looks the same at 32 and
2048 px but for resolution. Layout, landmarks, green and noise use separate
child generators: for one rng state red/blue/yellow do not depend on the
labels, except for 16 and 17.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import ndimage as ndi

from hpa.classes import CHANNELS
from hpa.classes import NUM_CLASSES as N_CLASSES
from hpa.demo.scene_cells import TAU, Scene, _blob_r, _layout, _points, _rasterise, _unit
from hpa.demo.strokes import (
    _clip_paths,
    _filament_seeds,
    _lines,
    _mesh,
    _scatter,
    _smooth_noise,
    _splat,
    _spots,
    _trace,
)
from hpa.demo.truth import FieldTruth, field_truth

EXPRESS_P = 0.85  # share of eligible cells that show a label


PEAK_RANGE = {"red": (140, 255), "green": (60, 255), "blue": (130, 255), "yellow": (110, 255)}  # log-uniform


# ----------------------------------------------------------------------------- landmarks
def _draw_blue(sc, rng):
    sc.nucleolus_sigma = 0.065 * sc.r0
    sc.holes = _splat(sc.size, _points(c.nucleoli for c in sc.cells), sc.nucleolus_sigma).clip(0, 1)
    condensed = np.array([{"mitotic": 1.3, "daughter": 1.15}.get(c.kind, 1.0) for c in sc.cells])
    level = sc.per_cell(condensed * rng.uniform(0.55, 1.0, len(sc.cells)))
    texture = _smooth_noise(rng, sc.size, 0.08 * sc.r0)
    return sc.nucleus * level * (0.75 + 0.2 * texture) * (1 - 0.6 * sc.holes)


def _draw_red(sc, rng):
    """Microtubules: curved walks from the nuclear envelope outwards, cut at the cell edge."""
    owner, phi, start, step = _filament_seeds(sc, rng, 70, (0, 0.05))
    walks, tips = _clip_paths(sc, _trace(rng, start, phi + rng.normal(0, 0.8, len(phi)), step, 18, 0.25), owner)
    walks += [f for _, c in sc.cells_of("mitotic") for f in c.fibres] + sc.bridges
    ink = _lines(sc, walks, rng.uniform(0.35, 1.0, len(walks)), 0.015)
    sc.mt, sc.mt_tips = 1 - np.exp(-1.5 * ink), tips  # overlapping filaments saturate
    diffuse = sc.per_cell([0.2 if c.kind == "mitotic" else 0.1 for c in sc.cells])
    return np.maximum(sc.mt * (1 - 0.7 * sc.nucleus), diffuse)


def _draw_yellow(sc, rng):
    t = sc.depth
    fine, coarse = _mesh(rng, sc.size, 0.06 * sc.r0), _mesh(rng, sc.size, 0.13 * sc.r0)
    net = (1 - t) ** 1.5 * fine + 0.5 * (1 - 0.5 * t) * coarse + 0.3 * np.exp(-t / 0.12) + 0.08
    intact = sc.per_cell([c.kind != "mitotic" for c in sc.cells])  # the envelope breaks down in mitosis
    envelope = sc.nucleus * intact * np.exp(-(((1 - sc.q) / 0.1) ** 2))
    sc.er = np.maximum(sc.cyto * net, 0.6 * envelope) + 0.08 * sc.nucleus
    return sc.er


def nucleoplasm(sc, rng):
    return sc.nucleus * (0.85 + 0.15 * _smooth_noise(rng, sc.size, 0.1 * sc.r0)) * (1 - 0.9 * sc.holes)


def nuclear_membrane(sc, rng):
    width = max(0.6, 0.025 * sc.r0) / (0.42 * sc.r0)  # in units of the nuclear radius
    return sc.nucleus * np.exp(-(((1 - sc.q) / width) ** 2))


def nucleoli(sc, rng):
    pts = _points(c.nucleoli for c in sc.cells)
    return _splat(sc.size, pts, sc.nucleolus_sigma, rng.uniform(0.6, 1.0, len(pts)))


def nucleoli_fibrillar_center(sc, rng):
    centres = _points(c.nucleoli for c in sc.cells)
    k = rng.integers(3, 8, len(centres))
    pts = np.repeat(centres, k, 0) + rng.normal(0, 0.7 * sc.nucleolus_sigma, (k.sum(), 2))
    return _splat(sc.size, pts, 0.25 * sc.nucleolus_sigma, rng.uniform(0.6, 1.0, len(pts)))


def nuclear_speckles(sc, rng):
    spots = _spots(sc, rng, 60, "nucleus", 0.03, (0.4, 1.0))
    irregular = 0.6 + 0.4 * _smooth_noise(rng, sc.size, 0.04 * sc.r0).clip(-1, 1)
    return (spots * irregular + 0.15 * sc.nucleus) * (1 - sc.holes)


def golgi_apparatus(sc, rng):
    """A compact cluster of stacks hugging the nucleus on the MTOC side."""
    cells = sc.cells_of("interphase", "daughter")
    pts = _points(c.around_nucleus(c.mtoc_dir + rng.normal(0, 0.45, 14), c.radius * np.abs(rng.normal(0.03, 0.1, 14)))
                  for _, c in cells)
    return _splat(sc.size, pts, 0.035 * sc.r0, rng.uniform(0.5, 1.0, len(pts)))


def intermediate_filaments(sc, rng):
    """Long wavy filaments winding around the nucleus (a cage), unlike the radial microtubules."""
    owner, phi, start, step = _filament_seeds(sc, rng, 30, (0.05, 0.45))
    heading = phi + np.pi / 2 * rng.choice([-1, 1], len(phi)) + rng.normal(0, 0.3, len(phi))
    segments = _clip_paths(sc, _trace(rng, start, heading, step, 30, 0.12, wave=0.35), owner)[0]
    return _lines(sc, segments, rng.uniform(0.5, 1.0, len(segments)), 0.018) * sc.cyto


def actin_filaments(sc, rng):
    """Straight, roughly parallel stress fibres spanning each cell, over a faint cortex."""
    segments, tau = [], np.linspace(-1.4, 1.4, 40)
    for i, c in sc.cells_of("interphase", "daughter"):
        beta, offsets = rng.uniform(0, np.pi), rng.uniform(-1.1, 1.1, 14)
        directions = _unit(beta + rng.normal(0, 0.06, 14))
        across = offsets[:, None, None] * _unit(beta + np.pi / 2)
        lines = c.centre + c.radius * (across + tau[None, :, None] * directions[:, None, :])
        x, y = np.rint(lines).astype(int).clip(0, sc.size - 1).transpose(2, 0, 1)
        for line, inside in zip(lines, sc.cell_id[y, x] == i):
            if inside.sum() >= 3:  # keep the chord between the first and last point inside the cell
                segments.append(line[[inside.argmax(), len(inside) - 1 - inside[::-1].argmax()]])
    fibres = _lines(sc, segments, rng.uniform(0.3, 1.0, len(segments)), 0.02) * sc.inside
    return np.maximum(fibres, 0.3 * plasma_membrane(sc, rng))


def focal_adhesion_sites(sc, rng):
    """Short dashes just inside the outline, pointing to the cell centre."""
    segments = []
    for i, c in sc.cells_of("interphase", "daughter"):
        theta = rng.uniform(0, TAU, 14)
        r = _blob_r(theta, c.radius, c.harm)[:, None] * _unit(theta)
        for outer, inner in zip(c.centre + 0.95 * r, c.centre + 0.8 * r):
            x, y = np.rint(outer).astype(int)
            if 0 <= x < sc.size and 0 <= y < sc.size and sc.cell_id[y, x] == i:
                segments.append(np.stack([outer, inner]))
    return _lines(sc, segments, rng.uniform(0.6, 1.0, len(segments)), 0.04)


def microtubule_ends(sc, rng):
    tips = _splat(sc.size, sc.mt_tips, 0.025 * sc.r0, rng.uniform(0.5, 1.0, len(sc.mt_tips)))
    return tips + 0.12 * sc.mt


def cytokinetic_bridge(sc, rng):
    bridge = _lines(sc, sc.bridges, [0.7] * len(sc.bridges), 0.02)
    return np.maximum(bridge, _splat(sc.size, [b.mean(0) for b in sc.bridges], 0.045 * sc.r0))


def mitotic_spindle(sc, rng):
    fibres = [f for _, c in sc.cells_of("mitotic") for f in c.fibres]
    spindle = _lines(sc, fibres, rng.uniform(0.5, 0.9, len(fibres)), 0.015)
    return np.maximum(spindle, _splat(sc.size, [f[0] for f in fibres], 0.05 * sc.r0) / 9)  # 9 fibres per pole


def microtubule_organizing_center(sc, rng):
    return _splat(sc.size, [c.mtoc for _, c in sc.cells_of("interphase", "daughter")], 0.045 * sc.r0)


def centrosome(sc, rng):
    mtocs = _points(c.mtoc for _, c in sc.cells_of("interphase", "daughter"))
    offset = 0.05 * sc.r0 * _unit(rng.uniform(0, TAU, len(mtocs)))
    return _splat(sc.size, np.concatenate([mtocs + offset, mtocs - offset]), 0.025 * sc.r0)


def lipid_droplets(sc, rng):
    """Hollow rings: a difference of Gaussians clipped at zero (peak 0.4, hence the scaling)."""
    pts = _scatter(sc, rng, 3, "cyto")
    return np.clip(_splat(sc.size, pts, 0.05 * sc.r0) - _splat(sc.size, pts, 0.028 * sc.r0), 0, None) / 0.4


def plasma_membrane(sc, rng):
    return sc.inside * np.exp(-((sc.edge_dist / sc.line_w) ** 2))


def cell_junctions(sc, rng):
    return plasma_membrane(sc, rng) * sc.junction_zone


def mitochondria(sc, rng):
    """Short, slightly bent tubules throughout the cytoplasm."""
    pts = _scatter(sc, rng, 25, "cyto", lambda t: 1 - 0.4 * t)
    angle = rng.uniform(0, TAU, len(pts))
    half = sc.r0 * rng.uniform(0.04, 0.08, len(pts))[:, None] * _unit(angle)
    bend = sc.r0 * rng.normal(0, 0.015, (len(pts), 1)) * _unit(angle + np.pi / 2)
    segments = np.stack([pts - half, pts + bend, pts + half], 1)
    return _lines(sc, segments, rng.uniform(0.5, 1.0, len(pts)), 0.03) * sc.cyto


def aggresome(sc, rng):
    # Aggresomes collect at the MTOC: the MTOC/Golgi position, but one large irregular blob.
    cells = sc.cells_of("interphase", "daughter")
    centres = [c.around_nucleus(np.float64(c.mtoc_dir), 0.16 * c.radius) for _, c in cells]
    blob = _splat(sc.size, centres, 0.13 * sc.r0) * 1.3
    return (blob * (0.8 + 0.2 * _smooth_noise(rng, sc.size, 0.05 * sc.r0))).clip(0, 1)


def cytosol(sc, rng):
    return sc.cyto * (0.85 + 0.1 * _smooth_noise(rng, sc.size, 0.15 * sc.r0)) * (1 - 0.25 * sc.depth)


def rods_and_rings(sc, rng):
    """Short thick rods and small rings (16-gons) in the cytoplasm."""
    pts = _scatter(sc, rng, 1.2, "cyto")
    rod = rng.uniform(size=len(pts)) < 0.5
    half = 0.13 * sc.r0 * _unit(rng.uniform(0, TAU, rod.sum()))[:, None] * [[-1], [1]]  # both rod ends
    rods = _lines(sc, pts[rod][:, None] + half, rng.uniform(0.7, 1.0, rod.sum()), 0.05)
    circle = 0.08 * sc.r0 * _unit(np.linspace(0, TAU, 17))
    rings = _lines(sc, pts[~rod][:, None] + circle, rng.uniform(0.7, 1.0, (~rod).sum()), 0.03)
    return np.maximum(rods, rings)


DRAWERS = {
    0: nucleoplasm, 1: nuclear_membrane, 2: nucleoli, 3: nucleoli_fibrillar_center, 4: nuclear_speckles,
    5: partial(_spots, density=10, region="nucleus", sigma=0.035, amp=(0.7, 1.0)),  # nuclear bodies
    6: lambda sc, rng: sc.er,  # endoplasmic reticulum: the yellow landmark itself
    7: golgi_apparatus,
    8: partial(_spots, density=40, region="cyto", sigma=0.02),  # peroxisomes: many small dots
    9: partial(_spots, density=12, region="cyto", sigma=0.035, weight=lambda t: 1 - 0.5 * t),  # endosomes
    10: partial(_spots, density=7, region="cyto", sigma=0.055, weight=lambda t: (1 - t) ** 2),  # lysosomes
    11: intermediate_filaments, 12: actin_filaments, 13: focal_adhesion_sites,
    14: lambda sc, rng: sc.mt,  # microtubules: the red landmark itself
    15: microtubule_ends, 16: cytokinetic_bridge, 17: mitotic_spindle, 18: microtubule_organizing_center,
    19: centrosome, 20: lipid_droplets, 21: plasma_membrane, 22: cell_junctions, 23: mitochondria,
    24: aggresome, 25: cytosol,
    26: partial(_spots, density=1.2, region="cyto", sigma=0.05, amp=(0.8, 1.0)),  # cytoplasmic bodies
    27: rods_and_rings,
}


ELIGIBLE = {16: ("daughter",), 17: ("mitotic",)}  # other labels: interphase and daughter cells


def _gains(sc, label, rng, agree=False):
    """Per-cell gain of one label: most eligible cells show it (every one where the field's cells
    ``agree``), each at its own intensity; 0 = not shown. The draws are the same either way."""
    eligible = np.array([c.kind in ELIGIBLE.get(label, ("interphase", "daughter")) for c in sc.cells])
    eligible &= sc.area > 0
    on = eligible & ((rng.uniform(size=len(sc.cells)) < EXPRESS_P) | agree)
    return np.where(on if on.any() else eligible, rng.uniform(0.5, 1.0, len(sc.cells)), 0.0)


def _draw_green(sc, labels, rng, drawn=None, agree=False):
    """The green plane; ``drawn`` (a dict), if given, gets label -> (pattern, per-cell gains) for the truth.

    The pattern is drawn before the gains are, as it always was: the rng draws, and so the
    images, do not depend on whether the truth is asked for.
    """
    green = 0.04 * sc.inside.astype(np.float32)  # faint unspecific staining
    for label in sorted(labels):
        pattern = DRAWERS[label](sc, rng)
        gains = _gains(sc, label, rng, agree)
        layer = pattern * sc.per_cell(gains) * rng.uniform(0.6, 1.0)
        if drawn is not None:
            drawn[label] = (pattern, gains)
        np.maximum(green, layer, out=green)
    return green


def _acquire(layers, rng):
    """Microscope and camera: per-channel gain, slight blur, uneven background, shot and read noise."""
    size, shape = layers.shape[-1], (len(CHANNELS), 1, 1)
    low, high = np.log([PEAK_RANGE[ch] for ch in CHANNELS]).T
    peak = np.exp(rng.uniform(low, high)).reshape(shape)
    blur = rng.uniform(0.3, 0.7) * max(1.0, size / 512)
    signal = ndi.gaussian_filter(layers, (0, blur, blur)) * peak
    signal += rng.uniform(0, 5, shape) * (1 + 0.3 * _smooth_noise(rng, size, size / 3))
    noise_sd = np.sqrt(rng.uniform(0.3, 1.5, shape) * signal.clip(0, None) + rng.uniform(0.5, 2, shape) ** 2)
    signal += rng.standard_normal(signal.shape, np.float32) * noise_sd
    return np.clip(np.rint(signal), 0, 255).astype(np.uint8)


def render_field(labels: frozenset[int] | set[int], size: int, rng: np.random.Generator,
                 allow_empty: bool = False, truth: bool = False,
                 agree: bool = False) -> np.ndarray | tuple[np.ndarray, FieldTruth]:
    """Return a (4, size, size) uint8 array, channels in CHANNELS order.

    ``allow_empty``: no label at all gives a green channel of faint unspecific staining
    only, the "Negative" of the atlas's later annotations (hpa.demo.screen).
    ``truth``: return ``(image, FieldTruth)``, the field's cells, each cell's labels and where
    each label was drawn (hpa.demo.truth); the image is the same, byte for byte.
    ``agree``: every eligible cell shows each label (as in most of the atlas) instead of most
    (``EXPRESS_P``); the same random draws, so only the cells that would not have shown a label differ.
    """
    labels = frozenset(int(x) for x in labels)
    if (not labels and not allow_empty) or not labels <= set(range(N_CLASSES)):
        raise ValueError(f"labels must be a non-empty subset of 0..{N_CLASSES - 1}, got {sorted(labels)}")
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    r_cells, r_special, r_marks, r_green, r_noise = map(np.random.default_rng, rng.integers(0, 2**63, 5))
    r0 = size / 6 * r_cells.uniform(0.8, 1.2)
    cells, bridges = _layout(size, r0, labels, r_cells, r_special)
    sc = Scene(size, r0, cells, bridges, *_rasterise(cells, size))
    layers = {"blue": _draw_blue(sc, r_marks), "red": _draw_red(sc, r_marks), "yellow": _draw_yellow(sc, r_marks)}
    drawn = {} if truth else None
    layers["green"] = _draw_green(sc, labels, r_green, drawn, agree)
    image = _acquire(np.stack([layers[ch] for ch in CHANNELS]).astype(np.float32), r_noise)
    return (image, field_truth(sc, drawn)) if truth else image
