"""Study import and display, without Qt: scan files into a Catalog, load frames, render them."""

from medviewer.imaging.display import PRESETS, Image, Window, default_window, render
from medviewer.imaging.errors import ImageLoadError, NotAnImage, UnreadableFile
from medviewer.imaging.loading import ImageLoader, load_volume, read_frames
from medviewer.imaging.records import Catalog, FrameRef, Instance, Patient, Problem, Series, Study
from medviewer.imaging.scan import scan, verify

__all__ = [
    "PRESETS",
    "Catalog",
    "FrameRef",
    "Image",
    "ImageLoadError",
    "ImageLoader",
    "Instance",
    "NotAnImage",
    "Patient",
    "Problem",
    "Series",
    "Study",
    "UnreadableFile",
    "Window",
    "default_window",
    "load_volume",
    "read_frames",
    "render",
    "scan",
    "verify",
]
