"""cortexgraph: cytoarchitectonic mapping of histological brain section series."""

__version__ = "0.1.0"
