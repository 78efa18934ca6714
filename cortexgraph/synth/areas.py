"""The phantom's cortical areas: a real surface parcellation, coarsened, named, given a laminar profile.

Areas are built once (independent of the cohort seed, so every phantom cohort shares one area table) from
the 200 left-hemisphere parcels of the Schaefer-400 parcellation on conte69: neighbouring parcels are
merged at random, a parcel being picked with probability proportional to its current size, until
:data:`NUM_AREAS` remain, which makes area sizes very different (from one parcel to a dozen). Both
hemispheres use the same vertex -> area assignment (fs_LR vertex correspondence), so every area exists in
both hemispheres, as in the published data sets.

Each area gets a six-layer laminar profile: relative layer thickness, cell density (0..~1.5) and cell
size (µm) per layer, and a cortical thickness in template mm. Profiles vary smoothly with the position of
the area on the sphere (so neighbours are similar, some nearly identical) around a generic isocortex,
plus a per-area jitter (s.d. 12%); four areas are made strongly distinct (a koniocortex "hOc1" with a thick,
dense layer IV; an agranular motor area "4p" with giant layer V cells; "hOc2" beside hOc1; an
agranular limbic area "p24a" with blurred lamination).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cortexgraph.data.manifest import Area
from cortexgraph.synth.presets import AREA_LAYOUT_SEED
from cortexgraph.synth.resources import Surface

NUM_AREAS = 100
LAYERS = ("I", "II", "III", "IV", "V", "VI")
BASE_FRACTION = np.array([0.10, 0.08, 0.30, 0.10, 0.20, 0.22])
BASE_DENSITY = np.array([0.12, 0.95, 0.55, 0.90, 0.50, 0.65])
BASE_SIZE_UM = np.array([8.0, 10.0, 16.0, 9.0, 20.0, 13.0])
BASE_THICKNESS_MM = 2.6  # template (fresh-brain) mm
JITTER = 0.12
"""Per-area log-normal jitter of every layer parameter (on top of the smooth spatial variation)."""

# named landmarks (left hemisphere, MNI mm): area name -> point on its cortex
LANDMARKS = {
    "hOc1": (-8.0, -88.0, 4.0),
    "4p": (-36.0, -22.0, 56.0),
    "p24a": (-5.0, 28.0, 20.0),
}


@dataclass(frozen=True)
class LaminarProfile:
    """Six layers from pia (I) to white matter (VI): thickness fractions, cell density, cell size."""

    fraction: np.ndarray  # (6,) sums to 1
    density: np.ndarray  # (6,) relative cell density
    size_um: np.ndarray  # (6,) mean cell-body diameter
    thickness_mm: float  # cortical thickness in template mm
    blur: float = 0.03  # width of layer transitions as a fraction of depth


#: the laminar profiles of the areas named after real ones, in place of the smooth random field's:
#: ``name: (fraction, density, size_um, thickness_mm, blur)`` as in :class:`LaminarProfile`
#: (``fraction`` before it is normalised to sum 1)
NAMED_PROFILES: dict[
    str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], float, float]
] = {
    "hOc1": (
        (0.10, 0.07, 0.18, 0.33, 0.14, 0.18),
        (0.10, 1.20, 0.75, 1.45, 0.35, 0.80),
        (7.0, 8.0, 11.0, 7.0, 18.0, 11.0),
        2.0,
        0.03,
    ),
    "hOc2": (
        (0.10, 0.08, 0.26, 0.16, 0.18, 0.22),
        (0.12, 1.10, 0.70, 1.15, 0.40, 0.70),
        (7.0, 9.0, 13.0, 8.0, 18.0, 12.0),
        2.2,
        0.03,
    ),
    "4p": (
        (0.08, 0.05, 0.32, 0.01, 0.32, 0.22),
        (0.10, 0.60, 0.45, 0.30, 0.40, 0.55),
        (8.0, 11.0, 20.0, 10.0, 42.0, 15.0),
        3.6,
        0.03,
    ),
    "p24a": (
        (0.12, 0.06, 0.28, 0.02, 0.30, 0.22),
        (0.15, 0.70, 0.60, 0.55, 0.75, 0.70),
        (8.0, 12.0, 15.0, 10.0, 17.0, 14.0),
        2.8,
        0.12,
    ),
}


@dataclass(frozen=True)
class AreaLayout:
    """Areas (ids 1..K), the template vertex -> area index map and the profiles."""

    areas: list[Area]
    vertex_area: np.ndarray  # (N,) area id per conte69 vertex (0 = medial wall); both hemispheres
    profiles: dict[int, LaminarProfile]
    centroids_mm: dict[int, np.ndarray]  # left-hemisphere centroid per area id


def vertex_neighbours(faces: np.ndarray, num_vertices: int) -> list[np.ndarray]:
    """Adjacency lists of a triangle mesh."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    edges = np.unique(edges, axis=0)
    splits = np.searchsorted(edges[:, 0], np.arange(num_vertices + 1))
    return [edges[splits[i] : splits[i + 1], 1] for i in range(num_vertices)]


