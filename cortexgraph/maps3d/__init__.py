"""3D area maps: assemble sections, fill gaps, filter, mesh, and measure volume and surface.

Pipeline (method note section 9.2): :func:`assemble_area_volume` ->
:func:`interpolate_missing_sections` -> :func:`binary_median_filter` (11^3) ->
:func:`remove_small_components` (27 mm^3) -> :func:`mask_surface` -> :func:`area_report`.
Chunked (dask) versions of the filter and the component removal give identical results on
volumes that do not fit in memory.
"""

from __future__ import annotations

from cortexgraph.maps3d.assemble import assemble_area_volume
from cortexgraph.maps3d.filters import (
    binary_median_filter,
    binary_median_filter_chunked,
    remove_small_components,
    remove_small_components_chunked,
)
from cortexgraph.maps3d.interpolate import interpolate_missing_sections
from cortexgraph.maps3d.morphometry import (
    area_report,
    area_volume_mm3,
    load_reference_table,
    pial_surface_area_mm2,
    sample_at_vertices,
    shrinkage_correct,
    zscores,
)
from cortexgraph.maps3d.surface import downsample_fraction, mask_surface

__all__ = [
    "assemble_area_volume",
    "interpolate_missing_sections",
    "binary_median_filter",
    "binary_median_filter_chunked",
    "remove_small_components",
    "remove_small_components_chunked",
    "mask_surface",
    "downsample_fraction",
    "area_volume_mm3",
    "pial_surface_area_mm2",
    "sample_at_vertices",
    "shrinkage_correct",
    "load_reference_table",
    "zscores",
    "area_report",
]
