"""Drawing primitives of the synthetic fields: noise, spots, splats, lines, traced filaments, meshes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from hpa.demo.scene_cells import TAU, _points, _unit


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


def _mesh(rng, size, spacing):
    """Thin network along the zero level set of a smooth random field."""
    return np.exp(-((_smooth_noise(rng, size, spacing) / 0.3) ** 2))


# ----------------------------------------------------------------------------- green, by label
def _spots(sc, rng, density, region, sigma, amp=(0.5, 1.0), weight=None):
    """Dots of size sigma (in r0) scattered over a region at `density` per r0^2."""
    pts = _scatter(sc, rng, density, region, weight)
    return _splat(sc.size, pts, sigma * sc.r0, rng.uniform(*amp, len(pts)))
