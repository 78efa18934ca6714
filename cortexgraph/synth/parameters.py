"""Parameters of ``synth``: one frozen dataclass, validated on creation (docs/conventions.md,
"Parameters").

Its own fields are the preset's name, the cohort seed and the form of the output; every field of the
preset (:class:`~cortexgraph.synth.presets.Preset`) but its name and ``extra`` is an override of the
preset's value (``"none"``: the preset's), the options that make a phantom harder among them
(``area_seed``, ``profile_variability``, ``transition_mm``, ``transform_noise_deg``,
``transform_noise_um``, ``distortion_scale_sd``, ``distortion_warp_mm``) and ``brains``. The
resolved preset is what ``synth.json`` records (``parameters``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

from cortexgraph.derivatives.parameters import (
    SEED,
    check_fields,
    field_errors,
    is_finite_number,
    is_integer,
    one_of,
    overrides_of,
    with_overrides,
)
from cortexgraph.errors import ParameterError
from cortexgraph.synth.presets import PRESETS, Preset, get_preset

#: ``scan_format`` of ``scans_only`` (:func:`cortexgraph.scans.strip.strip_to_scans`)
SCAN_FORMATS = ("ome-tiff", "ome-zarr", "png")
#: overrides that must be > 0 (all other numbers must be >= 0)
_POSITIVE = frozenset({
    "image_spacing_um", "mask_spacing_um", "annotation_spacing_um", "coords_spacing_um",
    "template_mm", "slab_posterior_mm", "truth_voxel_mm", "midsurface_voxel_mm", "atlas_voxel_mm",
    "exclusion_voxel_mm", "atlas_blur_mm", "section_thickness_um", "deformation_length_mm",
})  # fmt: skip


@with_overrides(Preset, exclude=("name", "extra"), presets=PRESETS)
@dataclass(frozen=True)
class SynthParameters:
    """Every parameter of ``cortexgraph synth`` (the output folder and ``--verbose`` are not in it).

    preset : tiny (seconds), demo (minutes) or full (the publications' scale): the values of every
        field below that is "none".
    seed : cohort seed; the same parameters and seed give byte-identical files.
    scans_only : keep only scans and section lists (scans/<brain>/); the brain folders move to
        ground_truth/<brain>/inputs/.
    scan_format : the scans of ``scans_only``: ome-tiff, ome-zarr or png.
    """

    preset: str = "demo"
    seed: int = 0
    scans_only: bool = False
    scan_format: str = "ome-tiff"

    def __post_init__(self) -> None:
        bad = field_errors(self, "synth", _option_text)
        check_fields(self, bad, _RULES)
        for name, value in overrides_of(self).items():
            if value is not None:  # NO_VALUE (false): no value, where the preset allows it
                _check_override(name, value, bad)
        spec = self.preset_spec()
        if spec.cell_texture:
            from cortexgraph.synth.cells import CELL_TEXTURE_MAX_SPACING_UM

            if not spec.image_spacing_um <= CELL_TEXTURE_MAX_SPACING_UM:
                raise ParameterError(
                    f"synth parameter cell_texture = true with image_spacing_um = "
                    f"{spec.image_spacing_um:g} (preset {self.preset}): pixels coarser than "
                    f"{CELL_TEXTURE_MAX_SPACING_UM:g} um do not resolve cell bodies",
                    fix=f"set image_spacing_um <= {CELL_TEXTURE_MAX_SPACING_UM:g} in the same "
                    "file, or cell_texture = false",
                )

    def preset_spec(self) -> Preset:
        """The preset with the overrides that are set (the generator's input)."""
        return replace(get_preset(self.preset), **overrides_of(self))


#: fields with an option of their own (the rest only through the file)
_OPTIONS = frozenset({
    "preset", "seed", "scans_only", "scan_format", "brains", "area_seed", "profile_variability",
    "transition_mm", "transform_noise_deg", "transform_noise_um", "distortion_scale_sd",
    "distortion_warp_mm",
})  # fmt: skip


def _option_text(name: str) -> str:
    """How an error names the option of field ``name`` (fields without one: not at all)."""
    return f" (option --{name.replace('_', '-')})" if name in _OPTIONS else ""


def _check_override(name: str, value: object, bad) -> None:
    """The range of a Preset override (consistency of the spacings is the generator's to check)."""
    if name == "cell_texture":
        if not isinstance(value, bool):
            raise bad(name, "true or false")
    elif name == "brains":
        if not (isinstance(value, tuple) and value and all(isinstance(b, str) and b for b in value)):
            raise bad(name, 'a non-empty list of brain ids (e.g. ["B01", "B07"])')
    elif name == "mapped_area_fraction":
        low, high = cast(tuple[float, float], value)  # a pair (read as tuple[float, float])
        if not (is_finite_number(low) and is_finite_number(high) and 0 <= low <= high <= 1):
            raise bad(name, "two numbers [low, high] with 0 <= low <= high <= 1")
    elif name == "area_seed":
        if not SEED.test(value):
            raise bad(name, SEED.words)
    elif is_integer(value):
        if value < 1:  # type: ignore[operator]
            raise bad(name, "an integer >= 1")
    elif is_finite_number(value):
        number = float(value)  # type: ignore[arg-type]
        if name in _POSITIVE and number <= 0:
            raise bad(name, "a finite number > 0")
        if number < 0:
            raise bad(name, "a finite number >= 0")
        if name.endswith("_fraction") and number > 1:
            raise bad(name, "a number in [0, 1]")
        if name == "profile_variability" and number > 1:
            raise bad(name, "a number in 0..1 (a log-normal s.d.; 0.1 is a 10% spread)")
    else:
        raise bad(name, "a finite number")


#: the ranges of :class:`SynthParameters`'s own fields
#: (:func:`~cortexgraph.derivatives.parameters.check_fields`)
_RULES = (
    ("preset", one_of(PRESETS)),
    ("seed", SEED),
    ("scan_format", one_of(SCAN_FORMATS)),
)
