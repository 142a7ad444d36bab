"""scalems: one workflow script, run on a laptop or through RADICAL-Pilot."""
from ._version import __version__
