"""Perch's ``config.json``: the hop between windows and the embeddings' dtype.

Perch writes it beside its embedding shards (``embed_fn_config.model_config``
holds ``window_size_s``, ``hop_size_s`` and ``sample_rate``;
``embed_fn_config.tensor_dtype`` the stored dtype).  The job takes the hop
from it unless told one, checks the dtype against the shards, and records
the file's sha256 in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class PerchConfig:
    """What the job uses of Perch's config.json."""

    url: str
    sha256: str
    hop_size_s: float | None
    tensor_dtype: str | None
    window_size_s: float | None
    sample_rate: int | None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def load_perch_config(url: str | os.PathLike[str], storage_options: dict[str, Any]) -> PerchConfig:
    """Read and check a Perch ``config.json`` (a clear ``ValueError`` naming it if unusable)."""
    url = os.fspath(url)
    fs, path = url_to_fs(url, **storage_options)
    with fs.open(path, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{url}: Perch config is not valid JSON ({exc})") from None
    hop = _dig(data, "embed_fn_config", "model_config", "hop_size_s")
    dtype = _dig(data, "embed_fn_config", "tensor_dtype")
    window = _dig(data, "embed_fn_config", "model_config", "window_size_s")
    rate = _dig(data, "embed_fn_config", "model_config", "sample_rate")
    if hop is not None and (isinstance(hop, bool) or not isinstance(hop, (int, float)) or hop <= 0):
        raise ValueError(f"{url}: embed_fn_config.model_config.hop_size_s is {hop!r}, not a positive number")
    if dtype is not None and not isinstance(dtype, str):
        raise ValueError(f"{url}: embed_fn_config.tensor_dtype is {dtype!r}, not a dtype name")
    return PerchConfig(
        url=url,
        sha256=hashlib.sha256(raw).hexdigest(),
        hop_size_s=None if hop is None else float(hop),
        tensor_dtype=dtype,
        window_size_s=window if isinstance(window, (int, float)) else None,
        sample_rate=rate if isinstance(rate, int) else None,
    )


def config_beside(shard: str, storage_options: dict[str, Any]) -> str | None:
    """``config.json`` in the shard's folder, if there is one (one metadata request)."""
    head, sep, _ = shard.rstrip("/").rpartition("/")
    if not sep:
        return None
    candidate = f"{head}/{CONFIG_NAME}"
    try:
        fs, path = url_to_fs(candidate, **storage_options)
        return candidate if fs.info(path).get("type") == "file" else None  # info: no body download
    except Exception:
        return None
