"""A destination's record of finished outputs: ``manifest.json`` plus a journal.

Each finished output is recorded at once as one small file in the journal
folder (written atomically: constant work whatever the number recorded so
far); :meth:`Journal.compact` folds the journal into the manifest at the end
of a run (and at any clean stop).  A run killed at any moment leaves the
journal behind and the next run reads it, so only the work in flight is lost.
The journal is plain files, so it works the same on a local disk and on an
object store.  Used by the extraction job and by ``convert``.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import urllib.parse
from typing import Any, TypeVar

from .atomic import AtomicFile, is_tmp_name, write_json_atomic

_J = TypeVar("_J", bound="Journal")

#: keys of ``fs.info`` that change when an object is rewritten
_IDENTITY_KEYS = ("mtime", "generation", "etag", "ETag", "md5Hash", "crc32c", "LastModified", "last_modified")


def source_identity(fs: Any, path: str) -> dict[str, Any]:
    """Size plus whatever the store changes on a rewrite (mtime, generation, etag;
    ``created`` where nothing else is kept, as in memory://)."""
    info = fs.info(path)
    ident: dict[str, Any] = {"size": None if info.get("size") is None else int(info["size"])}
    keys = _IDENTITY_KEYS if any(k in info for k in _IDENTITY_KEYS) else ("created",)
    for key in keys:
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (_dt.datetime, _dt.date)):
            value = value.isoformat()
        elif not isinstance(value, (str, int, float)):
            value = str(value)
        ident[key] = value
    return ident


def output_stem(source: str) -> str:
    """An output's name for a source: its file name up to the first '.' (the notebook's rule)."""
    name = source.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.split(".")[0]
    if not stem or stem in (".", "..") or "/" in stem or "\x00" in stem:
        raise ValueError(f"shard name {name!r} gives no usable output name")
    return stem


def _journal_name(stem: str) -> str:
    return urllib.parse.quote(stem, safe="") + ".json"


def remove_stale_tmp(fs: Any, folders: list[str]) -> int:
    """Delete temporary files left by killed runs in ``folders`` (hold the lock: none are live)."""
    removed = 0
    for folder in folders:
        try:
            entries = fs.ls(folder, detail=False)
        except (FileNotFoundError, OSError):
            continue
        for p in entries:
            if is_tmp_name(p):
                try:
                    fs.rm(p)
                    removed += 1
                except Exception:
                    pass
    return removed


class Journal:
    """The entries of one destination: its manifest overlaid with its journal."""

    def __init__(
        self, fs: Any, root: str, *, manifest: str = "manifest.json", journal: str = ".journal", fmt: str = ""
    ) -> None:
        self.fs = fs
        self.root = root
        self.path = f"{root}/{manifest}"
        self.journal = f"{root}/{journal}"
        self.format = fmt
        self.shards: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}

    def load(self: _J) -> _J:
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
            "format": self.format,
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
