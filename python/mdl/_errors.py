"""mdl's exceptions: one class per stage of the pipeline, as the CLI's errors are.

Every exception carries what the ``mdl`` command would print: the message
(a sentence, then each cause), ``hint`` (what to do about it, or ``None``) and
``exit_code`` (what ``mdl`` would exit with: 2 for a mistake the user must
fix, 1 for a failure of the world or of a model).
"""

from __future__ import annotations

from typing import Optional


class Error(Exception):
    """Base class of every error mdl raises."""

    message: str
    hint: Optional[str]
    exit_code: int

    def __init__(self, message: str, *, hint: Optional[str] = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class ConfigError(Error, ValueError):
    """config.yaml is missing, malformed or asks for something invalid."""


class UsageError(Error, ValueError):
    """mdl was called with something it cannot take (a bad identifier, say)."""


class LockError(Error):
    """models.lock is unusable: malformed, edited, or stale under ``--locked``."""


class DownloadError(Error):
    """Fetching failed: the network, a server's answer, a hash mismatch, disk space."""


class ResolveError(DownloadError):
    """A source could not say what a model is (an unknown model, a missing revision)."""


class RegistryError(DownloadError):
    """An OCI registry (a mirror, an ``oci:`` model) refused or failed."""


class StoreError(Error):
    """Files could not be placed in ``models/`` or the shared store."""


class VerifyError(Error):
    """A model did not load, or its files are not what the lock says."""


class MissingDependencyError(Error, ImportError):
    """An optional Python dependency (an extra) is not installed."""


__all__ = [
    "Error",
    "ConfigError",
    "UsageError",
    "LockError",
    "DownloadError",
    "ResolveError",
    "RegistryError",
    "StoreError",
    "VerifyError",
    "MissingDependencyError",
]
