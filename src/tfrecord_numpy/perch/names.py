"""A2O (Australian Acoustic Observatory) recording names, site ids and metadata rows.

This module is the notebook's section 3.1 (Development Seed, 2023) made safe
to run on untrusted input: the same fields, the same site key and the same
metadata dicts, without the regex that hangs on long names.

Recording names
---------------
The notebook pulls the fields out of a Perch ``filename`` with
``re.findall(PATTERN, name)`` and unpacks exactly one match, where ::

    PATTERN = (r"(?P<datetime>\\d{8}T\\d{6})(?P<timezone>(?:\\+\\d{4})|Z)_"
               r"(?P<site_name>(?:\\w*|-)*)-(?P<subsite_name>(?:Wet|Dry)-(?:A|B))"
               r"_(?P<file_seq_id>\\d*).flac")

:func:`parse_filename` accepts the same names and returns the same fields.
It differs from the notebook only where the notebook is at fault:

* ``.flac`` is matched literally (the notebook's unescaped ``.`` also took
  ``_1xflac``);
* an empty sequence id (``_.flac``) is rejected with :class:`SchemaError`
  (the notebook crashed in ``int("")``), as is an impossible date (it
  crashed in ``strptime``) and a name that matches twice (it crashed
  unpacking ``findall``);
* ``-HHMM`` offsets are accepted as well as ``+HHMM`` and ``Z``.  The only
  name whose reading this changes is one that holds a *second*, earlier
  ``<date>-HHMM_`` stamp, which no A2O name does;
* it runs in linear time.  ``(?:\\w*|-)*`` followed by a failing tail tries
  every way of cutting a word into pieces: 2**n steps for an n-letter word
  (a 22-letter word after the date that is not followed by
  ``-Wet-A_<n>.flac`` costs the notebook a quarter of a second, 40 letters
  about 17 hours; a 10,000-character name is rejected here in well under a
  millisecond).

Matching is unanchored, as in the notebook: anything may precede the date
(a folder such as ``site_0285/``) or follow ``.flac``.

The site name is every character from ``_`` after the timezone up to the
``-Wet-A``/``-Dry-B``... that is followed by ``_<digits>.flac``; since ``.``
ends a run of word characters and hyphens, there is at most one such cut,
so ``X-Y-Wet-A`` is read as site ``X-Y``, subsite ``Wet-A`` — the answer
the notebook's greedy match gives.

Non-ASCII: ``\\w`` and ``\\d`` keep Python's Unicode meaning, exactly as in
the notebook, so ``Café-Wet-A`` is site ``Café`` and Arabic-Indic digits
count as digits wherever ``strptime`` and ``int`` accept them.  Real A2O
names never contain them (the server's safe name keeps only
``[-_A-Za-z0-9]``); characters that are not word characters (``/``, ``.``,
space, NUL, emoji, control and format characters) end the site name, so a
name with one inside it is rejected.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import operator
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from ..errors import SchemaError
from ..storage import open_url

__all__ = [
    "DEFAULT_SITES_API_URL",
    "DEFAULT_SITE_MAPPING",
    "NOTEBOOK_FILENAME_PATTERN",
    "RecordName",
    "SiteMappingError",
    "build_site_mapping",
    "fetch_site_mapping",
    "load_site_mapping",
    "lookup_site_id",
    "metadata_rows",
    "parse_filename",
    "record_metadata",
    "sanitize_site_name",
    "site_key",
]

#: The notebook's pattern, verbatim (for reference and equivalence tests only:
#: it backtracks exponentially, never run it on untrusted names).
NOTEBOOK_FILENAME_PATTERN = (
    r"(?P<datetime>\d{8}T\d{6})(?P<timezone>(?:\+\d{4})|Z)_(?P<site_name>(?:\w*|-)*)"
    r"-(?P<subsite_name>(?:Wet|Dry)-(?:A|B))_(?P<file_seq_id>\d*).flac"
)

#: Where the notebook's mapping came from (``items=500`` holds every site).
DEFAULT_SITES_API_URL = "https://api.acousticobservatory.org/sites?direction=asc&items=500"
#: the keys of a metadata row, in the notebook's order
METADATA_COLUMNS = (
    "file_timestamp",
    "file_seconds_since_midnight",
    "recording_offset_in_file",
    "channel_index",
    "site_id",
    "site_name",
    "subsite_name",
    "file_seq_id",
    "filename",
)

#: The public mapping shipped with the package (developmentseed/bioacoustics-api,
#: MIT): 340 keys ``"<site>-<subsite>"`` -> A2O "Point ID" strings.
DEFAULT_SITE_MAPPING = resources.files("tfrecord_numpy") / "data" / "a2o_site_name_to_id_mapping.json"

# --------------------------------------------------------------------------- names

# Each piece below runs in time linear in the name: fixed-width heads tried at
# every position, tails that cannot overlap, and one pass over word runs.
_HEAD_SIGNED = re.compile(r"(?=(\d{8}T\d{6})([+-]\d{4}|Z)_)")
_HEAD_PLUS = re.compile(r"(?=(\d{8}T\d{6})(\+\d{4}|Z)_)")
_TAIL = re.compile(r"-((?:Wet|Dry)-[AB])_(\d*)\.flac")
_BREAK = re.compile(r"[^\w-]")  # ends a site name: anything but a word char or "-"
_SHOW = 80  # characters of a bad name quoted in errors


class _Reject(Exception):
    """Internal: why a name did not parse (turned into a located SchemaError)."""


@dataclass(frozen=True, slots=True)
class RecordName:
    """The fields of an A2O recording name, as the notebook reads them.

    ``timezone`` is the name's own spelling (``"Z"``, ``"+1030"``, ``"-0300"``);
    ``datetime`` is timezone-aware (``Z`` read as ``+0000``, as the notebook).
    """

    datetime: _dt.datetime
    timezone: str
    site_name: str
    subsite_name: str
    file_seq_id: int

    @property
    def file_timestamp(self) -> int:
        """Unix seconds of the recording's start: ``int(datetime.timestamp())``."""
        return int(self.datetime.timestamp())

    @property
    def file_seconds_since_midnight(self) -> int:
        """Seconds since local midnight, computed exactly as the notebook does.

        ``replace`` keeps microseconds and ``.seconds`` drops days; both are
        moot for names (whole seconds) but kept so the value is the notebook's.
        """
        midnight = self.datetime.replace(hour=0, minute=0, second=0)
        return (self.datetime - midnight).seconds

    @property
    def site_key(self) -> str:
        """The key of this site in a site mapping (see :func:`site_key`)."""
        return site_key(self.site_name, self.subsite_name)


