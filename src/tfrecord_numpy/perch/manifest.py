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

from typing import Any

from ..checksum import DEFAULT_CHECKSUM, checksum_of, recorded_checksum
from ..journal import Journal

MANIFEST_NAME = "manifest.json"
JOURNAL_DIR = ".journal"
MANIFEST_FORMAT = "tfrecord-numpy/extract/1"
OUTPUT_PARTS = ("embeddings", "metadata")


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


class Manifest(Journal):
    """The shard entries of one DEST: ``manifest.json`` overlaid with ``.journal/``."""

    def __init__(self, fs: Any, root: str) -> None:
        super().__init__(fs, root, manifest=MANIFEST_NAME, journal=JOURNAL_DIR, fmt=MANIFEST_FORMAT)


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
