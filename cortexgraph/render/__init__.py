"""Pictures and exports for people: surfaces coloured by area, section overlays.

* :mod:`cortexgraph.render.surface`: off-screen surface pictures in the standard views (VTK through
  EGL/OSMesa, or a matplotlib fallback with the same API);
* :mod:`cortexgraph.render.brain`: ``cortexgraph render`` (node arrays of a brain's graphs ->
  pictures, GIfTI / FreeSurfer / PLY exports);
* :mod:`cortexgraph.render.sections`: section images with area labels painted over them (used by
  ``cortexgraph project``);
* :mod:`cortexgraph.render.figures`, :mod:`cortexgraph.render.export`: figure layout, file writers
  (the colour table of the areas is :mod:`cortexgraph.data.colors`).
"""
