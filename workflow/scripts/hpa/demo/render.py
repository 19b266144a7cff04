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

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from hpa.classes import CHANNELS
from hpa.classes import NUM_CLASSES as N_CLASSES

TAU = 2 * np.pi


CELL_WOBBLE = np.array([0.2, 0.1, 0.06, 0.04])  # amplitudes of outline harmonics 2..5


NUC_WOBBLE = np.array([0.06, 0.04, 0.02])


EXPRESS_P = 0.85  # share of eligible cells that show a label


PEAK_RANGE = {"red": (140, 255), "green": (60, 255), "blue": (130, 255), "yellow": (110, 255)}  # log-uniform


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


def _smooth_noise(rng, size, spacing):
    """Zero-mean, unit-variance random field with features ~spacing px apart."""
    m = max(2, int(round(size / max(spacing, 1.0)))) + 1
    grid = Image.fromarray(rng.standard_normal((m, m)).astype(np.float32), "F")
    f = np.asarray(grid.resize((size, size), Image.BICUBIC))
    return (f - f.mean()) / (f.std() + 1e-6)


def _deposit(size, pts, amp):
    """Image holding weight amp at each sub-pixel point, shared bilinearly by its 4 pixels."""
    pts = _points([pts])
    base, amp = np.floor(pts).astype(int), np.broadcast_to(amp, len(pts))
    frac, flat, weight = pts - base, [], []
    for ox in (0, 1):
        for oy in (0, 1):
            x, y = base[:, 0] + ox, base[:, 1] + oy
            ok = (x >= 0) & (x < size) & (y >= 0) & (y < size)
            flat.append((y * size + x)[ok])
            weight.append((amp * np.abs(1 - ox - frac[:, 0]) * np.abs(1 - oy - frac[:, 1]))[ok])
    ink = np.bincount(np.concatenate(flat), np.concatenate(weight), minlength=size * size)
    return ink.reshape(size, size).astype(np.float32)


def _splat(size, pts, sigma, amp=1.0):
    """Gaussian spots of peak ~amp and std sigma px at sub-pixel points."""
    sigma = max(sigma, 0.5)
    return ndi.gaussian_filter(_deposit(size, pts, amp), sigma) * np.float32(TAU * sigma**2)