def _shorten(name: str | bytes) -> str:
    """A printable, bounded quotation of a (possibly hostile) name."""
    text = repr(name)
    if len(text) <= _SHOW:
        return text
    return f"{text[: _SHOW * 2 // 3]}...{text[-_SHOW // 3 :]} ({len(name)} characters)"


def _find_matches(name: str, head: re.Pattern[str], limit: int = 2) -> list[tuple[re.Match, re.Match]]:
    """``findall`` of the (dot-escaped) notebook pattern, in linear time.

    A match at ``p`` needs a head (date, zone, ``_``) at ``p`` and a tail
    ``-Wet-A_<digits>.flac`` whose ``.`` is exactly where the run of word
    characters and hyphens starting after the head ends (the site name
    cannot cross a ``.``).  Heads are visited left to right, skipping those
    inside the previous match, just as ``findall`` resumes after a match.
    """
    if ".flac" not in name:
        return []
    tails = {m.end() - 5: m for m in _TAIL.finditer(name)}  # keyed by the "." position
    if not tails:
        return []
    found: list[tuple[re.Match, re.Match]] = []
    resume = 0
    start = run_end = -1
    for h in head.finditer(name):
        p = h.start()
        if p < resume:
            continue
        a = p + len(h.group(1)) + len(h.group(2)) + 1  # first character of the site name
        if not start <= a <= run_end:  # heads only move right: each run is scanned once
            b = _BREAK.search(name, a)
            run_end = b.start() if b else len(name)
        start = a
        tail = tails.get(run_end)
        if tail is None or tail.start() < a:
            continue
        found.append((h, tail))
        resume = tail.end()
        if len(found) >= limit:
            break
    return found


