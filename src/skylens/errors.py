"""Typed errors that every layer raises.

Each error names the input it is about and says what to do, so that faces (CLI, REST) can print
it as-is instead of a traceback. Faces map ``SkylensError`` subclasses to exit codes / HTTP 4xx.
"""

from __future__ import annotations


class SkylensError(Exception):
    """Base class: a user-facing error whose message is complete on its own."""

    #: HTTP status the service answers with for this kind of error.
    http_status: int = 400


class InputError(SkylensError):
    """Bad input from the user (a file, a band list, a request field)."""


class ImageReadError(InputError):
    """A raster could not be read: missing, empty, truncated, corrupt or unsupported."""

    def __init__(self, path: object, reason: str, hint: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        msg = f"{self.path}: {reason}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class ImageTooLargeError(ImageReadError):
    """A header claims more pixels than the configured limit (decompression-bomb guard)."""


class BandError(InputError):
    """A band index is out of range or the band count does not fit the model."""


class GeoError(InputError):
    """A CRS/bounds problem: unknown CRS, non-overlapping rasters, no georeferencing."""


class NotFoundError(SkylensError):
    http_status = 404


class ModelError(SkylensError):
    """A model name cannot be resolved, its weights disagree with their card, or it lacks a capability."""


class CapabilityError(ModelError):
    """The loaded model cannot do what was asked (e.g. a text-only LLM asked about an image)."""

    http_status = 422


class IndexMismatchError(SkylensError):
    """An index was built with another model than the one asked to query it."""

    http_status = 409


class MissingDependencyError(SkylensError):
    """An optional dependency is not installed; the message names the extra to install."""

    http_status = 501


class DatasetLayoutError(InputError):
    """A dataset root does not match the published layout; names the expected file/folder."""
