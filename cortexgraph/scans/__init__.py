"""From scans to a cohort: ingest, segmentation, alignment, registration (docs/scans-in.md)."""
