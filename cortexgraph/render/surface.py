"""Off-screen pictures of a coloured surface mesh in the standard views (no display needed).

Two back ends with the same API (:class:`SurfaceRenderer`, :func:`render_surface`):

* ``"vtk"``: VTK's off-screen OpenGL render window. Without an X display cortexgraph asks VTK for
  its EGL window (``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``, unless the variable is already
  set); VTK 9.4+ wheels also know OSMesa when ``libOSMesa`` is installed. Gouraud shading with the
  camera's head light, per-vertex colours, parallel projection, no multisampling (deterministic
  pixels).
* ``"matplotlib"``: a fallback for machines where VTK cannot open an OpenGL context: the triangles
  are projected orthographically, sorted back to front (painter's algorithm) and drawn as a
  flat-shaded ``PolyCollection`` (face colour = mean of its vertex colours, Lambert factor from the
  face normal and the view direction). Slower, and the painter's algorithm can misorder interleaved
  triangles in deep folds, but it needs nothing beyond matplotlib.

``backend="auto"`` (default; or ``$CORTEXGRAPH_RENDER_BACKEND``) uses VTK when a probe in a child
process renders a non-blank test picture (a crashing OpenGL driver cannot take the caller down),
else matplotlib; the answer is cached per process (:func:`offscreen_backend`).

Views (:data:`VIEWS`), in world mm RAS (docs/conventions.md): ``lateral`` / ``medial`` look at the
hemisphere from outside / from the midline (camera at -x / +x for ``lh``, mirrored for ``rh``),
``dorsal`` from above (+z), ``ventral`` from below, ``anterior`` from the front (+y), ``posterior``
from behind. Screen "up" is +z, except dorsal and ventral where it is anterior (+y).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

VIEWS = ("lateral", "medial", "dorsal", "ventral", "anterior", "posterior")
BACKENDS = ("auto", "vtk", "matplotlib")
BACKGROUND_RGB = (255, 255, 255)

__all__ = [
    "VIEWS",
    "BACKENDS",
    "view_camera",
    "screen_directions",
    "encode_ids",
    "decode_ids",
    "offscreen_backend",
    "SurfaceRenderer",
    "render_surface",
]


def view_camera(view: str, hemi: str = "lh") -> tuple[np.ndarray, np.ndarray]:
    """(unit vector from the mesh towards the camera, screen-up vector) of a standard view."""
    side = -1.0 if hemi == "lh" else 1.0  # the lateral side of the hemisphere along x
    table = {
        "lateral": ((side, 0.0, 0.0), (0.0, 0.0, 1.0)),
        "medial": ((-side, 0.0, 0.0), (0.0, 0.0, 1.0)),
        "dorsal": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
        "ventral": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
        "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
        "posterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    }
    if view not in table:
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    direction, up = table[view]
    return np.array(direction), np.array(up)


_LETTERS = {(0, 1): "R", (0, -1): "L", (1, 1): "A", (1, -1): "P", (2, 1): "S", (2, -1): "I"}


def _letter(vector: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(vector)))
    return _LETTERS[(axis, 1 if vector[axis] > 0 else -1)]


def screen_directions(view: str, hemi: str = "lh") -> tuple[str, str]:
    """Anatomical directions (R L A P S I, world RAS) of screen right and screen up in a view, e.g.
    ``("P", "S")`` for the lateral view of a left hemisphere (anterior to the left)."""
    direction, up = view_camera(view, hemi)
    right, screen_up = _screen_axes(direction, up)
    return _letter(right), _letter(screen_up)


def encode_ids(ids: np.ndarray) -> np.ndarray:
    """uint8 (N, 3) colours that carry integer ids 0..65534 exactly through an unshaded rendering:
    R, G = the id + 1 in base 256, B = a check value, so pixels where the renderer blends two ids
    (borders, where vertex colours are interpolated) decode as -1 (:func:`decode_ids`)."""
    value = np.asarray(ids, dtype=np.int64) + 1
    if value.size and (value.min() < 1 or value.max() > 65535):
        raise ValueError("ids must lie in 0..65534")
    return np.stack([value % 256, value // 256, (value * 151 + 77) % 256], axis=-1).astype(np.uint8)


def decode_ids(picture: np.ndarray, num_ids: int) -> np.ndarray:
    """int64 (H, W) ids of a picture of :func:`encode_ids` colours; -1 = background, blends, ids
    outside 0..num_ids-1."""
    rgb = np.asarray(picture, dtype=np.int64)
    value = rgb[..., 0] + 256 * rgb[..., 1]
    ok = (rgb[..., 2] == (value * 151 + 77) % 256) & (value >= 1) & (value <= num_ids)
    return np.where(ok, value - 1, -1)


def _screen_axes(direction: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, up) unit vectors of the screen for a camera looking along ``-direction``."""
    right = np.cross(up, direction)
    right /= np.linalg.norm(right)
    return right, np.cross(direction, right)


