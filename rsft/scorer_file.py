"""A saved scorer file read without Torch, for the n-gram scorer's scoring side (``rsft.sampling``).

A scorer file is ``torch.save`` of a plain dict (``DensityRatioScorer.save``): a zip holding a
pickle whose tensors are ``torch._utils._rebuild_tensor_v2`` calls on storages stored as raw
little-endian bytes beside it. :func:`read_blob` unpickles it with NumPy arrays in place of the
tensors (the bytes as stored: the same values bit for bit), allowing only what such a file holds
(plain containers, ``OrderedDict``, typed storages, ``_rebuild_tensor_v2``); anything else raises
:class:`NeedsTorch`. :func:`load_ngram_weights` turns an n-gram scorer's file into
:class:`NgramWeights` — its bucket weights log p_target − log p_pool and its hash scheme, scored
with NumPy and Polars as ``NgramScorer.log_ratio_frame`` does (the same log w bit for bit) — so a
text selection never imports Torch (~1 s of CPU per process). Scheme-1 scorers (files saved before
the scheme was recorded) score through Torch's ``index_add_`` and are left to ``load_scorer``.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

# the typed storages a scorer's tensors use, by their class name in ``torch``
_STORAGE_DTYPES = {"DoubleStorage": np.float64, "FloatStorage": np.float32, "LongStorage": np.int64,
                   "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
                   "ByteStorage": np.uint8, "BoolStorage": np.bool_, "HalfStorage": np.float16}
FIT_SLICE_BYTES = 4 << 20  # an n-gram scorer featurises at most this much text at once


class NeedsTorch(Exception):
    """The file holds something this reader does not handle: load it with ``torch.load``."""


class _Storage:
    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype


def _rebuild_tensor_v2(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    if not size:
        return storage[offset].copy()
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    return np.array(view)  # own, writable copy


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._zip, self._prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        raise NeedsTorch(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise NeedsTorch(f"persistent id {pid!r}")
        _, kind, key, _location, numel = pid
        raw = self._zip.read(f"{self._prefix}data/{key}")
        return np.frombuffer(raw, dtype=np.dtype(kind.dtype).newbyteorder("<"), count=int(numel))


def read_blob(path: str | Path) -> dict[str, Any]:
    """The dict a scorer file holds, NumPy arrays in place of tensors; :class:`NeedsTorch` when it
    is not a zip-format ``torch.save`` file of plain data."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:  # the legacy (pre-1.6) format, or not a scorer file
        raise NeedsTorch(str(e)) from e
    with archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise NeedsTorch("no single data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        names = set(archive.namelist())
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise NeedsTorch("big-endian storages")
        blob = _Unpickler(archive.read(pkl[0]), archive, prefix).load()
    if not isinstance(blob, dict):
        raise NeedsTorch("not a dict")
    return blob


def ngram_log_ratio_frame(df: Any, column: str, weights: np.ndarray, ngrams: int, scheme: int,
                          max_bytes: int = FIT_SLICE_BYTES, doc_ngrams: float = 0.0) -> np.ndarray:
    """float64 log w of a frame's text column under bucket ``weights`` (log p_target − log p_pool)
    and hash ``scheme`` ≥ 2: per-document segment sums (``rsft.features.hashed_ngram_sums``) in
    slices of at most ``max_bytes`` of text (``NgramScorer.log_ratio_frame``'s scheme-2 path).
    ``doc_ngrams`` > 0: per-n-gram means × ``doc_ngrams`` instead of sums (``ngram_score``)."""
    from rsft.features import hashed_ngram_sums, text_slices

    per_ngram = doc_ngrams > 0
    parts = [hashed_ngram_sums(part, column, weights, ngrams, scheme=scheme, per_ngram=per_ngram)
             for part in text_slices(df, column, max_bytes)]
    out = np.concatenate(parts) if parts else np.zeros(0)
    return out * doc_ngrams if per_ngram else out


class NgramWeights:
    """The scoring side of a fitted n-gram scorer (hash scheme ≥ 2), without Torch: what
    ``rsft.sampling`` needs (``kind``, ``cfg``, ``hash_scheme``, :meth:`log_ratio_frame`)."""

    kind = "ngram"

    def __init__(self, cfg: Any, feature_names: list[str], log_p_t: np.ndarray, log_p_p: np.ndarray,
                 hash_scheme: int, diagnostics: dict[str, Any] | None = None, doc_ngrams: float = 0.0) -> None:
        self.cfg, self.feature_names, self.hash_scheme = cfg, list(feature_names), int(hash_scheme)
        self.doc_ngrams = float(doc_ngrams)  # > 0: per-n-gram mean × this (NgramScorer.doc_ngrams)
        self.weights = log_p_t - log_p_p  # as NgramScorer's (log_p_t − log_p_p): IEEE, the same bits
        self._diag = dict(diagnostics or {})

    def log_ratio_frame(self, df: Any, feature_cfg: Any) -> np.ndarray:
        return ngram_log_ratio_frame(df, feature_cfg.text_column, self.weights, self.cfg.ngrams, self.hash_scheme,
                                     doc_ngrams=self.doc_ngrams)

    def diagnostics(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._diag}


def load_ngram_weights(path: str | Path) -> NgramWeights | None:
    """:class:`NgramWeights` of an n-gram scorer file with hash scheme ≥ 2, read without Torch;
    ``None`` for any other file (another kind, scheme 1, a file this reader does not handle, or one
    ``load_scorer`` would refuse): load that one with ``rsft.density.load_scorer``."""
    from rsft.config import ScorerConfig
    from rsft.features import NGRAM_HASH_SCHEMES

    try:
        blob = read_blob(path)
    except (NeedsTorch, OSError, pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError):
        return None
    try:
        cfg = ScorerConfig(**blob["config"])
        state = blob["state_dict"]
        extra = state.get("_extra_state")
        scheme = int(extra.get("ngram_hash", 1)) if isinstance(extra, dict) else 1
        doc_ngrams = float(extra.get("doc_ngrams", 0.0)) if isinstance(extra, dict) else 0.0
        log_p_t, log_p_p = state["log_p_t"], state["log_p_p"]
        names = blob["feature_names"]
    except Exception:  # noqa: BLE001 — not a file of this shape: load_scorer says why
        return None
    if (cfg.kind != "ngram" or blob.get("kind", cfg.kind) != "ngram" or scheme < 2 or scheme not in NGRAM_HASH_SCHEMES
            or cfg.smoothing <= 0 or not isinstance(names, list)
            or not all(isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (cfg.buckets,)
                       for a in (log_p_t, log_p_p))):
        return None
    if not doc_ngrams >= 0:
        return None
    return NgramWeights(cfg, names or ["text"], log_p_t, log_p_p, scheme, blob.get("diagnostics", {}), doc_ngrams)


__all__ = ["NeedsTorch", "NgramWeights", "load_ngram_weights", "ngram_log_ratio_frame", "read_blob"]