@functools.lru_cache(maxsize=4096)
def _parse(name: str, signed: bool = True) -> RecordName:
    """Parse (cached: every 60 s segment of a recording repeats its name)."""
    matches = _find_matches(name, _HEAD_SIGNED if signed else _HEAD_PLUS)
    if not matches:
        raise _Reject("not an A2O recording name <yyyymmddThhmmss><Z|+hhmm|-hhmm>_<site>-<Wet|Dry>-<A|B>_<id>.flac")
    if len(matches) > 1:
        raise _Reject("ambiguous A2O recording name: it holds more than one <date>_<site>-<subsite>_<id>.flac")
    h, tail = matches[0]
    stamp, zone = h.group(1), h.group(2)
    subsite, seq = tail.group(1), tail.group(2)
    site = name[h.start() + len(stamp) + len(zone) + 1 : tail.start()]
    if not seq:
        raise _Reject("A2O recording name has an empty sequence id before .flac")
    try:
        when = _dt.datetime.strptime(f"{stamp}{'+0000' if zone == 'Z' else zone}", "%Y%m%dT%H%M%S%z")
    except ValueError as exc:
        raise _Reject(f"A2O recording name has an impossible date/time {stamp}{zone} ({exc})") from None
    try:
        seq_id = int(seq)
    except ValueError:  # more digits than sys.get_int_max_str_digits() (4300) allows
        raise _Reject(f"A2O recording name has a sequence id of {len(seq)} digits") from None
    return RecordName(datetime=when, timezone=zone, site_name=site, subsite_name=subsite, file_seq_id=seq_id)


def parse_filename(
    name: str | bytes,
    *,
    path: str | os.PathLike[str] | None = None,
    index: int | None = None,
    offset: int | None = None,
) -> RecordName:
    """Read date, timezone, site, subsite and sequence id out of an A2O name.

    ``name`` may carry a folder prefix (``site_0285/2020...flac``); bytes are
    decoded as UTF-8 as the notebook did.  Raises :class:`SchemaError`
    (quoting a shortened name, located by ``path``/``index``/``offset``) when
    the name does not parse; see the module docstring for the exact rules.
    """
    if isinstance(name, (bytes, bytearray, memoryview)):
        raw = bytes(name)
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(
                f"A2O recording name is not UTF-8 ({exc.reason} at byte {exc.start}): {_shorten(raw)}",
                path=path,
                index=index,
                offset=offset,
            ) from None
    elif not isinstance(name, str):
        raise TypeError(f"name must be str or bytes, not {type(name).__name__}")
    try:
        return _parse(name)
    except _Reject as exc:
        raise SchemaError(f"{exc}: {_shorten(name)}", path=path, index=index, offset=offset) from None


def site_key(site_name: str, subsite_name: str) -> str:
    """The notebook's mapping key, e.g. ``("Fowlers-Gap", "Wet-B") -> "fowlers-gap-wet-b"``."""
    return f"{site_name.lower().replace(' ', '-')}-{subsite_name.lower().replace(' ', '-')}"


def lookup_site_id(
    mapping: Mapping[str, Any],
    name: RecordName,
    *,
    path: str | os.PathLike[str] | None = None,
    index: int | None = None,
    offset: int | None = None,
) -> Any:
    """The site id of ``name`` in ``mapping``, raising as the notebook did when absent.

    Like the notebook's ``if not site_id``, a falsy id (``0``, ``""``, ``None``)
    counts as missing.
    """
    key = site_key(name.site_name, name.subsite_name)
    site_id = mapping.get(key)
    if not site_id:
        raise SchemaError(f"No site id found for site: {key}", path=path, index=index, offset=offset)
    return site_id


# --------------------------------------------------------------------------- metadata rows


