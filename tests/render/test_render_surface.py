"""Off-screen surface pictures (cortexgraph.render.surface): not blank, the expected colours, the
expected side of the screen, with both back ends."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.data.colors import colour_classes
from cortexgraph.data.manifest import Area, AreaTable
from cortexgraph.render.surface import (
    BACKGROUND_RGB,
    SurfaceRenderer,
    offscreen_backend,
    render_surface,
    view_camera,
)

AREAS = AreaTable([Area(4, "hOc1", "#d62728"), Area(7, "hOc2", "#1f77b4")])
RED, BLUE = np.array([0xD6, 0x27, 0x28]), np.array([0x1F, 0x77, 0xB4])


def plane_mesh(n: int = 21, half_mm: float = 10.0):
    """A square grid in the plane x = 0 (y, z in [-half, half]), two triangles per cell."""
    values = np.linspace(-half_mm, half_mm, n)
    yy, zz = np.meshgrid(values, values, indexing="ij")
    vertices = np.column_stack([np.zeros(n * n), yy.ravel(), zz.ravel()])
    index = np.arange(n * n).reshape(n, n)
    a, b = index[:-1, :-1].ravel(), index[1:, :-1].ravel()
    c, d = index[:-1, 1:].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])])
    return vertices, faces


def two_area_colours(vertices):
    """Class 0 (hOc1, red) where y < 0 (posterior), class 1 (hOc2, blue) elsewhere."""
    classes = np.where(vertices[:, 1] < 0, 0, 1)
    return colour_classes(classes, AREAS)


def _backends():
    return ["matplotlib", "vtk"]


def _skip_without_vtk(backend):
    if backend == "vtk" and offscreen_backend() != "vtk":
        pytest.skip(
            "VTK cannot render off screen on this machine (the matplotlib back end is used)"
        )


@pytest.mark.parametrize("backend", _backends())
def test_picture_is_not_blank_and_shows_both_area_colours(backend):
    _skip_without_vtk(backend)
    vertices, faces = plane_mesh()
    picture = render_surface(
        vertices,
        faces,
        two_area_colours(vertices),
        "lateral",
        hemi="lh",
        size_px=(200, 160),
        shading=False,
        backend=backend,
    )
    assert picture.shape == (160, 200, 3) and picture.dtype == np.uint8
    background = np.all(picture == np.array(BACKGROUND_RGB), axis=-1)
    assert background.mean() < 0.5  # the square fills most of the picture (not blank)
    red = np.all(np.abs(picture.astype(int) - RED) <= 3, axis=-1)
    blue = np.all(np.abs(picture.astype(int) - BLUE) <= 3, axis=-1)
    assert red.sum() > 0.15 * picture.shape[0] * picture.shape[1]
    assert blue.sum() > 0.15 * picture.shape[0] * picture.shape[1]
    # left hemisphere seen from the left: anterior (+y, blue) is on the left of the screen
    cols = np.arange(picture.shape[1])[None, :].repeat(picture.shape[0], 0)
    assert cols[blue].mean() < picture.shape[1] / 2 < cols[red].mean()


@pytest.mark.parametrize("backend", _backends())
def test_shading_keeps_the_hue_and_views_move_the_camera(backend):
    _skip_without_vtk(backend)
    vertices, faces = plane_mesh()
    rgb = two_area_colours(vertices)
    with SurfaceRenderer(vertices, faces, hemi="rh", size_px=(160, 160), backend=backend) as r:
        medial = r.render(rgb, "medial")  # rh medial: camera at -x, like lh lateral
        dorsal = r.render(rgb, "dorsal")  # the plane is seen edge-on from above
    pixels = medial.reshape(-1, 3).astype(int)
    tissue = ~np.all(pixels == np.array(BACKGROUND_RGB), axis=-1)
    reddish = tissue & (pixels[:, 0] > pixels[:, 2] + 40)
    bluish = tissue & (pixels[:, 2] > pixels[:, 0] + 40)
    assert reddish.mean() > 0.2 and bluish.mean() > 0.2
    assert (reddish | bluish)[tissue].mean() > 0.95
    # edge-on, the plane covers a thin line only
    dorsal_tissue = ~np.all(dorsal == np.array(BACKGROUND_RGB), axis=-1)
    assert dorsal_tissue.mean() < 0.1


def test_view_cameras():
    direction, up = view_camera("lateral", "lh")
    np.testing.assert_array_equal(direction, [-1, 0, 0])
    np.testing.assert_array_equal(view_camera("lateral", "rh")[0], [1, 0, 0])
    np.testing.assert_array_equal(view_camera("medial", "lh")[0], [1, 0, 0])
    np.testing.assert_array_equal(view_camera("dorsal", "lh")[1], [0, 1, 0])
    np.testing.assert_array_equal(up, [0, 0, 1])
    with pytest.raises(ValueError):
        view_camera("oblique")


def test_backends_agree_on_the_picture():
    if offscreen_backend() != "vtk":
        pytest.skip("VTK cannot render off screen here")
    vertices, faces = plane_mesh()
    rgb = two_area_colours(vertices)
    pictures = [
        render_surface(
            vertices, faces, rgb, "lateral", size_px=(120, 100), shading=False, backend=b
        )
        for b in ("vtk", "matplotlib")
    ]
    same = np.all(np.abs(pictures[0].astype(int) - pictures[1].astype(int)) <= 3, axis=-1)
    assert same.mean() > 0.9  # same camera, same colours; borders may differ by a pixel