def _lines(sc, polylines, values, width):
    """Additive anti-aliased lines of FWHM width * r0 and peak ~value: ink laid every 0.5 px, then blurred."""
    polys = list(polylines)
    pts = np.concatenate(polys + [np.zeros((0, 2))]).astype(float)
    owner = np.repeat(np.arange(len(polys)), [len(p) for p in polys])
    same = owner[1:] == owner[:-1]  # consecutive points of one polyline make a segment
    a, b = pts[:-1][same], pts[1:][same]
    value = np.asarray(values, float)[owner[:-1][same]]
    length = np.hypot(*(b - a).T)
    n = np.maximum(1, np.ceil(length / 0.5)).astype(int)
    seg = np.repeat(np.arange(len(a)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[seg]
    ink = _deposit(sc.size, a[seg] + t[:, None] * (b - a)[seg], (value * length / n)[seg])
    # Lines thinner than a pixel keep their ink: they get dimmer, not wider, at low resolution.
    sigma = width * sc.r0 / 2.35
    return ndi.gaussian_filter(ink, max(sigma, 0.5)) * np.float32(np.sqrt(TAU) * max(sigma, 0.25))


def _scatter(sc, rng, density, region, weight=None):
    """Random points in sc.<region> at `density` per r0^2, thinned by weight(depth)."""
    n = rng.poisson(density * (sc.size / sc.r0) ** 2)
    pts = rng.uniform(0, sc.size - 1, (n, 2))
    x, y = np.rint(pts).astype(int).T
    keep = getattr(sc, region)[y, x]
    if weight is not None:
        keep &= rng.uniform(size=n) < weight(sc.depth[y, x])
    return pts[keep]


def _clip_paths(sc, paths, owner):
    """Cut polylines (n, m, 2) where they first leave their owner cell; also return the tips at its edge."""
    n, m = paths.shape[:2]
    x, y = np.rint(paths).astype(int).transpose(2, 0, 1)
    in_img = (x >= 0) & (x < sc.size) & (y >= 0) & (y < sc.size)
    inside = in_img & (sc.cell_id[y.clip(0, sc.size - 1), x.clip(0, sc.size - 1)] == np.reshape(owner, (-1, 1)))
    stop = np.where(inside.all(1), m, inside.argmin(1))
    keep = stop >= 2
    # A tip marks the cell edge only where the walk left the cell, not where it left the image.
    at_edge = keep & (stop < m) & in_img[np.arange(n), stop.clip(max=m - 1)]
    return [p[:e] for p, e in zip(paths[keep], stop[keep])], paths[np.arange(n), stop - 1][at_edge]


def _trace(rng, start, heading, step, n_steps, curl, wave=0.0):
    """Filaments as walks whose heading drifts by `curl` per step, plus optional regular waviness."""
    turns = rng.normal(0, curl, (len(start), n_steps))
    if wave:
        turns += wave * np.cos(np.arange(n_steps) * 1.3 + rng.uniform(0, TAU, (len(start), 1)))
    step = np.reshape(step, (-1, 1, 1))
    return start[:, None] + np.cumsum(step * _unit(heading[:, None] + np.cumsum(turns, 1)), 1)


# ----------------------------------------------------------------------------- landmarks
def _draw_blue(sc, rng):
    sc.nucleolus_sigma = 0.065 * sc.r0
    sc.holes = _splat(sc.size, _points(c.nucleoli for c in sc.cells), sc.nucleolus_sigma).clip(0, 1)
    condensed = np.array([{"mitotic": 1.3, "daughter": 1.15}.get(c.kind, 1.0) for c in sc.cells])
    level = sc.per_cell(condensed * rng.uniform(0.55, 1.0, len(sc.cells)))
    texture = _smooth_noise(rng, sc.size, 0.08 * sc.r0)
    return sc.nucleus * level * (0.75 + 0.2 * texture) * (1 - 0.6 * sc.holes)


def _filament_seeds(sc, rng, n, offset):
    """n filament starts per interphase/daughter cell, at an angle phi around its nucleus.

    ``offset`` is the range of distances beyond the nuclear envelope, in cell radii.
    Returns (owning cell, phi, start points, step length of a cell-scaled walk).
    """
    cells = sc.cells_of("interphase", "daughter")
    owner = np.repeat([i for i, _ in cells], n).astype(int)
    phi = rng.uniform(0, TAU, len(owner))
    start = _points(c.around_nucleus(p, c.radius * rng.uniform(*offset, n))
                    for (_, c), p in zip(cells, phi.reshape(-1, n)))
    step = np.array([sc.cells[i].radius for i in owner]) / 12
    return owner, phi, start, step


def _draw_red(sc, rng):
    """Microtubules: curved walks from the nuclear envelope outwards, cut at the cell edge."""
    owner, phi, start, step = _filament_seeds(sc, rng, 70, (0, 0.05))
    walks, tips = _clip_paths(sc, _trace(rng, start, phi + rng.normal(0, 0.8, len(phi)), step, 18, 0.25), owner)
    walks += [f for _, c in sc.cells_of("mitotic") for f in c.fibres] + sc.bridges
    ink = _lines(sc, walks, rng.uniform(0.35, 1.0, len(walks)), 0.015)
    sc.mt, sc.mt_tips = 1 - np.exp(-1.5 * ink), tips  # overlapping filaments saturate
    diffuse = sc.per_cell([0.2 if c.kind == "mitotic" else 0.1 for c in sc.cells])
    return np.maximum(sc.mt * (1 - 0.7 * sc.nucleus), diffuse)


def _mesh(rng, size, spacing):
    """Thin network along the zero level set of a smooth random field."""
    return np.exp(-((_smooth_noise(rng, size, spacing) / 0.3) ** 2))


def _draw_yellow(sc, rng):
    t = sc.depth
    fine, coarse = _mesh(rng, sc.size, 0.06 * sc.r0), _mesh(rng, sc.size, 0.13 * sc.r0)
    net = (1 - t) ** 1.5 * fine + 0.5 * (1 - 0.5 * t) * coarse + 0.3 * np.exp(-t / 0.12) + 0.08
    intact = sc.per_cell([c.kind != "mitotic" for c in sc.cells])  # the envelope breaks down in mitosis
    envelope = sc.nucleus * intact * np.exp(-(((1 - sc.q) / 0.1) ** 2))
    sc.er = np.maximum(sc.cyto * net, 0.6 * envelope) + 0.08 * sc.nucleus
    return sc.er


# ----------------------------------------------------------------------------- green, by label
def _spots(sc, rng, density, region, sigma, amp=(0.5, 1.0), weight=None):
    """Dots of size sigma (in r0) scattered over a region at `density` per r0^2."""
    pts = _scatter(sc, rng, density, region, weight)
    return _splat(sc.size, pts, sigma * sc.r0, rng.uniform(*amp, len(pts)))


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


def _expression(sc, label, rng):
    """Per-pixel gain of one label: most eligible cells show it, each at its own intensity."""
    eligible = np.array([c.kind in ELIGIBLE.get(label, ("interphase", "daughter")) for c in sc.cells])
    eligible &= sc.area > 0
    on = eligible & (rng.uniform(size=len(sc.cells)) < EXPRESS_P)
    return sc.per_cell(np.where(on if on.any() else eligible, rng.uniform(0.5, 1.0, len(sc.cells)), 0.0))


def _draw_green(sc, labels, rng):
    green = 0.04 * sc.inside.astype(np.float32)  # faint unspecific staining
    for label in sorted(labels):
        layer = DRAWERS[label](sc, rng) * _expression(sc, label, rng) * rng.uniform(0.6, 1.0)
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


def render_field(labels: frozenset[int] | set[int], size: int, rng: np.random.Generator) -> np.ndarray:
    """Return a (4, size, size) uint8 array, channels in CHANNELS order."""
    labels = frozenset(int(x) for x in labels)
    if not labels or not labels <= set(range(N_CLASSES)):
        raise ValueError(f"labels must be a non-empty subset of 0..{N_CLASSES - 1}, got {sorted(labels)}")
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    r_cells, r_special, r_marks, r_green, r_noise = map(np.random.default_rng, rng.integers(0, 2**63, 5))
    r0 = size / 6 * r_cells.uniform(0.8, 1.2)
    cells, bridges = _layout(size, r0, labels, r_cells, r_special)
    sc = Scene(size, r0, cells, bridges, *_rasterise(cells, size))
    layers = {"blue": _draw_blue(sc, r_marks), "red": _draw_red(sc, r_marks), "yellow": _draw_yellow(sc, r_marks)}
    layers["green"] = _draw_green(sc, labels, r_green)
    return _acquire(np.stack([layers[ch] for ch in CHANNELS]).astype(np.float32), r_noise)
