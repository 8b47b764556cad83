"""Planning a run: which shards, where their outputs go, which are already complete."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from fsspec.core import url_to_fs

from ..journal import remove_stale_tmp as remove_tmp
from ..journal import source_identity
from ..storage import expand_sources
from .config import CONFIG_NAME, config_beside, load_perch_config
from .manifest import JOURNAL_DIR, MANIFEST_NAME, Manifest, is_complete
from .names import load_site_mapping
from .options import ExtractOptions, Sources, shard_stem

PARTS_DIR = ".parts"
_OWN = ("embeddings", "metadata", PARTS_DIR, JOURNAL_DIR)


@dataclass
class JobPlan:
    """What a run must do: the shards, where they go, and which are already complete."""

    options: ExtractOptions
    site_map: dict[str, Any]
    fingerprint: str
    stems: dict[str, str]  # output stem -> source URL
    fs: Any
    root: str
    dest_url: str
    manifest: Manifest
    identities: dict[str, dict[str, Any] | None]
    todo: list[str]
    already: list[str]
    sizes: dict[str, int | None] = field(default_factory=dict)


def dest_root(dest: str | os.PathLike[str], storage_options: dict[str, Any]) -> tuple[Any, str]:
    """The filesystem and root path of a destination URL."""
    fs, root = url_to_fs(os.fspath(dest), **storage_options)
    return fs, root.rstrip("/") or "/"


def _inside_dest(root: str, dest_protocol: Any, source: str, storage_options: dict[str, Any]) -> bool:
    """Whether ``source`` is one of DEST's own files (outputs, journal, manifest, lock)."""
    try:
        sfs, spath = url_to_fs(source, **storage_options)
    except Exception:
        return False
    if sfs.protocol != dest_protocol or not spath.startswith(root.rstrip("/") + "/"):
        return False
    first = spath[len(root.rstrip("/")) + 1 :].split("/", 1)[0]
    return first in _OWN or first == MANIFEST_NAME or first.startswith(".")


def source_size(source: str, storage_options: dict[str, Any]) -> int | None:
    """The size of a source (a metadata request only), or None where unknown."""
    try:
        fs, path = url_to_fs(source, **storage_options)
        return int(fs.size(path))
    except Exception:
        return None


def _identity(source: str, storage_options: dict[str, Any]) -> dict[str, Any] | None:
    try:
        fs, path = url_to_fs(source, **storage_options)
        return source_identity(fs, path)
    except Exception:
        return None


def remove_stale_tmp(fs: Any, root: str) -> None:
    """Delete temporary files left by a killed run (we hold the lock: none are live)."""
    folders = [f"{root}/{sub}".rstrip("/") for sub in ("embeddings", "metadata", JOURNAL_DIR, "")]
    remove_tmp(fs, folders)


def plan_job(sources: Sources, dest: str | os.PathLike[str], options: ExtractOptions) -> JobPlan:
    """Expand the sources, refuse clashing output names (within the run and
    against earlier runs into DEST), clear stale temporaries, and check
    (re-hash) which shards the manifest shows complete.  Call with DEST locked."""
    storage_options = options.storage_options
    sites = options.sites
    if options.schema == "perch":
        site_map: dict[str, Any] = {}  # Perch rows carry no site
    else:
        site_map = sites if isinstance(sites, dict) else load_site_mapping(sites, storage_options=storage_options)
    dest_url = os.fspath(dest)
    fs, root = dest_root(dest_url, storage_options)
    expanded = expand_sources(sources, storage_options=storage_options)
    kept = [f for f in expanded if not _inside_dest(root, fs.protocol, f, storage_options)]
    configs = [f for f in kept if f.rstrip("/").rpartition("/")[2] == CONFIG_NAME]  # Perch's, not a shard
    kept = [f for f in kept if f not in configs]
    if not kept:
        raise FileNotFoundError(f"no sources left: every file given is one of {dest_url!r}'s own outputs")
    stems: dict[str, str] = {}
    for f in kept:
        stem = shard_stem(f)
        if stem in stems:
            raise ValueError(f"two shards would write the same outputs {stem!r}: {stems[stem]!r} and {f!r}")
        stems[stem] = f
    config_url = options.perch_config or (configs[0] if configs else config_beside(kept[0], storage_options))
    config = None if config_url is None else load_perch_config(config_url, storage_options)
    if config is not None:
        if options.hop_seconds is None and config.hop_size_s is not None:
            options.hop_seconds = int(config.hop_size_s) if config.hop_size_s.is_integer() else config.hop_size_s
        options.expect_dtype = config.tensor_dtype
    fingerprint = options.fingerprint(site_map)
    fs.makedirs(root, exist_ok=True)
    remove_stale_tmp(fs, root)
    manifest = Manifest(fs, root).load()
    if config is not None:
        manifest.extra["perch_config"] = {"url": config.url, "sha256": config.sha256}
    if not options.overwrite:
        for stem, f in stems.items():
            earlier = manifest.shards.get(stem, {}).get("source")
            if earlier is not None and earlier != f:
                raise ValueError(
                    f"output {stem!r} in {dest_url!r} holds shard {earlier!r}; {f!r} would replace it. "
                    "Use another DEST, or --overwrite to replace it"
                )
    identities = {f: _identity(f, storage_options) for f in stems.values()}
    sizes = {f: (None if ident is None else ident.get("size")) for f, ident in identities.items()}
    todo, already = [], []
    for stem, f in stems.items():
        if not options.overwrite and is_complete(
            fs, root, stem, manifest.shards.get(stem), f, identities[f], fingerprint, options.metadata_format
        ):
            already.append(stem)
        else:
            manifest.forget(stem)
            todo.append(f)
    return JobPlan(
        options, site_map, fingerprint, stems, fs, root, dest_url, manifest, identities, todo, already, sizes
    )
