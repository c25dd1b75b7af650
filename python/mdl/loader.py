"""``mdl.ModelLoader``: the seed's loader, finding a model the way it did and
loading it with transformers in half precision.

Where the model comes from, in the seed's order:

1. a local directory (``name_or_path`` is one);
2. the project's synced model (``models/…``, by name or id);
3. the Hugging Face cache (``$HF_HUB_CACHE``), at ``revision`` (default ``main``);
4. a download through mdl's engine — locked, verified, and laid out in the
   Hugging Face cache as ``huggingface_hub`` lays it out, so transformers finds
   it by its repo id afterwards too.

transformers and accelerate are the ``transformers`` extra of this package
(``pip install 'mdl[transformers]'``); everything else works without them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Tuple

from . import _native
from ._errors import MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from . import ModelDownloader, Progress

EXTRA = "mdl[transformers]"

# Architectures whose checkpoints carry a language-model head that
# AutoModelForCausalLM loads (the rest load with AutoModel).
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def _transformers() -> Tuple[Any, Any]:
    """torch and transformers, or the error that says which extra to install."""
    missing = []
    for module in ("torch", "transformers", "accelerate"):
        try:
            __import__(module)
        except ImportError as e:
            missing.append(f"{module} ({e})")
    if missing:
        raise MissingDependencyError(
            "mdl.ModelLoader needs torch, transformers and accelerate, and could not import " + ", ".join(missing),
            hint=f"install the extra: pip install '{EXTRA}' (torch itself: pip install torch)",
            exit_code=2,
        )
    import torch
    import transformers

    return torch, transformers


def _hub_repo(name: str) -> Tuple[Optional[str], str]:
    """``(repo, revision)`` when ``name`` can be a Hub repo id, else ``(None, "")``."""
    text = name
    if text.startswith("huggingface:"):
        text = text[len("huggingface:") :]
    elif ":" in text.split("/")[0] or text.startswith(("./", "../", "/", "~")):
        return None, ""
    repo, _, revision = text.partition("@")
    parts = repo.split("/")
    if not (1 <= len(parts) <= 2) or not all(parts) or any(p in (".", "..") for p in parts):
        return None, ""
    return repo, revision or "main"


class ModelLoader:
    """Finds a model (local directory, project, Hugging Face cache, download)
    and loads it with transformers.

    >>> loader = mdl.ModelLoader("acme/tiny-gpt")  # doctest: +SKIP
    >>> model = loader.load_model()                # float16, device_map="auto"
    >>> tokenizer = loader.load_tokenizer()        # pad_token = eos_token if unset
    """

    def __init__(
        self,
        model_name: str,
        *,
        downloader: Optional["ModelDownloader"] = None,
        progress: "Progress" = None,
    ) -> None:
        self.model_name = model_name
        self._downloader = downloader
        self._progress = progress
        self._path: Optional[str] = None
        self._found_in: Optional[str] = None

    @property
    def model_path(self) -> str:
        """The directory the model loads from (found, or downloaded, on first use)."""
        if self._path is None:
            self._path, self._found_in = self._locate()
        return self._path

    @property
    def found_in(self) -> str:
        """Where the model was found: ``local``, ``project``, ``hf_cache`` or ``download``."""
        self.model_path
        assert self._found_in is not None
        return self._found_in

    def _downloader_(self) -> "ModelDownloader":
        if self._downloader is None:
            from . import get_model_downloader

            self._downloader = get_model_downloader()
        return self._downloader

    def _locate(self) -> Tuple[str, str]:
        name = os.path.expanduser(self.model_name)
        if os.path.isdir(name):
            return os.path.abspath(name), "local"
        synced = self._downloader_().get_model_path(self.model_name)
        if synced is not None:
            return synced, "project"
        repo, revision = _hub_repo(self.model_name)
        if repo is not None:
            snapshot = _native.hf_cache_snapshot(repo, revision)
            if snapshot is not None and os.path.isfile(os.path.join(snapshot, "config.json")):
                return os.fspath(snapshot), "hf_cache"
        downloader = self._downloader_()
        downloader._project.fill_hf_cache()
        wanted = self.model_name if repo is None or self.model_name.startswith("huggingface:") else f"huggingface:{self.model_name}"
        path, _info = downloader.ensure_model_available(wanted, progress=self._progress)
        if repo is not None:
            snapshot = _native.hf_cache_snapshot(repo, revision)
            if snapshot is not None:
                return os.fspath(snapshot), "download"
        return path, "download"

    def load_model(self, **kwargs: Any) -> Any:
        """Loads the model with the transformers Auto class its config's
        ``architectures`` implies (``AutoModelForCausalLM`` for causal LMs,
        ``AutoModel`` otherwise), in float16 with ``device_map="auto"``;
        keyword arguments are passed on and override both."""
        torch, transformers = _transformers()
        path = self.model_path
        config = transformers.AutoConfig.from_pretrained(path)
        architectures = getattr(config, "architectures", None) or []
        causal = any(a.endswith(_CAUSAL_SUFFIXES) for a in architectures)
        auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
        options: dict = {"device_map": "auto"}
        if "torch_dtype" not in kwargs and "dtype" not in kwargs:
            # transformers 4.56 renamed `torch_dtype` to `dtype`.
            options[_dtype_keyword(transformers)] = torch.float16
        options.update(kwargs)
        return auto.from_pretrained(path, **options)

    def load_tokenizer(self, **kwargs: Any) -> Any:
        """Loads the tokenizer; one without a pad token gets its EOS token as
        the pad token (batching then works)."""
        _torch, transformers = _transformers()
        tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_path, **kwargs)
        if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer


def _dtype_keyword(transformers: Any) -> str:
    version = getattr(transformers, "__version__", "0")
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return "torch_dtype"
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
