"""Inference without Qt: device and precision, the engine, post-processing, the gate,
Grad-CAM, proposals saved as `ai` revisions, and the worker runner."""
