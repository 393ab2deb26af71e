"""Errors a user can meet with a workspace, each with a message naming the file and reason."""

from __future__ import annotations


class WorkspaceError(Exception):
    """Base of the workspace errors."""


class WorkspaceLocked(WorkspaceError):
    """Another medviewer window already has this workspace open."""


class SaveError(WorkspaceError):
    """A revision could not be written (disk full, read-only folder); the previous one stands."""


class CorruptBlob(WorkspaceError):
    """A stored mask no longer matches its hash (disk damage or tampering)."""


class MaskMismatch(WorkspaceError):
    """A mask does not fit its image: wrong size, wrong dtype, or class values out of range."""


class UnknownImage(WorkspaceError):
    """No image with that id (or path) in the workspace."""


class SchemaTooNew(WorkspaceError):
    """The workspace was written by a newer medviewer than this one."""


class NotAWorkspace(WorkspaceError):
    """No workspace database here, or one that has lost it (workspace data but no database)."""


class ReadOnlyWorkspace(WorkspaceError):
    """The workspace cannot be written here (read-only folder or no permission)."""


class DatabaseDamaged(WorkspaceError):
    """The workspace database file is corrupt (disk damage, a bad copy, tampering)."""


class UnreadableSeg(WorkspaceError):
    """A DICOM SEG that cannot be read (truncated, unsupported encoding, not a SEG) or whose
    segments no label map can hold (overlapping segments)."""


class UnmappedSegment(WorkspaceError):
    """A SEG segment whose label names no class of the workspace (or of the model given)."""


class UnreadableNifti(WorkspaceError):
    """A NIfTI label volume that cannot be read (truncated, not NIfTI)."""


class PermissionDenied(WorkspaceError):
    """The database server refused this login an action its role does not allow (an annotator
    approving, activating a model)."""
