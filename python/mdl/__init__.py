"""mdl: a lockfile-driven, verifying package manager for ML model weights.

The seed design's Python API over the same Rust library as the ``mdl``
command: every call locks, fetches and verifies exactly as ``mdl sync`` does,
on the project's ``config.yaml`` (``$MDL_CONFIG``, else ``./config.yaml``), or
on the default project when there is none: no models wanted but those asked
for, placed in ``./models/``, pinned in ``./models.lock``.

>>> import mdl
>>> path, info = mdl.ensure_model_available("huggingface:acme/tiny-bert")  # doctest: +SKIP
>>> info.size_mb, info.source, info.verified  # doctest: +SKIP
(0.44, 'huggingface', True)

The GIL is released while mdl works. Errors are typed (:class:`ConfigError`,
:class:`LockError`, :class:`DownloadError`, :class:`VerifyError`, …) and carry
the message and a ``hint``. Progress shows as bars when stderr is a terminal and
stays silent otherwise; ``progress=callable`` receives each event as a dict
instead, ``progress=False`` silences it.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from . import _native
from ._errors import (
    ConfigError,
    DownloadError,
    Error,
    LockError,
    MissingDependencyError,
    RegistryError,
    ResolveError,
    StoreError,
    UsageError,
    VerifyError,
)
from ._types import FileInfo, ModelInfo

__version__: str = _native.__version__

Progress = Union[None, bool, Callable[[Dict[str, Any]], None]]
"""``None``: bars on a terminal, else nothing; ``False``: nothing; a callable:
called with each event (``{"event": "download_progress", "id": 3, "bytes": 65536}``)."""

PathLike = Union[str, "os.PathLike[str]"]


class ModelDownloader:
    """One project's models: the seed's downloader.

    ``config`` is a ``config.yaml`` or a directory (its ``config.yaml``, else
    the default project there); ``None`` means ``$MDL_CONFIG``, else the
    current directory. Models asked for here are wanted in memory only:
    ``config.yaml`` is never edited (``mdl add ID`` does that), but
    ``models.lock`` pins them, as ``mdl sync`` would.
    """

    def __init__(self, config: Optional[PathLike] = None) -> None:
        self._project = _native.Project(None if config is None else os.fspath(config))

    @property
    def config_path(self) -> str:
        """The config file this project reads (absent for the default project)."""
        return os.fspath(self._project.config_path)

    @property
    def models_dir(self) -> str:
        """Where models are placed."""
        return os.path.abspath(self._project.models_dir)

    def get_config(self) -> Dict[str, Any]:
        """The effective configuration, defaults filled in (as ``mdl config`` prints it)."""
        return json.loads(self._project.effective_config())

    def download_model(
        self, model_id: str, model_name: Optional[str] = None, *, progress: Progress = None
    ) -> Tuple[str, ModelInfo]:
        """Makes sure ``model_id`` is on disk and verified, under ``model_name``
        if given; returns ``(model_path, model_info)``."""
        [(_, path, info, error)] = self._project.download([(model_id, model_name)], progress)
        if error is not None:
            raise error
        return self._result(path, info)

    auto_download_model = download_model

    def ensure_model_available(self, model_id: str, *, progress: Progress = None) -> Tuple[str, ModelInfo]:
        """Makes sure ``model_id`` is on disk and verified; returns
        ``(model_path, model_info)``. A no-op (milliseconds, no network) when it is."""
        return self.download_model(model_id, progress=progress)

    def download_multiple_models(
        self, model_ids: Iterable[str], *, progress: Progress = None
    ) -> Dict[str, Tuple[str, ModelInfo]]:
        """Fetches several models in one sync (concurrently). Returns
        ``{model_id: (model_path, model_info)}``. If any failed, raises the
        first failure's exception, with ``.results`` (those that succeeded) and
        ``.errors`` (``{model_id: exception}``) attached."""
        outcomes = self._project.download([(m, None) for m in model_ids], progress)
        return self._collect(outcomes)

    def download_preset_models(self, preset: str, *, progress: Progress = None) -> Dict[str, Tuple[str, ModelInfo]]:
        """Fetches a preset's models (built in: ``basic``, ``vision``, ``nlp``,
        ``all``; or the config's ``presets:``), as :meth:`download_multiple_models`."""
        return self._collect(self._project.download_preset(preset, progress))

    def list_available_models(self) -> Dict[str, ModelInfo]:
        """Every synced model, by name (``model_registry.json``)."""
        models = json.loads(self._project.list_models())
        return {m["name"]: ModelInfo._from_json(m, self.models_dir) for m in models}

    def is_model_cached(self, model_name: str) -> bool:
        """Whether the model (by name, id or directory name) is synced with
        every locked file in place."""
        return self._project.model_path(model_name) is not None

    def get_model_path(self, model_name: str) -> Optional[str]:
        """The synced model's directory, or ``None``."""
        path = self._project.model_path(model_name)
        return None if path is None else os.path.abspath(path)

    def get_model_info(self, model_name: str) -> Optional[ModelInfo]:
        """The synced model's :class:`ModelInfo`, or ``None``."""
        info = self._project.model_info(model_name)
        return None if info is None else ModelInfo._from_json(json.loads(info), self.models_dir)

    def _result(self, path: Optional[str], info: Optional[str]) -> Tuple[str, ModelInfo]:
        assert path is not None and info is not None
        path = os.path.abspath(path)
        return path, ModelInfo._from_json(json.loads(info), self.models_dir, path)

    def _collect(self, outcomes: List[Any]) -> Dict[str, Tuple[str, ModelInfo]]:
        results: Dict[str, Tuple[str, ModelInfo]] = {}
        errors: Dict[str, BaseException] = {}
        for model_id, path, info, error in outcomes:
            if error is None:
                results[model_id] = self._result(path, info)
            else:
                errors[model_id] = error
        if errors:
            first = next(iter(errors.values()))
            first.results = results  # type: ignore[attr-defined]
            first.errors = errors  # type: ignore[attr-defined]
            raise first
        return results


