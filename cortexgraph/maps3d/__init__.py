"""3D area maps: assemble sections, fill gaps, filter, mesh, and measure volume and surface.

Pipeline (Schiffer et al. 2021, NeuroImage, Sect. 2.8; Schiffer, PhD thesis, Sect. 5.2.6): :func:`assemble_area_volume` ->
:func:`interpolate_missing_sections` -> :func:`binary_median_filter` (11^3 at 20 um) ->
:func:`remove_small_components` (27 mm^3) -> :func:`mask_surface`, chained by
:func:`build_area_map` / :func:`area_surfaces` (in memory or out of core, same result) and, for a
brain and a label source, by :func:`map_area` / :func:`write_area_map` (``cortexgraph map3d``).
Morphometry: :func:`tissue_depth_volume` (Laplace depth of the stacked tissue),
:func:`hemisphere_measures`, :func:`morphometry_rows`, :func:`area_report` (``cortexgraph stats``).
Chunked (dask) versions of the filter and the component removal give identical results on
volumes that do not fit in memory. User guide: docs/maps3d.md.
"""

from __future__ import annotations

from cortexgraph.maps3d.assemble import assemble_area_volume
from cortexgraph.maps3d.brainmap import (
    AreaMap,
    AreaNotLabelledError,
    label_source,
    map_area,
    read_area_map,
    write_area_map,
)
from cortexgraph.maps3d.build import (
    area_surfaces,
    build_area_map,
    end_extension_planes,
    median_size_for_voxel,
    preview_factor_for_voxel,
)
from cortexgraph.maps3d.filters import (
    binary_median_filter,
    binary_median_filter_blockwise,
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
from cortexgraph.maps3d.stats import (
    area_picture,
    hemisphere_measures,
    morphometry_rows,
    tissue_depth_volume,
    write_report,
)
from cortexgraph.maps3d.surface import downsample_fraction, mask_surface, mask_surface_chunked

__all__ = [
    "assemble_area_volume",
    "interpolate_missing_sections",
    "binary_median_filter",
    "binary_median_filter_blockwise",
    "binary_median_filter_chunked",
    "remove_small_components",
    "remove_small_components_chunked",
    "mask_surface",
    "mask_surface_chunked",
    "downsample_fraction",
    "build_area_map",
    "area_surfaces",
    "median_size_for_voxel",
    "preview_factor_for_voxel",
    "end_extension_planes",
    "AreaMap",
    "AreaNotLabelledError",
    "label_source",
    "map_area",
    "write_area_map",
    "read_area_map",
    "tissue_depth_volume",
    "hemisphere_measures",
    "morphometry_rows",
    "write_report",
    "area_picture",
    "area_volume_mm3",
    "pial_surface_area_mm2",
    "sample_at_vertices",
    "shrinkage_correct",
    "load_reference_table",
    "zscores",
    "area_report",
]
