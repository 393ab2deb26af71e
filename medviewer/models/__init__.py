"""Models without Qt: spec.py (JSON specs), registry.py (smp), checkpoints.py (safetensors),
versions.py (versions in the workspace). Import the submodules: this package stays light so
that its errors can be caught without loading torch."""