def recording_offsets(timestamp_s: float | np.floating, windows: int, hop_seconds: float = 5) -> list[int]:
    """``recording_offset_in_file`` of each window: ``int(timestamp_s + hop_seconds * window)``
    in float32, as the notebook computes it (see :func:`metadata_rows`)."""
    ts = np.float32(timestamp_s)
    if not math.isfinite(ts):
        raise SchemaError(f"timestamp_s is {float(ts)}, not a finite number of seconds")
    if abs(ts) < 2.0**62 and windows * abs(hop_seconds) < 2.0**62:  # int64 holds every sum: one array op
        return (ts + _window_hops(windows, hop_seconds)).astype(np.int64).tolist()
    return [int(ts + np.float32(hop_seconds * t)) for t in range(windows)]


@functools.lru_cache(maxsize=64)
def _window_hops(windows: int, hop_seconds: float) -> np.ndarray:
    """``float32(hop_seconds * t)`` for each window ``t`` (read-only, shared)."""
    hops = np.array([np.float32(hop_seconds * t) for t in range(windows)], dtype=np.float32)
    hops.flags.writeable = False
    return hops


def metadata_rows(
    name: RecordName,
    filename: str | bytes,
    timestamp_s: float | np.floating,
    windows: int,
    channels: int,
    site_id: Any = None,
    *,
    hop_seconds: float = 5,
) -> list[dict[str, Any]]:
    """One metadata dict per (window, channel) of a record, in the notebook's order.

    Rows are window-major, channel-minor; keys are in the notebook's order.
    ``recording_offset_in_file`` is ``int(timestamp_s + hop_seconds * window)``
    computed in float32 as the notebook's code does under numpy 2 (its
    ``timestamp_s`` is a ``np.float32`` and a Python int is "weak" under
    NEP 50).  numpy 1.x would have added in float64; the two agree for every
    whole-second offset below 2**24 s, i.e. for every real A2O record.
    """
    if isinstance(filename, (bytes, bytearray, memoryview)):
        filename = bytes(filename).decode("utf-8")
    windows = operator.index(windows)
    channels = operator.index(channels)
    if windows < 0 or channels < 0:
        raise ValueError(f"windows and channels must be >= 0, not {windows} and {channels}")
    offsets = recording_offsets(timestamp_s, windows, hop_seconds)
    file_timestamp = name.file_timestamp
    since_midnight = name.file_seconds_since_midnight
    site_name, subsite_name, seq = name.site_name, name.subsite_name, name.file_seq_id
    chans = range(channels)
    return [
        {
            "file_timestamp": file_timestamp,
            "file_seconds_since_midnight": since_midnight,
            "recording_offset_in_file": off,
            "channel_index": c,
            "site_id": site_id,
            "site_name": site_name,
            "subsite_name": subsite_name,
            "file_seq_id": seq,
            "filename": filename,
        }
        for off in offsets
        for c in chans
    ]


def record_metadata(
    filename: str | bytes,
    timestamp_s: float | np.floating,
    windows: int,
    channels: int,
    mapping: Mapping[str, Any],
    *,
    hop_seconds: float = 5,
    path: str | os.PathLike[str] | None = None,
    index: int | None = None,
    offset: int | None = None,
) -> list[dict[str, Any]]:
    """The notebook's whole per-record step: parse the name, look up the site, build rows."""
    name = parse_filename(filename, path=path, index=index, offset=offset)
    site_id = lookup_site_id(mapping, name, path=path, index=index, offset=offset)
    return metadata_rows(name, filename, timestamp_s, windows, channels, site_id, hop_seconds=hop_seconds)


# --------------------------------------------------------------------------- site mappings


