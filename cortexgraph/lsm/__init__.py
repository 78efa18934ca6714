"""Local segmentation models (LSM): one U-Net per interval between two annotated sections.

Modules (array-level core; the data layer supplies images, class masks and transforms):

* :mod:`~cortexgraph.lsm.networks` HR / LR / MS U-Nets, :class:`LSMConfig` and presets
* :mod:`~cortexgraph.lsm.roi` training ROI (5 mm around the area) and prediction ROI (eq. 5.65)
* :mod:`~cortexgraph.lsm.sampling` class-balanced centres, orientation, patches, augmentation
* :mod:`~cortexgraph.lsm.tiling` tiled, seam-free prediction over an ROI
* :mod:`~cortexgraph.lsm.schedule` / :mod:`~cortexgraph.lsm.train` SGD schedule, training loop and
  the training of one model from loaded sections
* :mod:`~cortexgraph.lsm.evaluate` area F1, per-section scores, the HR/LR/MS x LSM/GSM table
* :mod:`~cortexgraph.lsm.data` class images, lazily read raster patches, orientation, areas (brain
  files)
* :mod:`~cortexgraph.lsm.config` the model configuration for a brain's images (presets, schedule)
* :mod:`~cortexgraph.lsm.plan` chain plans: intervals, test sections, the interval limit
* :mod:`~cortexgraph.lsm.predict` prediction of one section over its prediction ROI
* :mod:`~cortexgraph.lsm.model_files` model and training-ROI files
* :mod:`~cortexgraph.lsm.layout` model run names, file layout, stage ids, a brain's background jobs
* :mod:`~cortexgraph.lsm.stages` the stages lsm-plan, lsm-train, lsm-predict, lsm-evaluate under the
  stage contract (:mod:`cortexgraph.derivatives`)
* :mod:`~cortexgraph.lsm.labels` the reading side for consumers: runs, per-area predictions, the
  per-section combination of a run's areas

Background jobs (``--background``, the web app) are jobs of the cohort's local engine
(:mod:`cortexgraph.execution.launcher`).

Submodules are imported explicitly (``from cortexgraph.lsm.roi import training_roi``) so that the
numpy-only parts do not import torch.
"""
