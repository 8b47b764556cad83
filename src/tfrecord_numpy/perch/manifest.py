"""``DEST/manifest.json`` and its journal: which shards are complete, checked not assumed.

Each finished shard is recorded at once as one small file
``DEST/.journal/<stem>.json`` (written atomically, O(1) whatever the number
of shards so far); :meth:`Manifest.compact` folds the journal into
``manifest.json`` at the end of a run (and at any clean stop).  A run killed
at any moment leaves the journal behind and the next run reads it, so only
the shards in flight are lost.  The journal is plain files, so it works the
same on a local disk and on an object store.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import urllib.parse
from typing import Any

from ..atomic import AtomicFile, write_json_atomic
from .checksum import DEFAULT_CHECKSUM, checksum_of, recorded_checksum

MANIFEST_NAME = "manifest.json"
JOURNAL_DIR = ".journal"
MANIFEST_FORMAT = "tfrecord-numpy/extract/1"
OUTPUT_PARTS = ("embeddings", "metadata")
#: keys of ``fs.info`` that change when an object is rewritten
_IDENTITY_KEYS = ("mtime", "generation", "etag", "ETag", "md5Hash", "crc32c", "LastModified", "last_modified")


def source_identity(fs: Any, path: str) -> dict[str, Any]:
    """Size plus whatever the store changes on a rewrite (mtime, generation, etag)."""
    info = fs.info(path)
    ident: dict[str, Any] = {"size": None if info.get("size") is None else int(info["size"])}
    for key in _IDENTITY_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (_dt.datetime, _dt.date)):
            value = value.isoformat()
        elif not isinstance(value, (str, int, float)):
            value = str(value)
        ident[key] = value
    return ident


def output_paths(stem: str, metadata_format: str = "json") -> dict[str, str]:
    """Where a shard's outputs live, relative to DEST (never taken from a manifest)."""
    return {"embeddings": f"embeddings/{stem}.npy", "metadata": f"metadata/{stem}.{metadata_format}"}


def logits_path(head: str, stem: str) -> str:
    """Where a shard's logits head goes, relative to DEST."""
    return f"logits/{head}/{stem}.npy"


def _outputs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Every output record of an entry: embeddings, metadata, each logits head."""
    parts = [entry[p] for p in OUTPUT_PARTS if isinstance(entry.get(p), dict)]
    heads = entry.get("logits")
    return parts + ([v for v in heads.values() if isinstance(v, dict)] if isinstance(heads, dict) else [])


def _journal_name(stem: str) -> str:
    return urllib.parse.quote(stem, safe="") + ".json"


class Manifest:
    """The shard entries of one DEST: ``manifest.json`` overlaid with its journal."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root
        self.path = f"{root}/{MANIFEST_NAME}"
        self.journal = f"{root}/{JOURNAL_DIR}"
        self.shards: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}

    def load(self) -> Manifest:
        """Read ``manifest.json`` (if any) and every journal entry written since."""
        fs = self.fs
        if fs.exists(self.path):
            with fs.open(self.path, "rb") as f:
                try:
                    data = json.loads(f.read())
                except ValueError as exc:
                    raise ValueError(
                        f"{self.path}: manifest is not valid JSON ({exc}); remove it or use --overwrite"
                    ) from None
            if not isinstance(data, dict) or not isinstance(data.get("shards"), dict):
                raise ValueError(f"{self.path}: not a tfrecord-numpy manifest; remove it or use --overwrite")
            self.shards = {k: v for k, v in data["shards"].items() if isinstance(v, dict)}
            self.extra = {k: v for k, v in data.items() if k not in ("format", "shards", "updated")}
        for path in self._journal_files():
            try:
                with fs.open(path, "rb") as f:
                    entry = json.loads(f.read())
            except (OSError, ValueError):
                continue  # unreadable: the shard is simply redone
            stem = entry.get("stem") if isinstance(entry, dict) else None
            if isinstance(stem, str):
                self.shards[stem] = entry["entry"]
        return self

    def _journal_files(self) -> list[str]:
        try:
            names = self.fs.ls(self.journal, detail=False)
        except (FileNotFoundError, OSError):
            return []
        return sorted(p for p in names if p.endswith(".json") and not p.rpartition("/")[2].startswith("."))

    def record(self, stem: str, entry: dict[str, Any]) -> None:
        """Record a finished shard durably, in O(1)."""
        self.shards[stem] = entry
        self.fs.makedirs(self.journal, exist_ok=True)
        with AtomicFile(self.fs, f"{self.journal}/{_journal_name(stem)}") as out:
            out.f.write(json.dumps({"stem": stem, "entry": entry}).encode("utf-8"))

    def forget(self, stem: str) -> None:
        """Drop a shard's entry (it is about to be redone)."""
        if self.shards.pop(stem, None) is not None:
            try:
                self.fs.rm(f"{self.journal}/{_journal_name(stem)}")
            except (FileNotFoundError, OSError):
                pass

    def compact(self) -> None:
        """Fold the journal into ``manifest.json``, then drop the journal."""
        journal = self._journal_files()
        data = {
            "format": MANIFEST_FORMAT,
            **self.extra,
            "shards": self.shards,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json_atomic(self.fs, self.path, data)
        for path in journal:
            try:
                self.fs.rm(path)
            except (FileNotFoundError, OSError):
                pass


def finalize_entry(fs: Any, root: str, entry: dict[str, Any], kind: str = DEFAULT_CHECKSUM) -> dict[str, Any]:
    """Fill in the checksum of a shard's published outputs not checksummed while written."""
    for info in _outputs(entry):
        if recorded_checksum(info) is None:
            info.pop(kind, None)
            info[kind] = checksum_of(fs, f"{root}/{info['path']}", kind)
    return entry


def is_complete(
    fs: Any,
    root: str,
    stem: str,
    entry: dict[str, Any] | None,
    source: str,
    identity: dict[str, Any] | None,
    fingerprint: str,
    metadata_format: str = "json",
) -> bool:
    """Checked, not assumed: same source and source identity, same options, and
    outputs in their own place under DEST whose sizes and checksums match (CRC32C
    from the store's metadata where it keeps one; sha256 of old manifests read through)."""
    if not entry or entry.get("source") != source or entry.get("fingerprint") != fingerprint:
        return False
    if identity is None or entry.get("source_identity") != identity:
        return False
    heads = entry.get("logits") or {}
    if not isinstance(heads, dict) or any("/" in h or h.startswith(".") for h in heads):
        return False
    expected = [(rel, entry.get(part)) for part, rel in output_paths(stem, metadata_format).items()]
    expected += [(logits_path(head, stem), info) for head, info in heads.items()]
    for rel, info in expected:
        if not isinstance(info, dict):
            return False
        recorded = recorded_checksum(info)
        if info.get("path") != rel or recorded is None:  # confined to DEST: never follow a manifest's path
            return False
        path = f"{root}/{rel}"
        try:
            if fs.size(path) != info.get("bytes") or checksum_of(fs, path, recorded[0]) != recorded[1]:
                return False
        except (FileNotFoundError, OSError):
            return False
    return True