class SiteMappingError(ValueError):
    """A site mapping (file or A2O API response) is unusable; ``source`` says which."""

    def __init__(self, reason: str, *, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with a repeated key are ambiguous: refuse them."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise SiteMappingError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _source_label(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else str(source)


def load_site_mapping(
    source: str | os.PathLike[str] | Any | None = None,
    *,
    storage_options: dict | None = None,
) -> dict[str, Any]:
    """Load a ``{"<site>-<subsite>": id}`` JSON object (default: the packaged one).

    ``source`` is a local path, any fsspec URL or a ``Traversable``.  Values
    are kept as the file holds them (strings in the public mapping).
    """
    if source is None:
        source = DEFAULT_SITE_MAPPING
    label = _source_label(source)
    if isinstance(source, (str, os.PathLike)):
        with open_url(source, "rb", storage_options=storage_options) as f:
            data = f.read()
    elif hasattr(source, "read_bytes"):
        data = source.read_bytes()
    else:
        raise TypeError(f"source must be a path, URL or Traversable, not {type(source).__name__}")
    try:
        mapping = json.loads(data, object_pairs_hook=_reject_duplicates)
    except SiteMappingError as exc:
        raise SiteMappingError(exc.reason, source=label) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise SiteMappingError(f"not a valid JSON site mapping ({exc})", source=label) from None
    if not isinstance(mapping, dict):
        raise SiteMappingError(
            f"a site mapping must be a JSON object of site keys to ids, not a JSON {type(mapping).__name__}",
            source=label,
        )
    return mapping


def sanitize_site_name(name: str) -> str:
    """The notebook's key for an A2O API site name (``"Arkaba Dry-A"`` -> ``"arkaba-dry-a"``)."""
    return (
        name.lower()
        .replace("  ", "-")
        .replace(" ", "-")
        .replace("/", "-")
        .replace("(", "")
        .replace(")", "")
        .replace(":", "")
    )


def build_site_mapping(api_data: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The notebook's mapping from the API's ``data`` list.

    Key: :func:`sanitize_site_name` of ``name``; value:
    ``json.loads(notes)["Point ID"]`` as it is (a string in A2O); sites whose
    ``notes`` is null are skipped; a later site wins a repeated key, as in the
    notebook's dict comprehension.
    """
    out: dict[str, Any] = {}
    for i, site in enumerate(api_data):
        if not isinstance(site, Mapping) or "name" not in site or "notes" not in site:
            raise SiteMappingError(f"site #{i} is not an object with 'name' and 'notes'")
        notes = site["notes"]
        if notes is None:
            continue
        label = f"site #{i} ({site['name']!r})"
        if not isinstance(notes, (str, bytes, bytearray)):
            raise SiteMappingError(f"{label}: notes must be a JSON string, not {type(notes).__name__}")
        try:
            parsed = json.loads(notes)
        except ValueError as exc:
            raise SiteMappingError(f"{label}: notes are not JSON ({exc})") from None
        if not isinstance(parsed, dict) or "Point ID" not in parsed:
            raise SiteMappingError(f'{label}: notes hold no "Point ID"')
        if not isinstance(site["name"], str):
            raise SiteMappingError(f"{label}: name must be a string")
        out[sanitize_site_name(site["name"])] = parsed["Point ID"]
    return out


def fetch_site_mapping(api_url: str = DEFAULT_SITES_API_URL, *, timeout: float = 30) -> dict[str, Any]:
    """GET the A2O sites API and build the notebook's mapping from it.

    Raises :class:`SiteMappingError` on an HTTP error, an unreachable host, a
    body that is not JSON or a site whose notes are not JSON.
    """
    if urllib.parse.urlsplit(api_url).scheme not in ("http", "https"):
        raise ValueError(f"api_url must be an http(s) URL, not {api_url!r}")
    request = urllib.request.Request(api_url, headers={"Accept": "application/json", "User-Agent": "tfrecord-numpy"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        raise SiteMappingError(f"HTTP {exc.code} {exc.reason}", source=api_url) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SiteMappingError(f"request failed ({reason})", source=api_url) from None
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise SiteMappingError(f"response is not JSON ({exc})", source=api_url) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise SiteMappingError('response has no "data" list of sites', source=api_url)
    try:
        return build_site_mapping(payload["data"])
    except SiteMappingError as exc:
        raise SiteMappingError(exc.reason, source=api_url) from None