def _fit(vertices: np.ndarray, direction: np.ndarray, up: np.ndarray, aspect: float, margin=1.04):
    """Centre (world) and half height (mm) of a parallel view that fits the mesh on the screen."""
    right, screen_up = _screen_axes(direction, up)
    u, v = vertices @ right, vertices @ screen_up
    cu, cv = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2
    half_h = max((v.max() - v.min()) / 2, (u.max() - u.min()) / 2 / aspect) * margin
    mean = vertices.mean(axis=0)
    depth = mean @ direction
    centre = cu * right + cv * screen_up + depth * direction
    return centre, max(half_h, 1e-6)


# -- back end choice -------------------------------------------------------------------------------
def _prepare_vtk_environment() -> None:
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


#: VTK lighting of the mesh, by ``shading``: (ambient, diffuse, specular) weights; without shading
#: the colours show exactly (ambient light only)
_VTK_LIGHT = {True: (0.15, 0.85, 0.05), False: (1.0, 0.0, 0.0)}


def _vtk_new(vtk_class: Callable[[], Any], *calls: tuple) -> Any:
    """A new VTK object ``vtk_class()`` after its method calls, in order: each of ``calls`` is
    ``(method name, *arguments)``. Returns the object."""
    made = vtk_class()
    for name, *arguments in calls:
        getattr(made, name)(*arguments)
    return made


_PROBE = """
import numpy as np
from cortexgraph.render.surface import SurfaceRenderer
v = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1.0]])
with SurfaceRenderer(v, np.array([[0, 1, 2]]), size_px=(32, 32), backend="vtk") as r:
    img = r.render(np.array([[255, 0, 0]] * 3, np.uint8), "anterior", shading=False)
print("OK" if (img[..., 1] < 50).sum() > 20 else "BLANK")
"""


@functools.cache
def offscreen_backend() -> str:
    """``"vtk"`` when VTK renders off screen here (probed once in a child process), else
    ``"matplotlib"``. ``$CORTEXGRAPH_RENDER_BACKEND`` (vtk / matplotlib) overrides the probe."""
    forced = os.environ.get("CORTEXGRAPH_RENDER_BACKEND", "").strip().lower()
    if forced in ("vtk", "matplotlib"):
        return forced
    _prepare_vtk_environment()
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, CORTEXGRAPH_RENDER_BACKEND="vtk"),
        )
        return "vtk" if result.returncode == 0 and "OK" in result.stdout else "matplotlib"
    except (OSError, subprocess.SubprocessError):
        return "matplotlib"


