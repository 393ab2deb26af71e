"""The desktop app: the ONLY package that imports PySide6 or pyqtgraph. Widgets are thin over
the Qt-free core (imaging, workspace, editing, inference)."""
