"""Cell-level texture of the phantom (``Preset.cell_texture``): cells are drawn with the density of
the laminar profile, it is refused at coarse spacings, and it changes nothing when off."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cortexgraph.errors import ParameterError
from cortexgraph.synth.areas import NAMED_PROFILES, LaminarProfile, depth_profiles
from cortexgraph.synth.cells import (
    CELL_TEXTURE_MAX_SPACING_UM,
    CELLS_PER_MM2,
    cell_kind,
    cell_layer,
    check_spacing,
)
from cortexgraph.synth.render import SectionSample, render_image, render_image_reference

SPACING_UM = 2.0


def _hoc1_patch(width_um: float = 600.0, thickness_um: float = 2000.0):
    """A straight strip of hOc1 cortex (its hand-set profile), depth 0 (pia, top row) to 1."""
    fraction, density, size, thickness, blur = NAMED_PROFILES["hOc1"]
    fraction_arr = np.array(fraction) / sum(fraction)
    profile = LaminarProfile(
        fraction=fraction_arr, density=np.array(density), size_um=np.array(size),
        thickness_mm=thickness, blur=blur,
    )  # fmt: skip
    luts = depth_profiles({1: profile}, 1)
    rows, cols = int(thickness_um / SPACING_UM), int(width_um / SPACING_UM)
    depth = ((np.arange(rows) + 0.5) / rows).astype(np.float32)[:, None].repeat(cols, 1)
    sample = SectionSample(
        tissue=np.full((rows, cols), 2, np.uint8), area=np.ones((rows, cols), np.uint16),
        depth=depth, template_mm=None,
    )  # fmt: skip
    edges = np.concatenate([[0.0], np.cumsum(fraction_arr)])
    return sample, luts, edges, np.array(density)


def _render(sample, luts, seed: int, cells: bool) -> np.ndarray:
    none = np.zeros(sample.tissue.shape, dtype=bool)
    cell_rng = np.random.default_rng(1000 + seed) if cells else None
    rng = np.random.default_rng(seed)
    return render_image(sample, luts, SPACING_UM, rng, 1.0, 1.0, none, none, cell_rng=cell_rng)


def _layer_rows(edges: np.ndarray, layer: int, rows: int, margin: float = 0.03) -> slice:
    """Rows of a layer (index 0 = I) less ``margin`` of the depth at both ends (the profile's blur)."""
    return slice(int((edges[layer] + margin) * rows), int((edges[layer + 1] - margin) * rows))


def test_drawn_cells_have_the_profile_density():
    """Cells drawn per layer (cell_layer's count) match CELLS_PER_MM2 times the profile's density
    (its mean over the band: the layers' transitions are blurred) within 8 % in layers III, IV, V
    and VI of hOc1 (3 mm wide strip: 1000-8000 cells a layer, Bernoulli
    draws of s.d. 1-3 %)."""
    sample, luts, edges, _ = _hoc1_patch(width_um=3000.0)
    rows, cols = sample.tissue.shape
    kind = cell_kind(sample.tissue, sample.depth)
    lut_density = luts["density"][1][np.minimum((sample.depth * 64).astype(int), 63)]
    lut_size = luts["size_um"][1][np.minimum((sample.depth * 64).astype(int), 63)]
    smooth = np.full(sample.tissue.shape, 0.5, np.float32)
    for layer in (2, 3, 4, 5):
        band = _layer_rows(edges, layer, rows)
        _, count = cell_layer(
            np.random.default_rng(layer), kind[band], sample.depth[band], lut_density[band],
            lut_size[band], smooth[band], SPACING_UM,
        )  # fmt: skip
        area_mm2 = (band.stop - band.start) * cols * (SPACING_UM / 1000) ** 2
        expected = CELLS_PER_MM2 * float(lut_density[band].mean())
        assert count / area_mm2 == pytest.approx(expected, rel=0.08)


@pytest.mark.parametrize("seed", [0, 1])
def test_detected_blob_density_differs_between_layers_as_specified(seed):
    """On the rendered image (2 µm pixels, 1 mm wide strip) Laplacian-of-Gaussian blobs are counted
    per layer: layer IV (granular, 1.45 -> 4320 cells/mm² in the band, 7 µm) and layer V (0.35 ->
    1280 in the band, 18 µm, elongated). Touching cells merge, so blob_log finds 65-85 % of the specified
    density (seeds 0-5: IV 0.81-0.84, V 0.65-0.73): each layer's detected density is 0.55-1.0 times
    the specified one (the profile's mean over the band), and the IV / V ratio of the detected
    densities is within 35 % of the specified one (measured 1.14-1.28 times)."""
    from skimage.feature import blob_log

    sample, luts, edges, _ = _hoc1_patch(width_um=1000.0)
    image = _render(sample, luts, seed, cells=True)
    rows, cols = image.shape
    blobs = blob_log(
        (255 - image.astype(np.float64)) / 255, min_sigma=1, max_sigma=6, threshold=0.05
    )
    lut_density = luts["density"][1][np.minimum((sample.depth * 64).astype(int), 63)]
    found, specified = {}, {}
    for layer in (3, 4):
        band = _layer_rows(edges, layer, rows)
        inside = (blobs[:, 0] >= band.start) & (blobs[:, 0] < band.stop)
        area_mm2 = (band.stop - band.start) * cols * (SPACING_UM / 1000) ** 2
        found[layer] = inside.sum() / area_mm2
        specified[layer] = CELLS_PER_MM2 * float(lut_density[band].mean())
        assert 0.55 * specified[layer] <= found[layer] <= specified[layer]
    assert found[3] / found[4] == pytest.approx(specified[3] / specified[4], rel=0.35)
    assert specified[3] / specified[4] > 3  # the layers do differ as in the profile (1.45 / 0.35)


def test_cell_texture_keeps_the_mean_optical_density():
    """Averaged over a layer the cells plus neuropil have the smooth model's optical density (within
    15 %: the size jitter adds ~8 %, the peak clip removes some in the densest layer)."""
    sample, luts, edges, _ = _hoc1_patch()
    rows = sample.tissue.shape[0]
    kind = cell_kind(sample.tissue, sample.depth)
    index = np.minimum((sample.depth * 64).astype(int), 63)
    d, s = luts["density"][1][index], luts["size_um"][1][index]
    smooth = (0.9 * d * np.sqrt(s / 14.0)).astype(np.float32)
    od, _ = cell_layer(np.random.default_rng(3), kind, sample.depth, d, s, smooth, SPACING_UM)
    for layer in (2, 3, 4, 5):
        band = _layer_rows(edges, layer, rows)
        assert od[band].mean() == pytest.approx(smooth[band].mean(), rel=0.15)


def test_cells_are_deterministic_and_off_by_default():
    sample, luts, _, _ = _hoc1_patch(width_um=200.0, thickness_um=400.0)
    first, again = _render(sample, luts, 0, True), _render(sample, luts, 0, True)
    np.testing.assert_array_equal(first, again)
    off = _render(sample, luts, 0, False)
    none = np.zeros(sample.tissue.shape, dtype=bool)
    reference = render_image_reference(
        sample, luts, SPACING_UM, np.random.default_rng(0), 1.0, 1.0, none, none
    )
    np.testing.assert_array_equal(off, reference)  # no cell_rng: the smooth model, unchanged
    assert np.abs(first.astype(int) - off.astype(int)).mean() > 10


def test_coarse_spacing_is_refused():
    check_spacing(CELL_TEXTURE_MAX_SPACING_UM)
    with pytest.raises(ParameterError, match="image_spacing_um"):
        check_spacing(8.0)
    sample, luts, _, _ = _hoc1_patch(width_um=200.0, thickness_um=400.0)
    none = np.zeros(sample.tissue.shape, dtype=bool)
    rng = np.random.default_rng(0)
    with pytest.raises(ParameterError, match="do not resolve cell bodies"):
        render_image(sample, luts, 10.0, rng, 1.0, 1.0, none, none, cell_rng=rng)


def test_parameters_take_cell_texture_only_at_fine_spacing():
    from cortexgraph.synth.parameters import SynthParameters

    assert SynthParameters(preset="tiny").preset_spec().cell_texture is False
    with pytest.raises(ParameterError, match="image_spacing_um"):
        SynthParameters(preset="tiny", cell_texture=True)
    spec = SynthParameters(preset="tiny", cell_texture=True, image_spacing_um=2.0).preset_spec()
    assert spec.cell_texture and spec.image_spacing_um == 2.0
    with pytest.raises(ParameterError, match="true or false"):
        SynthParameters(preset="tiny", cell_texture=1)  # type: ignore[arg-type]


def test_synth_json_records_cell_texture_only_when_on():
    from dataclasses import replace

    from cortexgraph.outputs import _json_default
    from cortexgraph.synth.cohort import synth_description
    from cortexgraph.synth.presets import get_preset

    off = synth_description(get_preset("tiny"), ["B01", "B07"], 0)
    assert "cell_texture" not in off["parameters"]
    on_spec = replace(get_preset("tiny"), cell_texture=True, image_spacing_um=2.0)
    on = json.loads(json.dumps(synth_description(on_spec, ["B01"], 0), default=_json_default))
    assert on["parameters"]["cell_texture"] is True
