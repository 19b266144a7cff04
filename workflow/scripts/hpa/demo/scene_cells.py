"""Cells of a synthetic field of view: outlines, nuclei, placement, and the label map (``Scene``).

Steps 1 and 2 of the scene model in ``hpa.demo.render``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

TAU = 2 * np.pi


CELL_WOBBLE = np.array([0.2, 0.1, 0.06, 0.04])  # amplitudes of outline harmonics 2..5


NUC_WOBBLE = np.array([0.06, 0.04, 0.02])


def _unit(angle):
    return np.stack([np.cos(angle), np.sin(angle)], -1)


def _points(arrays):
    """All points of several arrays as one (n, 2) array; no arrays give an empty one."""
    return np.concatenate([np.reshape(a, (-1, 2)) for a in arrays] + [np.zeros((0, 2))])


def _harmonics(rng, amps):
    """Random outline wobble: rows are harmonic order, amplitude (up to amps) and phase."""
    k = np.arange(2, 2 + len(amps))
    return np.stack([k, rng.uniform(0, 1, len(amps)) * amps, rng.uniform(0, TAU, len(amps))])


def _blob_r(theta, base, harm):
    r = 1.0
    for k, amp, phase in harm.T.tolist():  # python floats keep float32 windows in float32
        r = r + amp * np.cos(k * theta - phase)
    return base * r


@dataclass
class Cell:
    """One cell's geometry in px, with the anchors (MTOC side, nucleoli, spindle) drawers share."""

    centre: np.ndarray
    radius: float
    harm: np.ndarray
    nuc_centre: np.ndarray
    nuc_axes: tuple
    nuc_angle: float
    nuc_harm: np.ndarray
    mtoc_dir: float  # side of the nucleus holding the MTOC, Golgi and aggresome
    kind: str = "interphase"  # or "mitotic", "daughter"
    nucleoli: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    fibres: list = field(default_factory=list)  # spindle fibres (pole, plate point)

    def nuc_r(self, theta):
        a, b = self.nuc_axes
        u = theta - self.nuc_angle
        return a * b / np.hypot(b * np.cos(u), a * np.sin(u)) * _blob_r(theta, 1.0, self.nuc_harm)

    def around_nucleus(self, theta, gap):
        """Points at angle theta from the nuclear centre, `gap` px outside the envelope."""
        return self.nuc_centre + (self.nuc_r(theta) + gap)[..., None] * _unit(theta)

    @property
    def mtoc(self):
        return self.around_nucleus(np.float64(self.mtoc_dir), 0.08 * self.radius)


def _interphase_cell(rng, centre, radius):
    a = radius * rng.uniform(0.36, 0.48)
    nuc = centre + radius * rng.uniform(0, 0.15) * _unit(rng.uniform(0, TAU))
    cell = Cell(centre, radius, _harmonics(rng, CELL_WOBBLE), nuc, (a, a * rng.uniform(0.7, 0.95)),
                rng.uniform(0, np.pi), _harmonics(rng, NUC_WOBBLE), rng.uniform(0, TAU))
    n, ang, rad = rng.integers(1, 5), rng.uniform(0, TAU, 4), 0.55 * np.sqrt(rng.uniform(0, 1, 4))
    local = (rad * np.array([[a], [cell.nuc_axes[1]]]) * _unit(ang).T).T[:n]
    c, s = np.cos(cell.nuc_angle), np.sin(cell.nuc_angle)
    cell.nucleoli = nuc + local @ np.array([[c, s], [-s, c]])
    return cell


def _mitotic_cell(rng, centre, radius):
    """Rounded cell; chromatin condensed into a plate; spindle fibres from two poles to the plate."""
    r, axis = 0.8 * radius, rng.uniform(0, np.pi)
    cell = Cell(centre, r, _harmonics(rng, CELL_WOBBLE / 4), centre.copy(), (0.42 * r, 0.1 * r),
                axis + np.pi / 2, _harmonics(rng, NUC_WOBBLE * 2), axis, kind="mitotic")
    for pole in (centre + 0.55 * r * _unit(axis), centre - 0.55 * r * _unit(axis)):
        for s in np.linspace(-0.85, 0.85, 9) + rng.normal(0, 0.05, 9):
            cell.fibres.append(np.stack([pole, centre + s * 0.4 * r * _unit(axis + np.pi / 2)]))
    return cell


def _daughter_pair(rng, centre, radius):
    """Two small telophase cells with distal nuclei; returns them and the bridge between the nuclei."""
    r, angle = 0.62 * radius, rng.uniform(0, TAU)
    u, cells, ends = _unit(angle), [], []
    for s in (-1, 1):
        c = centre + s * 0.9 * r * u
        cell = Cell(c, r, _harmonics(rng, CELL_WOBBLE / 2), c + s * 0.15 * r * u, (0.36 * r, 0.3 * r),
                    angle + np.pi / 2, _harmonics(rng, NUC_WOBBLE), angle + (s > 0) * np.pi, kind="daughter")
        ends.append(cell.nuc_centre - s * (cell.nuc_r(angle) + 0.05 * r) * u)
        cells.append(cell)
    return cells, np.stack(ends)