def _merge_parcels(parcels: np.ndarray, faces: np.ndarray, num_areas: int, rng) -> np.ndarray:
    """Merge neighbouring parcels (size-proportional picks) until ``num_areas`` remain."""
    ids = np.unique(parcels[parcels > 0])
    parent = {int(p): int(p) for p in ids}
    size = {int(p): int((parcels == p).sum()) for p in ids}
    a, b = parcels[faces[:, 0]], parcels[faces[:, 1]]
    c = parcels[faces[:, 2]]
    pairs = np.concatenate([np.stack([a, b], 1), np.stack([b, c], 1), np.stack([c, a], 1)])
    pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs > 0).all(1)]
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)

    def root(p: int) -> int:
        while parent[p] != p:
            p = parent[p]
        return p

    while len({root(p) for p in parent}) > num_areas:
        roots = sorted({root(p) for p in parent})
        weights = np.array([size[r] for r in roots], dtype=np.float64) ** 1.5
        pick = roots[rng.choice(len(roots), p=weights / weights.sum())]
        neighbours = sorted(
            {root(int(q)) for p, q in pairs if root(int(p)) == pick}
            | {root(int(p)) for p, q in pairs if root(int(q)) == pick}
        )
        neighbours = [n for n in neighbours if n != pick]
        if not neighbours:
            continue
        other = neighbours[rng.integers(len(neighbours))]
        parent[other] = pick
        size[pick] += size[other]
    out = np.zeros_like(parcels)
    for p in ids:
        out[parcels == p] = root(int(p))
    return out


def _lobe(centroid: np.ndarray) -> str:
    x, y, z = centroid
    if abs(x) < 18 and z > -12 and -40 < y < 45 and z < 45:
        return "Lim"
    if abs(x) > 28 and abs(x) < 42 and -30 < y < 20 and -12 < z < 18:
        return "Ins"
    if y < -68:
        return "Occ"
    if z < 2 and y < 12 and abs(x) > 25:
        return "Tem"
    if y < -22:
        return "Par"
    return "Fro"


def _smooth_fields(points: np.ndarray, count: int, rng, scale: float = 1.0 / 60.0) -> np.ndarray:
    """``count`` smooth random functions of 3D points (random Fourier features), values ~ N(0, 1)."""
    out = np.zeros((count, len(points)))
    for k in range(count):
        for _ in range(4):
            w = rng.normal(size=3) * scale
            out[k] += np.sin(points @ w + rng.uniform(0, 2 * np.pi))
        out[k] /= np.sqrt(2.0)
    return out


