"""The one options object of the extraction job, shared by every engine."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..checksum import CHECKSUMS, DEFAULT_CHECKSUM
from ..framing import DEFAULT_MAX_RECORD_BYTES
from ..journal import output_stem
from ..storage import normalize_compression
from .filters import DropRule, RowFilter, load_blocklist, parse_classes

ON_CORRUPT = ("error", "skip")
ON_UNKNOWN_SITE = ("error", "null")
SCHEMAS = ("a2o", "perch")
METADATA_FORMATS = ("json", "parquet")
DEFAULT_HOP_SECONDS = 5

Sources = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
Sites = str | os.PathLike[str] | dict[str, Any] | None


@dataclass
class ExtractOptions:
    """Everything a run of the job is told, for the local pool and Dask alike.

    The decoding options (hop, compression, corrupt and unknown-site
    handling) decide a shard's output and go into the manifest's
    fingerprint; the rest say how the run behaves.
    """

    #: seconds between windows; None: Perch's config.json if there is one, else 5
    hop_seconds: float | None = None
    compression: str | None = "auto"
    on_corrupt: str = "error"
    on_unknown_site: str = "error"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    storage_options: dict[str, Any] = field(default_factory=dict)
    sites: Sites = None
    overwrite: bool = False
    quiet: bool = False
    summary_json: str | os.PathLike[str] | None = None
    checksum: str = DEFAULT_CHECKSUM
    schema: str = "a2o"
    #: logits heads to write to ``logits/<head>/<stem>.npy``: names, or "all"
    logits: tuple[str, ...] | str | None = None
    logits_in_metadata: bool = False
    #: Perch's config.json (path or URL); None: the one beside the shards, if any
    perch_config: str | os.PathLike[str] | None = None
    #: the embeddings' dtype the config states (set from config.json, checked per shard)
    expect_dtype: str | None = None
    #: drop rules (``HEAD[CLASS] OP THRESHOLD [@ CHANNELS]``), class names per head, a blocklist CSV
    drop: tuple[str, ...] = ()
    classes: dict[str, Any] | list[str] | None = None
    blocklist: str | os.PathLike[str] | None = None
    #: built from the three above by validate()
    row_filter: RowFilter | None = None
    #: metadata/<stem>.json, or .parquet (the arrow extra)
    metadata_format: str = "json"

    @classmethod
    def build(cls, **kwargs: Any) -> ExtractOptions:
        """Options from the API's keywords, validated; unknown keywords are a ``TypeError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unexpected extraction option(s): {', '.join(unknown)}")
        kwargs["storage_options"] = dict(kwargs.get("storage_options") or {})
        options = cls(**kwargs)
        options.validate()
        return options

    def validate(self) -> None:
        if self.on_corrupt not in ON_CORRUPT:
            raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, not {self.on_corrupt!r}")
        if self.on_unknown_site not in ON_UNKNOWN_SITE:
            raise ValueError(f"on_unknown_site must be one of {ON_UNKNOWN_SITE}, not {self.on_unknown_site!r}")
        self.compression = normalize_compression(self.compression)
        if self.hop_seconds is not None and (
            isinstance(self.hop_seconds, bool)
            or not (isinstance(self.hop_seconds, (int, float)) and self.hop_seconds > 0)
        ):
            raise ValueError(f"hop_seconds must be a positive number, not {self.hop_seconds!r}")
        if isinstance(self.logits, str) and self.logits != "all":
            self.logits = tuple(h.strip() for h in self.logits.split(",") if h.strip())
        elif self.logits is not None and not isinstance(self.logits, str):
            self.logits = tuple(self.logits)
        if not self.logits:
            self.logits = None
        for head in self.logits if isinstance(self.logits, tuple) else ():
            if head in ("embedding", "filename", "timestamp_s") or "/" in head or head.startswith("."):
                raise ValueError(f"{head!r} is not a logits head name")
        if self.logits_in_metadata and not self.logits:
            raise ValueError("logits_in_metadata needs logits (head names or 'all')")
        if isinstance(self.drop, str):
            self.drop = (self.drop,)
        self.drop = tuple(self.drop or ())
        if self.drop or self.blocklist is not None:
            rules = tuple(DropRule.parse(text) for text in self.drop)
            blocked = (
                frozenset()
                if self.blocklist is None
                else load_blocklist(os.fspath(self.blocklist), self.storage_options)
            )
            self.row_filter = RowFilter(rules, parse_classes(self.classes), blocked)
        if self.metadata_format not in METADATA_FORMATS:
            raise ValueError(f"metadata_format must be one of {METADATA_FORMATS}, not {self.metadata_format!r}")
        if self.metadata_format == "parquet":
            from .parquet import check_available

            check_available()
        if self.schema not in SCHEMAS:
            raise ValueError(f"schema must be one of {SCHEMAS}, not {self.schema!r}")
        if self.checksum not in CHECKSUMS:
            raise ValueError(f"checksum must be one of {CHECKSUMS}, not {self.checksum!r}")
        if isinstance(self.max_record_bytes, bool) or int(self.max_record_bytes) < 1:
            raise ValueError(f"max_record_bytes must be a positive integer, not {self.max_record_bytes!r}")

    def for_workers(self) -> ExtractOptions:
        """A copy without what only the parent needs (the site source, the summary path)."""
        return ExtractOptions(
            hop_seconds=self.hop_seconds,
            compression=self.compression,
            on_corrupt=self.on_corrupt,
            on_unknown_site=self.on_unknown_site,
            max_record_bytes=self.max_record_bytes,
            storage_options=self.storage_options,
            checksum=self.checksum,
            schema=self.schema,
            logits=self.logits,
            logits_in_metadata=self.logits_in_metadata,
            expect_dtype=self.expect_dtype,
            row_filter=self.row_filter,
            metadata_format=self.metadata_format,
        )

    def fingerprint(self, site_map: dict[str, Any]) -> str:
        """sha256 of what decides a shard's output (options and the site mapping)."""
        decides: dict[str, Any] = {
            "hop_seconds": DEFAULT_HOP_SECONDS if self.hop_seconds is None else self.hop_seconds,
            "on_unknown_site": self.on_unknown_site,
            "on_corrupt": self.on_corrupt,
            "sites": site_map,
        }
        if self.schema != "a2o":  # a2o fingerprints stay those of earlier manifests
            decides["schema"] = self.schema
        if self.metadata_format != "json":
            decides["metadata_format"] = self.metadata_format
        if self.row_filter is not None:
            decides["filter"] = self.row_filter.fingerprint()
        if self.logits:
            decides["logits"] = self.logits if isinstance(self.logits, str) else list(self.logits)
            decides["logits_in_metadata"] = self.logits_in_metadata
        blob = json.dumps(decides, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def shard_stem(source: str) -> str:
    """The notebook's output name: the file name up to its first '.'."""
    return output_stem(source)
