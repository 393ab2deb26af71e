"""The demo: real sample studies shipped in PyPI packages, shown as medviewer sees them."""
