"""Shared geometry of the projection tests: a synthetic section of known geometry, an annulus of
gray matter (centre C, radii 3 and 5 mm) around white matter, with labelled points on the circle of
radius 4 mm about C. For points on a circle about C the nearest point of any pixel is the one closest
in angle (the Voronoi cells are sectors about C), so every pixel's label is known in closed form."""

from __future__ import annotations

import numpy as np

SPACING_UM = 100.0
CENTRE_MM = (6.0, 6.0)
SIZE_PX = 120  # 12 x 12 mm
N_POINTS = 12
OFFSET_RAD = 0.1  # keeps every pixel centre off the sector borders (no ties)


def annulus(spacing_um: float = SPACING_UM, size_px: int = SIZE_PX):
    """Tissue classes, pixel-centre radius and angle (about CENTRE_MM) of the annulus section."""
    centres = (np.arange(size_px) + 0.5) * spacing_um / 1000.0
    y, x = np.meshgrid(centres, centres, indexing="ij")
    radius = np.hypot(x - CENTRE_MM[0], y - CENTRE_MM[1])
    angle = np.arctan2(y - CENTRE_MM[1], x - CENTRE_MM[0])
    tissue = np.zeros((size_px, size_px), np.uint8)
    tissue[radius <= 5.0] = 2
    tissue[radius < 3.0] = 1
    return tissue, radius, angle


def circle_points(n: int = N_POINTS, radius_mm: float = 4.0) -> np.ndarray:
    theta = OFFSET_RAD + 2 * np.pi * np.arange(n) / n
    return np.column_stack(
        [CENTRE_MM[0] + radius_mm * np.cos(theta), CENTRE_MM[1] + radius_mm * np.sin(theta)]
    )


def sector_of(angle: np.ndarray, n: int = N_POINTS) -> np.ndarray:
    """Index of the point closest in angle."""
    step = 2 * np.pi / n
    return np.mod(np.round((angle - OFFSET_RAD) / step).astype(int), n)