def _layout(size, r0, labels, rng_cells, rng_special):
    centres, visible = [rng_cells.uniform(0.3, 0.7, 2) * size], 1  # one cell always well inside
    target = rng_cells.integers(3, 9)
    for c, lone in zip(rng_cells.uniform(-0.15, 1.15, (80, 2)) * size, rng_cells.uniform(size=80) < 0.2):
        if visible == target:
            break
        gap = np.hypot(*(np.array(centres) - c).T).min() / r0
        if gap > 1.45 and (gap < 2.2 or lone):  # cells mostly grow in touching colonies
            centres.append(c)
            visible += bool(np.all((c > 0) & (c < size)))
    # Blobs larger than the spacing touch their neighbours; free space lets them spread.
    cells = [_interphase_cell(rng_cells, c, r0 * rng_cells.uniform(0.9, 1.3)) for c in centres]
    # Mitotic figures replace the most central cells so that they are visible.
    order = sorted(range(len(cells)), key=lambda i: np.hypot(*(cells[i].centre - size / 2)))
    bridges = []
    if 17 in labels:
        c = cells[order[0]]
        cells[order[0]] = _mitotic_cell(rng_special, c.centre, c.radius)
    if 16 in labels:
        j = order[1 if 17 in labels and len(order) > 1 else 0]
        pair, bridge = _daughter_pair(rng_special, cells[j].centre, cells[j].radius)
        cells = [c for i, c in enumerate(cells) if i != j] + pair
        bridges.append(bridge)
    return cells, bridges


def _window(centre, ext, size):
    """Pixel window of half-width ext around centre, with the polar coordinates of its pixels."""
    lo = np.maximum(0, (centre - ext).astype(int))
    hi = np.minimum(size, (centre + ext).astype(int) + 2)
    if np.any(lo >= hi):
        return None
    dx = np.arange(lo[0], hi[0], dtype=np.float32) - np.float32(centre[0])
    dy = np.arange(lo[1], hi[1], dtype=np.float32)[:, None] - np.float32(centre[1])
    return (slice(lo[1], hi[1]), slice(lo[0], hi[0])), np.hypot(dx, dy), np.arctan2(dy, dx)


def _rasterise(cells, size):
    best = np.full((size, size), np.inf, np.float32)
    cell_id = np.full((size, size), -1, np.int16)
    for i, c in enumerate(cells):
        if (win := _window(c.centre, c.radius * (1 + c.harm[1].sum()), size)) is not None:
            box, rho, theta = win
            d, sub = rho / _blob_r(theta, c.radius, c.harm), best[box]
            take = d < np.minimum(sub, 1.0)
            sub[take], cell_id[box][take] = d[take], i
    q = np.zeros((size, size), np.float32)
    nucleus = np.zeros((size, size), bool)
    for i, c in enumerate(cells):
        if (win := _window(c.nuc_centre, 1.3 * c.nuc_axes[0], size)) is not None:
            box, rho, theta = win
            qn = rho / c.nuc_r(theta)
            inside = (qn < 1) & (cell_id[box] == i)
            nucleus[box] |= inside
            q[box][inside] = qn[inside]
    return cell_id, nucleus, q


@dataclass
class Scene:
    """The rasterised field: label map, masks and coordinates; landmark drawers add sc.er, sc.mt, ..."""

    size: int
    r0: float  # typical cell radius in px; all lengths are multiples of it
    cells: list
    bridges: list
    cell_id: np.ndarray  # -1 = background
    nucleus: np.ndarray
    q: np.ndarray

    def __post_init__(self):
        cid = self.cell_id
        border = ndi.maximum_filter(cid, 3) != ndi.minimum_filter(cid, 3)  # pixels touching another label
        self.inside = cid >= 0
        self.cyto = self.inside & ~self.nucleus
        self.edge_dist = ndi.distance_transform_edt(self.inside & ~border).astype(np.float32)
        to_nuc = ndi.distance_transform_edt(~self.nucleus).astype(np.float32)
        self.depth = np.where(self.cyto, to_nuc / (to_nuc + self.edge_dist + 1e-3), 0).astype(np.float32)
        self.line_w = max(0.7, 0.03 * self.r0)  # membrane width in px
        k = 2 * int(np.ceil(2 * self.line_w)) + 1
        lo, hi = ndi.minimum_filter(cid, k), ndi.maximum_filter(cid, k)
        self.junction_zone = (lo >= 0) & (lo != hi)
        self.area = np.bincount(cid.ravel() + 1, minlength=len(self.cells) + 1)[1:]

    def cells_of(self, *kinds):
        return [(i, c) for i, c in enumerate(self.cells) if c.kind in kinds]

    def per_cell(self, values, background=0):
        """Image of one value per cell."""
        return np.append(np.asarray(values, np.float32), np.float32(background))[self.cell_id]
