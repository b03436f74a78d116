"""pfcon: a compute controller for ChRIS, wire-compatible with FNNDSC pfcon 5.3."""

__version__ = "6.0.0.dev1"
