"""Metadata rows as JSON text, built from one template per record."""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

from ..errors import SchemaError, TFRecordError
from .names import RecordName, parse_filename, recording_offsets
from .options import DEFAULT_HOP_SECONDS, ExtractOptions
from .records import A2ORecord

#: the keys of a metadata row with ``schema="perch"``, in order
PERCH_COLUMNS = ("filename", "timestamp_s", "window_index", "offset_s", "channel_index")


class Encoder(Protocol):
    """Turns a decoded record into its metadata rows (JSON text, one per embedding row)."""

    @property
    def unknown_sites(self) -> int: ...

    def rows(self, rec: A2ORecord, index: int, offset: int) -> list[str]: ...


def RowEncoder(sites: dict[str, Any], options: ExtractOptions, shard: str) -> Encoder:
    """The row encoder of the run's schema: the notebook's A2O rows, or generic Perch rows."""
    if options.schema == "perch":
        return PerchRowEncoder(options, shard)
    return A2ORowEncoder(sites, options, shard)


class PerchRowEncoder:
    """Rows of any Perch embedding set: no name parsing, no site mapping.

    Window ``t`` of a record starts at ``timestamp_s + t * hop`` seconds into its
    file; rows are window-major, channel-minor, as for A2O.
    """

    def __init__(self, options: ExtractOptions, shard: str) -> None:
        self.hop = DEFAULT_HOP_SECONDS if options.hop_seconds is None else options.hop_seconds
        self.shard = shard
        self.unknown_sites = 0

    def rows(self, rec: A2ORecord, index: int, offset: int) -> list[str]:
        T, C, _ = rec.embedding.shape
        ts = float(rec.timestamp_s)
        if not math.isfinite(ts):
            raise SchemaError(
                f"timestamp_s is {ts}, not a finite number of seconds", path=self.shard, index=index, offset=offset
            )
        name = json.dumps(rec.filename)
        out: list[str] = []
        for t in range(T):
            head = (
                f'{{"filename": {name}, "timestamp_s": {ts!r}, "window_index": {t}, "offset_s": {ts + t * self.hop!r}'
            )
            out.extend(f'{head}, "channel_index": {c}}}' for c in range(C))
        return out


class A2ORowEncoder:
    """Metadata rows of a record as JSON text, byte-identical to ``json.dumps`` of
    :func:`a2o.metadata_rows` (a test holds the two together).

    Rows of one record share all but two fields, so each record's text is
    built from one template instead of 60 ``json.dumps`` calls.
    """

    def __init__(self, sites: dict, options: ExtractOptions, shard: str) -> None:
        self.sites = sites
        self.options = options
        self.shard = shard
        self.unknown_sites = 0
        self.hop = DEFAULT_HOP_SECONDS if options.hop_seconds is None else options.hop_seconds
        # (filename, known site?, row text before the offset, after the channel, per-channel
        # text after the offset): every 60 s segment of a recording repeats its name, so
        # consecutive records share these
        self._last: tuple[str, bool, str, str, list[str]] | None = None

    def site_id(self, name: RecordName, rows: int, index: int, offset: int) -> Any:
        key = name.site_key
        site_id = self.sites.get(key)
        if not site_id:  # the notebook's test: a falsy id counts as missing
            if self.options.on_unknown_site == "error":
                raise SchemaError(f"No site id found for site: {key}", path=self.shard, index=index, offset=offset)
            site_id = None
            self.unknown_sites += rows
        return site_id

    def rows(self, rec: A2ORecord, index: int, offset: int) -> list[str]:
        T, C, _ = rec.embedding.shape
        last = self._last if self._last is not None and self._last[0] == rec.filename else None
        try:
            if last is None:
                name = parse_filename(rec.filename, path=self.shard, index=index, offset=offset)
            offsets = recording_offsets(rec.timestamp_s, T, self.hop)
        except TFRecordError as exc:
            raise exc.located(path=self.shard, index=index, offset=offset) from None
        if last is not None:  # the same recording as the record before
            if not last[1]:
                self.unknown_sites += T * C
            _, known, head, tail, channel_tails = last
        else:
            site_id = self.site_id(name, T * C, index, offset)
            known = site_id is not None
            dumps = json.dumps
            head = (
                f'{{"file_timestamp": {name.file_timestamp}, '
                f'"file_seconds_since_midnight": {name.file_seconds_since_midnight}, '
                f'"recording_offset_in_file": '
            )
            tail = (
                f', "site_id": {dumps(site_id)}, "site_name": {dumps(name.site_name)}, '
                f'"subsite_name": {dumps(name.subsite_name)}, "file_seq_id": {name.file_seq_id}, '
                f'"filename": {dumps(rec.filename)}}}'
            )
            channel_tails = []
        if len(channel_tails) != C:  # a new name, or another channel count under the same one
            channel_tails = [f', "channel_index": {c}{tail}' for c in range(C)]
        self._last = (rec.filename, known, head, tail, channel_tails)
        return [f"{head}{off}{ct}" for off in offsets for ct in channel_tails]
