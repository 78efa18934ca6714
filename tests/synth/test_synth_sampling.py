"""The compiled section sampling and rendering give the bytes of the numpy/scipy reference path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cortexgraph.synth.areas import depth_profiles, transition_widths_mm
from cortexgraph.synth.deform import brain_rng, make_brain
from cortexgraph.synth.presets import PRESETS
from cortexgraph.synth.render import (
    draw_artefacts,
    glass_image,
    raw_axes,
    raw_points,
    render_image,
    render_image_reference,
    sample_section,
    sample_section_reference,
    section_stain,
)
from cortexgraph.synth.sectioning import plan_sections
from cortexgraph.synth.template import build_template


@pytest.fixture(scope="module")
def setup():
    # the tiny preset with distorted sections and transition zones (every branch of the kernels)
    preset = dataclasses.replace(
        PRESETS["tiny"], distortion_scale_sd=0.02, distortion_warp_mm=0.3, transition_mm=1.0
    )
    template = build_template(preset.template_mm)
    brain = make_brain(template, preset, "B07", 0)
    geometry = plan_sections(template, brain, preset, 0)
    luts = depth_profiles(template.layout.profiles, len(template.layout.areas))
    luts["transition_mm"] = transition_widths_mm(len(template.layout.areas), 1.0)
    return preset, template, brain, geometry, luts


def _sections(geometry):
    available = geometry.available
    picks = [available[len(available) // 4], available[len(available) // 2]]
    mirrored = [n for n in available if n in geometry.mirrored]
    return picks + mirrored[:1]


def test_compiled_sampling_equals_the_reference(setup):
    preset, template, brain, geometry, _ = setup
    assert geometry.distortion
    checked_cortex = 0
    for n in _sections(geometry):
        for spacing_um in (preset.image_spacing_um, preset.mask_spacing_um):
            shape = geometry.raster_shape(spacing_um)
            window = (slice(3, shape[0] - 5), slice(7, shape[1] - 2))
            for rows, cols in ((None, None), window):
                new = sample_section(template, brain, geometry, n, spacing_um, rows, cols)
                ref = sample_section_reference(template, brain, geometry, n, spacing_um, rows, cols)
                np.testing.assert_array_equal(new.tissue, ref.tissue)
                np.testing.assert_array_equal(new.area, ref.area)
                np.testing.assert_array_equal(new.depth, ref.depth)  # NaN where NaN
                assert new.template_mm is not None and ref.template_mm is not None
                # BLAS may round the last bit of a matrix product differently
                np.testing.assert_allclose(new.template_mm, ref.template_mm, rtol=0, atol=1e-9)
                checked_cortex += int((ref.area > 0).sum())
            lean = sample_section(template, brain, geometry, n, spacing_um, keep_template_mm=False)
            assert lean.template_mm is None
    assert checked_cortex > 1000  # the comparison covered cortex with areas


def test_compiled_rendering_equals_the_reference(setup):
    preset, template, brain, geometry, luts = setup
    spacing = preset.image_spacing_um
    for n in _sections(geometry):
        sample = sample_section(template, brain, geometry, n, spacing, keep_template_mm=False)
        shape = sample.tissue.shape
        coarse = sample_section(template, brain, geometry, n, preset.mask_spacing_um)
        # many artefacts, so that folds and tears cross the tissue
        artefacts = draw_artefacts(
            brain_rng(0, "B07", 5, n), coarse.tissue, preset.mask_spacing_um, 8.0
        )
        xs, ys = raw_axes(shape, spacing)
        xy = raw_points(shape, spacing)
        removed, folded = artefacts.removed_on_grid(xs, ys), artefacts.folded_on_grid(xs, ys)
        np.testing.assert_array_equal(removed, artefacts.removed(xy))
        np.testing.assert_array_equal(folded, artefacts.folded(xy))
        window = (slice(5, shape[0] - 9), slice(2, shape[1] - 4))
        np.testing.assert_array_equal(
            artefacts.removed_on_grid(*raw_axes(shape, spacing, *window)),
            artefacts.removed(raw_points(shape, spacing, *window)),
        )
        gain, gamma, ramp = section_stain(brain, 0, n, shape[1])
        images = [
            render(sample, luts, spacing, brain_rng(0, "B07", 6, n), gain * ramp[None, :], gamma,
                   folded, removed)
            for render in (render_image, render_image_reference)
        ]  # fmt: skip
        np.testing.assert_array_equal(images[0], images[1])
        tissue = sample.tissue > 0
        assert 20 < images[0][tissue].mean() < 240 and images[0][~tissue].mean() > 240
        assert folded.any() or removed.any()
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    expected = np.clip(np.rint(250.0 + rng_b.normal(0, 1.5, size=(50, 70))), 0, 255)
    np.testing.assert_array_equal(glass_image(rng_a, (50, 70)), expected.astype(np.uint8))