def _colour(k: int, total: int, rng) -> str:
    import colorsys

    hue = (k * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.55 + 0.4 * rng.random(), 0.65 + 0.3 * rng.random())
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def build_area_layout(
    surface: Surface, num_areas: int = NUM_AREAS, area_seed: int = AREA_LAYOUT_SEED
) -> AreaLayout:
    """Areas, names, colours and laminar profiles from the left hemisphere's Schaefer parcels.

    Parameters
    ----------
    surface : the left-hemisphere :class:`~cortexgraph.synth.resources.Surface`.
    num_areas : number of areas after merging.
    area_seed : seed of the merging, the colours and the profiles (the four landmark areas keep
        their names and profiles under every seed; their extent changes with the merging).

    Returns
    -------
    :class:`AreaLayout` with area ids 1..num_areas ordered posterior -> anterior by centroid.
    """
    rng = np.random.default_rng(int(area_seed))
    parcels = np.where(surface.cortex, surface.parcels, 0)
    # medial-mask vertices the parcellation left empty take their nearest parcel's label
    if np.any(surface.cortex & (surface.parcels == 0)):
        from scipy.spatial import cKDTree

        have = np.flatnonzero(parcels > 0)
        need = np.flatnonzero(surface.cortex & (parcels == 0))
        _, nearest = cKDTree(surface.vertices_mm[have]).query(surface.vertices_mm[need])
        parcels[need] = parcels[have[nearest]]
    merged = _merge_parcels(parcels, surface.faces, num_areas, rng)
    roots = [r for r in np.unique(merged) if r > 0]
    centroids = {r: surface.vertices_mm[merged == r].mean(0) for r in roots}
    order = sorted(roots, key=lambda r: (centroids[r][1], centroids[r][2]))
    vertex_area = np.zeros(len(merged), dtype=np.int64)
    for new_id, r in enumerate(order, start=1):
        vertex_area[merged == r] = new_id
    centroid_by_id = {i: centroids[r] for i, r in enumerate(order, start=1)}

    # names: lobe prefix + running number; landmark areas get seed names
    names: dict[int, str] = {}
    special: dict[str, int] = {}
    for name, point in LANDMARKS.items():
        nearest = int(np.argmin(np.linalg.norm(surface.vertices_mm - np.asarray(point), axis=1)))
        area_id = int(vertex_area[nearest])
        if area_id > 0 and area_id not in names:
            names[area_id] = name
            special[name] = area_id
    if "hOc1" in special:  # hOc2: the neighbour of hOc1 sharing the longest border
        hoc1 = special["hOc1"]
        a, b = vertex_area[surface.faces[:, 0]], vertex_area[surface.faces[:, 1]]
        touching = np.concatenate([b[a == hoc1], a[b == hoc1]])
        touching = touching[(touching > 0) & (touching != hoc1)]
        candidates = [t for t in touching if int(t) not in names]
        if candidates:
            values, counts = np.unique(candidates, return_counts=True)
            names[int(values[np.argmax(counts)])] = "hOc2"
            special["hOc2"] = int(values[np.argmax(counts)])
    counters: dict[str, int] = {}
    for area_id in range(1, num_areas + 1):
        if area_id in names:
            continue
        lobe = _lobe(centroid_by_id[area_id])
        counters[lobe] = counters.get(lobe, 0) + 1
        names[area_id] = f"{lobe}{counters[lobe]}"
    areas = [Area(i, names[i], _colour(i, num_areas, rng)) for i in range(1, num_areas + 1)]

    # laminar profiles: smooth in space around the generic profile, small jitter, special areas
    points = np.array([centroid_by_id[i] for i in range(1, num_areas + 1)])
    fields = _smooth_fields(points, 19, rng)
    profiles = {}
    for k, area_id in enumerate(range(1, num_areas + 1)):
        f = fields[:, k]
        fraction = BASE_FRACTION * np.exp(0.3 * f[0:6] + JITTER * rng.normal(size=6))
        density = BASE_DENSITY * np.exp(0.3 * f[6:12] + JITTER * rng.normal(size=6))
        size = BASE_SIZE_UM * np.exp(0.25 * f[12:18] + JITTER * rng.normal(size=6))
        thickness = BASE_THICKNESS_MM * float(np.exp(0.12 * f[18]))
        blur = 0.03
        named = NAMED_PROFILES.get(names[area_id])
        if named is not None:  # drawn all the same: the random stream stays the same
            fraction, density, size = (np.array(v) for v in named[:3])
            thickness, blur = named[3:]
        profiles[area_id] = LaminarProfile(
            fraction=fraction / fraction.sum(),
            density=density,
            size_um=size,
            thickness_mm=float(thickness),
            blur=blur,
        )
    return AreaLayout(
        areas=areas, vertex_area=vertex_area, profiles=profiles, centroids_mm=centroid_by_id
    )


