"""The workspace, without Qt: studies indexed in place, every revision of every correction,
model versions and jobs, in one crash-safe folder."""

from medviewer.workspace.errors import (
    CorruptBlob,
    DatabaseDamaged,
    MaskMismatch,
    NotAWorkspace,
    PermissionDenied,
    ReadOnlyWorkspace,
    SaveError,
    SchemaTooNew,
    UnknownImage,
    WorkspaceError,
    WorkspaceLocked,
)
from medviewer.workspace.revisions import STATUSES, Revision
from medviewer.workspace.snapshot import TrainingSnapshot, training_snapshot
from medviewer.workspace.store import ImageQuery, ImageRow, Workspace

__all__ = [
    "STATUSES",
    "CorruptBlob",
    "DatabaseDamaged",
    "ImageQuery",
    "ImageRow",
    "MaskMismatch",
    "NotAWorkspace",
    "PermissionDenied",
    "ReadOnlyWorkspace",
    "Revision",
    "SaveError",
    "SchemaTooNew",
    "TrainingSnapshot",
    "UnknownImage",
    "Workspace",
    "WorkspaceError",
    "WorkspaceLocked",
    "training_snapshot",
]