# -- renderer --------------------------------------------------------------------------------------
class SurfaceRenderer:
    """Renders one mesh many times (several colourings, several views) with one off-screen window.

    Parameters
    ----------
    vertices : (N, 3) world mm.
    faces : (M, 3) int triangles.
    hemi : ``lh`` or ``rh`` (decides which side is lateral).
    size_px : (width, height) of each picture.
    backend : ``auto``, ``vtk`` or ``matplotlib`` (module docstring).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        *,
        hemi: str = "lh",
        size_px: tuple[int, int] = (480, 400),
        backend: str = "auto",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        self.hemi = hemi
        self.size_px = (int(size_px[0]), int(size_px[1]))
        self.backend = offscreen_backend() if backend == "auto" else backend
        self._vtk: dict[str, Any] | None = None

    def __enter__(self) -> SurfaceRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._vtk is not None:
            self._vtk["window"].Finalize()
            self._vtk = None

    def render(self, rgb: np.ndarray, view: str, *, shading: bool = True) -> np.ndarray:
        """Picture (uint8 (height, width, 3)) of the mesh with per-vertex colours ``rgb`` (N, 3).

        ``shading=False`` shows the colours exactly (no lighting), e.g. for tests and legends.
        """
        rgb = np.asarray(rgb)
        if rgb.shape != (len(self.vertices), 3):
            raise ValueError(f"rgb must have shape ({len(self.vertices)}, 3), got {rgb.shape}")
        if rgb.dtype != np.uint8:
            rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
        direction, up = view_camera(view, self.hemi)
        if self.backend == "vtk":
            return self._render_vtk(rgb, direction, up, shading)
        return self._render_matplotlib(rgb, direction, up, shading)

    def mm_per_px(self, view: str) -> float:
        """Millimetres per pixel of a view (parallel projection: the same everywhere on screen)."""
        direction, up = view_camera(view, self.hemi)
        width, height = self.size_px
        _, half_height = _fit(self.vertices, direction, up, width / height)
        return 2.0 * half_height / height

    def render_ids(self, ids: np.ndarray, view: str) -> np.ndarray:
        """int64 (height, width): the id (N,) of the vertex region seen at each pixel, -1 for the
        background, for ids < 0 and along borders between ids (:func:`encode_ids`)."""
        ids = np.asarray(ids, dtype=np.int64)
        top = int(ids.max(initial=-1)) + 1
        coded = encode_ids(np.where(ids >= 0, ids, top))
        picture = self.render(coded, view, shading=False)
        decoded = decode_ids(picture, top + 1)
        return np.where(decoded == top, -1, decoded)

    def render_views(
        self, rgb: np.ndarray, views=VIEWS, *, shading: bool = True
    ) -> dict[str, np.ndarray]:
        """``{view: picture}`` for several views."""
        return {view: self.render(rgb, view, shading=shading) for view in views}

    # -- VTK ---------------------------------------------------------------------------------------
    def _setup_vtk(self) -> dict:
        _prepare_vtk_environment()
        import vtk
        from vtk.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray

        points = vtk.vtkPoints()
        points.SetData(numpy_to_vtk(np.ascontiguousarray(self.vertices), deep=True))
        cells = vtk.vtkCellArray()
        offsets = np.arange(0, 3 * len(self.faces) + 1, 3, dtype=np.int64)
        cells.SetData(
            numpy_to_vtkIdTypeArray(offsets, deep=True),
            numpy_to_vtkIdTypeArray(np.ascontiguousarray(self.faces.ravel()), deep=True),
        )
        poly = _vtk_new(vtk.vtkPolyData, ("SetPoints", points), ("SetPolys", cells))
        normals = _vtk_new(
            vtk.vtkPolyDataNormals,
            ("SetInputData", poly),
            ("SplittingOff",),
            ("ComputePointNormalsOn",),
            ("Update",),
        )
        surface = normals.GetOutput()
        mapper = _vtk_new(
            vtk.vtkPolyDataMapper,
            ("SetInputData", surface),
            ("SetColorModeToDirectScalars",),
            ("SetScalarModeToUsePointData",),
            ("ScalarVisibilityOn",),
        )
        actor = _vtk_new(vtk.vtkActor, ("SetMapper", mapper))
        renderer = _vtk_new(
            vtk.vtkRenderer,
            ("AddActor", actor),
            ("SetBackground", *(c / 255.0 for c in BACKGROUND_RGB)),
            ("TwoSidedLightingOn",),
        )
        window = _vtk_new(
            vtk.vtkRenderWindow,
            ("SetOffScreenRendering", 1),
            ("SetMultiSamples", 0),
            ("SetSize", *self.size_px),
            ("AddRenderer", renderer),
        )
        grabber = _vtk_new(
            vtk.vtkWindowToImageFilter,
            ("SetInput", window),
            ("SetInputBufferTypeToRGB",),
            ("ReadFrontBufferOff",),
        )
        return {
            "vtk": vtk,
            "numpy_to_vtk": numpy_to_vtk,
            "surface": surface,
            "mapper": mapper,
            "actor": actor,
            "renderer": renderer,
            "window": window,
            "grabber": grabber,
        }

    def _render_vtk(self, rgb, direction, up, shading) -> np.ndarray:
        from vtk.util.numpy_support import vtk_to_numpy

        if self._vtk is None:
            self._vtk = self._setup_vtk()
        state = self._vtk
        colours = state["numpy_to_vtk"](np.ascontiguousarray(rgb), deep=True)
        colours.SetName("rgb")
        state["surface"].GetPointData().SetScalars(colours)
        state["surface"].Modified()
        prop = state["actor"].GetProperty()
        ambient, diffuse, specular = _VTK_LIGHT[shading]
        prop.SetLighting(shading)
        prop.SetAmbient(ambient)
        prop.SetDiffuse(diffuse)
        prop.SetSpecular(specular)
        width, height = self.size_px
        centre, half_height = _fit(self.vertices, direction, up, width / height)
        extent = np.ptp(self.vertices, axis=0).max() + 1.0
        camera = state["renderer"].GetActiveCamera()
        camera.ParallelProjectionOn()
        camera.SetFocalPoint(*centre)
        camera.SetPosition(*(centre + direction * 4.0 * extent))
        camera.SetViewUp(*up)
        camera.SetParallelScale(half_height)
        state["renderer"].ResetCameraClippingRange()
        state["window"].Render()
        grabber = state["grabber"]
        grabber.Modified()
        grabber.Update()
        output = grabber.GetOutput()
        w, h, _ = output.GetDimensions()
        pixels = vtk_to_numpy(output.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3]
        return np.ascontiguousarray(pixels, dtype=np.uint8)

    # -- matplotlib --------------------------------------------------------------------------------
    def _render_matplotlib(self, rgb, direction, up, shading) -> np.ndarray:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure

        width, height = self.size_px
        right, screen_up = _screen_axes(direction, up)
        centre, half_height = _fit(self.vertices, direction, up, width / height)
        u = (self.vertices - centre) @ right
        v = (self.vertices - centre) @ screen_up
        depth = self.vertices @ direction  # larger = nearer to the camera
        tri = self.vertices[self.faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(normal, axis=1)
        keep = norm > 0
        face_rgb = rgb[self.faces].astype(np.float64).mean(axis=1) / 255.0
        if shading:
            lambert = np.abs(normal @ direction) / np.maximum(norm, 1e-12)
            face_rgb = face_rgb * (0.15 + 0.85 * lambert)[:, None]
        order = np.argsort(depth[self.faces].mean(axis=1), kind="stable")
        order = order[keep[order]]
        polygons = np.stack([u[self.faces[order]], v[self.faces[order]]], axis=-1)
        colours = np.clip(face_rgb[order], 0.0, 1.0)
        fig = Figure(figsize=(width / 100.0, height / 100.0), dpi=100)
        fig.patch.set_facecolor(
            (BACKGROUND_RGB[0] / 255.0, BACKGROUND_RGB[1] / 255.0, BACKGROUND_RGB[2] / 255.0)
        )
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.add_collection(
            PolyCollection(
                polygons,  # type: ignore[arg-type]  # an (N, 3, 2) array: matplotlib's fast path
                facecolors=colours,
                edgecolors=colours,
                linewidths=0.25,
                antialiased=False,
            )
        )
        half_width = half_height * width / height
        ax.set_xlim(-half_width, half_width)
        ax.set_ylim(-half_height, half_height)
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3]
        return np.ascontiguousarray(pixels, dtype=np.uint8)


def render_surface(
    vertices: np.ndarray,
    faces: np.ndarray,
    rgb: np.ndarray,
    view: str = "lateral",
    *,
    hemi: str = "lh",
    size_px: tuple[int, int] = (480, 400),
    shading: bool = True,
    backend: str = "auto",
) -> np.ndarray:
    """One picture (uint8 (height, width, 3)) of a mesh with per-vertex colours (N, 3) uint8."""
    with SurfaceRenderer(vertices, faces, hemi=hemi, size_px=size_px, backend=backend) as renderer:
        return renderer.render(rgb, view, shading=shading)
