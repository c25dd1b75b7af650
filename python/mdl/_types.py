"""The typed results of mdl's Python API."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class FileInfo:
    """One file of a synced model, as models.lock pins it."""

    path: str
    """Its path inside the model directory (and, for Hub models, the repo)."""
    size: int
    """Its size in bytes."""
    blake3: str
    """Its content hash (64 hex digits)."""


@dataclass(frozen=True)
class ModelInfo:
    """What mdl knows about one synced model: the seed's ``model_info``.

    The same facts as the model directory's ``model_info.json`` and
    ``mdl list --json``.
    """

    name: str
    """The model's name in the project (``acme/tiny-bert``, ``resnet18``)."""
    model_id: str
    """The identifier it was wanted by (``huggingface:acme/tiny-bert``)."""
    source: str
    """``huggingface``, ``url``, ``torchvision``, ``pytorch_hub``, ``oci`` or ``local``."""
    path: str
    """The model's directory (absolute)."""
    size_bytes: int
    """The size of its files together."""
    files: List[FileInfo] = field(default_factory=list)
    revision: Optional[str] = None
    """The branch, tag or weights name asked for, if any."""
    commit: Optional[str] = None
    """The commit it is locked to (Hub and PyTorch Hub models)."""
    url: Optional[str] = None
    """Where a single-file model comes from."""
    downloaded_at: Optional[str] = None
    """When its current files were first all in place (RFC 3339)."""
    verification: Optional[Dict[str, Any]] = None
    """The verifier's report: ``status``, ``device``, per-file ``files``, ``error``."""

    @property
    def size_mb(self) -> float:
        """The size in megabytes (10^6 bytes, as the seed reported it)."""
        return round(self.size_bytes / 1_000_000, 2)

    @property
    def verified(self) -> bool:
        """Whether every weight file was loaded with libtorch on its device."""
        return bool(self.verification) and self.verification.get("status") == "verified"  # type: ignore[union-attr]

    @property
    def verified_with(self) -> Optional[str]:
        """Which torch loaded it: ``torch 2.15.0 (VIRTUAL_ENV, in Python)``."""
        torch = (self.verification or {}).get("torch")
        if not torch:
            return None
        via = "in Python" if torch.get("via") == "python" else "through mdl-torch"
        return f"torch {torch['version']} ({torch['found_by']}, {via})"

    @property
    def verification_status(self) -> Optional[str]:
        """``verified``, ``format_checked``, ``hash_checked`` (a weight file mdl cannot read was checked by hash only), ``failed``, ``skipped``, or ``None``."""
        return (self.verification or {}).get("status")

    @classmethod
    def _from_json(cls, data: Dict[str, Any], models_dir: "os.PathLike[str] | str", path: Optional[str] = None) -> "ModelInfo":
        where = path or data.get("path", "")
        if not os.path.isabs(where):
            where = os.path.join(os.fspath(models_dir), where)
        return cls(
            name=data["name"],
            model_id=data["id"],
            source=data["source"],
            path=os.path.normpath(where),
            size_bytes=int(data.get("size", 0)),
            files=[FileInfo(f["path"], int(f["size"]), f["blake3"]) for f in data.get("files", [])],
            revision=data.get("revision"),
            commit=data.get("commit"),
            url=data.get("url"),
            downloaded_at=data.get("downloaded_at"),
            verification=data.get("verification"),
        )

    def to_dict(self) -> Dict[str, Any]:
        """A plain dict (for JSON), with ``size_mb`` and ``verified`` included."""
        return {
            "name": self.name,
            "model_id": self.model_id,
            "source": self.source,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "size_mb": self.size_mb,
            "files": [f.__dict__.copy() for f in self.files],
            "revision": self.revision,
            "commit": self.commit,
            "url": self.url,
            "downloaded_at": self.downloaded_at,
            "verified": self.verified,
            "verified_with": self.verified_with,
            "verification": self.verification,
        }
