"""De-identification of DICOM objects for export (DICOM PS3.15 Basic Application Level
Confidentiality Profile, with per-patient shifted dates), and the local mapping that lets the
site re-identify what it sent. Imaging-level: callers give it pydicom datasets, it knows
nothing of workspaces, so `export` and a future `pacs send` share it. Import from the
modules (`errors`, `mapping`, `profile`): the command line loads only `errors`."""