_default: Optional[ModelDownloader] = None
_default_lock = threading.Lock()


def get_model_downloader() -> ModelDownloader:
    """The process's downloader for the project in the current directory
    (made on first use, as the seed's was)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModelDownloader()
        return _default


def auto_download_model(
    model_id: str, model_name: Optional[str] = None, *, progress: Progress = None
) -> Tuple[str, ModelInfo]:
    """Makes sure ``model_id`` is on disk and verified, under ``model_name`` if
    given; returns ``(model_path, model_info)``."""
    return get_model_downloader().download_model(model_id, model_name, progress=progress)


def ensure_model_available(model_id: str, *, progress: Progress = None) -> Tuple[str, ModelInfo]:
    """Makes sure ``model_id`` is on disk and verified; returns ``(model_path, model_info)``."""
    return get_model_downloader().ensure_model_available(model_id, progress=progress)


def download_multiple_models(model_ids: Iterable[str], *, progress: Progress = None) -> Dict[str, Tuple[str, ModelInfo]]:
    """Fetches several models in one sync; ``{model_id: (model_path, model_info)}``."""
    return get_model_downloader().download_multiple_models(model_ids, progress=progress)


def download_preset_models(preset: str = "basic", *, progress: Progress = None) -> Dict[str, Tuple[str, ModelInfo]]:
    """Fetches a preset's models; ``{model_id: (model_path, model_info)}``."""
    return get_model_downloader().download_preset_models(preset, progress=progress)


def list_available_models() -> Dict[str, ModelInfo]:
    """Every synced model of the current project, by name."""
    return get_model_downloader().list_available_models()


def is_model_cached(model_name: str) -> bool:
    """Whether the model is synced with every locked file in place."""
    return get_model_downloader().is_model_cached(model_name)


def get_model_path(model_name: str) -> Optional[str]:
    """The synced model's directory, or ``None``."""
    return get_model_downloader().get_model_path(model_name)


from .loader import ModelLoader  # noqa: E402  (needs the names above)

__all__ = [
    "ModelDownloader",
    "ModelLoader",
    "ModelInfo",
    "FileInfo",
    "Progress",
    "get_model_downloader",
    "auto_download_model",
    "ensure_model_available",
    "download_multiple_models",
    "download_preset_models",
    "list_available_models",
    "is_model_cached",
    "get_model_path",
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
