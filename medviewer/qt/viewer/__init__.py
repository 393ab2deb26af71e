"""The image view: pyqtgraph ViewBox with the image, mask overlay and heatmap."""
