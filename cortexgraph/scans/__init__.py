"""From scans to a cohort: read whole-slide scans, segment tissue, align and register sections.

Modules
-------
ingest : a folder of scans (OME-TIFF / BigTIFF, OME-Zarr, plain TIFF / PNG) and a section list
    become a brain in cortexgraph's format (docs/data-format.md), streamed tile by tile
    (``cortexgraph ingest``).
segment : tissue masks (background / white matter / gray matter) from the section images, following
    Schiffer 2023 (PhD thesis, Univ. Düsseldorf, chapter 3) (``cortexgraph segment``).
strip : a phantom cohort reduced to its scans and section lists (``cortexgraph synth --scans-only``).
align : rigid transforms between consecutive sections from the images, mirrored scans found, every
    pair's residual reported and doubtful pairs flagged (``cortexgraph align``).
register : canonical coordinate maps, by registering the stacked tissue to MNI152 with SimpleITK
    (``cortexgraph register``).

The readers of tifffile and zarr and SimpleITK are optional (``pip install 'cortexgraph[scans]'``);
plain TIFF and PNG files are read with tifffile / imageio, which scikit-image brings. See
docs/scans-in.md.
"""