def brain_profiles(
    profiles: dict[int, LaminarProfile], rng: np.random.Generator, variability: float
) -> dict[int, LaminarProfile]:
    """One brain's laminar profiles: inter-individual variation around the area's profile.

    Every layer's thickness fraction, cell density and cell size is multiplied by
    ``exp(variability * z)`` with an independent standard normal ``z`` per brain, area, layer and
    quantity (fractions renormalised to sum 1); cortical thickness is left alone (it shapes the
    brain's geometry, which :mod:`cortexgraph.synth.deform` varies). ``variability`` 0 returns the
    profiles unchanged; 0.1 is a 10 % log-normal spread, about what two brains differ by in one
    area's laminar densities.
    """
    if variability <= 0:
        return dict(profiles)
    out = {}
    for area_id in sorted(profiles):
        profile = profiles[area_id]
        fraction = profile.fraction * np.exp(variability * rng.normal(size=6))
        out[area_id] = LaminarProfile(
            fraction=fraction / fraction.sum(),
            density=profile.density * np.exp(variability * rng.normal(size=6)),
            size_um=profile.size_um * np.exp(variability * rng.normal(size=6)),
            thickness_mm=profile.thickness_mm,
            blur=profile.blur,
        )
    return out


def transition_widths_mm(
    num_areas: int, transition_mm: float, area_seed: int = AREA_LAYOUT_SEED
) -> np.ndarray:
    """Width (mm, 10 %-90 % of the change of the laminar pattern) of the transition zone at the
    borders of each area: ``transition_mm`` times a factor drawn uniformly in [0.5, 1.5] per area
    from the area seed. Index 0 (no area) is 0. A border between areas ``a`` and ``b`` changes over
    about the mean of their two widths."""
    widths = np.zeros(num_areas + 1)
    if transition_mm > 0:
        rng = np.random.default_rng([int(area_seed), 17])
        widths[1:] = transition_mm * rng.uniform(0.5, 1.5, size=num_areas)
    return widths


def depth_profiles(profiles: dict[int, LaminarProfile], num_ids: int, bins: int = 64) -> dict:
    """Tabulate density and cell size as functions of cortical depth for every area.

    Returns ``{"density": (num_ids + 1, bins), "size_um": (num_ids + 1, bins)}`` indexed by area id
    (row 0 = unlabelled cortex, the mean profile) and depth bin (0 = pia, bins - 1 = white matter);
    layer transitions are smoothed over the profile's ``blur`` (a fraction of the depth).
    """
    from scipy.ndimage import gaussian_filter1d

    centres = (np.arange(bins) + 0.5) / bins
    density = np.zeros((num_ids + 1, bins), dtype=np.float32)
    size = np.zeros((num_ids + 1, bins), dtype=np.float32)
    for area_id, profile in profiles.items():
        edges = np.cumsum(profile.fraction)
        layer = np.minimum(np.searchsorted(edges, centres), 5)
        sigma = max(profile.blur * bins, 0.5)
        density[area_id] = gaussian_filter1d(profile.density[layer], sigma, mode="nearest")
        size[area_id] = gaussian_filter1d(profile.size_um[layer], sigma, mode="nearest")
    density[0] = density[1:].mean(0)
    size[0] = size[1:].mean(0)
    return {"density": density, "size_um": size}
