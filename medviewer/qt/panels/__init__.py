"""Side panels: worklist, labels, models."""
