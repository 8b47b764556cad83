"""A2O names, site mappings and metadata rows: the notebook's section 3.1, checked.

The notebook's own regex is the oracle wherever it is fast enough to run
(short names); the TensorFlow-made goldens are the oracle for whole shards.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fsspec
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tfrecord_numpy import a2o
from tfrecord_numpy._proto import example_pb2
from tfrecord_numpy.errors import SchemaError, TFRecordError
from tfrecord_numpy.perch import names
from tfrecord_numpy.reader import read_records
from workcount import count_calls, hang_net

DATA = Path(__file__).parent / "data"
SHARDS = ["embeddings-00000-of-00003", "embeddings-00001-of-00003", "embeddings-00002-of-00003"]
API_RESPONSE = DATA / "a2o_sites_api_response.json"
KEYS = [
    "file_timestamp",
    "file_seconds_since_midnight",
    "recording_offset_in_file",
    "channel_index",
    "site_id",
    "site_name",
    "subsite_name",
    "file_seq_id",
    "filename",
]

# The notebook's regex, verbatim; the same with only "." escaped; and that one
# with "-HHMM" zones too.  All three backtrack exponentially: short names only.
NOTEBOOK = re.compile(a2o.NOTEBOOK_FILENAME_PATTERN)
ORACLE_PLUS = re.compile(a2o.NOTEBOOK_FILENAME_PATTERN.replace(r"\d*).flac", r"\d*)\.flac"))
ORACLE_SIGNED = re.compile(ORACLE_PLUS.pattern.replace(r"(?:\+\d{4})", r"(?:[+-]\d{4})"))
# Polynomial (not exponential) form of ORACLE_SIGNED, usable on long names.
REFERENCE_SIGNED = re.compile(r"(\d{8}T\d{6})([+-]\d{4}|Z)_([\w-]*)-((?:Wet|Dry)-[AB])_(\d*)\.flac")
MINUS_HEAD = re.compile(r"\d{8}T\d{6}-\d{4}_")
assert ORACLE_PLUS.pattern != NOTEBOOK.pattern and ORACLE_SIGNED.pattern != ORACLE_PLUS.pattern


def notebook_fields(name: str, pattern: re.Pattern[str] = NOTEBOOK):
    """What the notebook's cell computes from ``name`` (None where it raised)."""
    found = pattern.findall(name)
    if len(found) != 1:
        return None
    stamp, zone, site, subsite, seq = found[0]
    try:
        when = dt.datetime.strptime(f"{stamp}{'+0000' if zone == 'Z' else zone}", "%Y%m%dT%H%M%S%z")
        seq_id = int(seq)
    except ValueError:
        return None
    return (when, zone, site, subsite, seq_id)


def our_fields(name: str, signed: bool = True):
    try:
        r = names._parse(name, signed)
    except names._Reject:
        return None
    return (r.datetime, r.timezone, r.site_name, r.subsite_name, r.file_seq_id)


def notebook_is_fast(name: str) -> bool:
    """Whether the exponential regexes finish quickly on ``name``.

    Their cost after a head is about 2**(sum of (len(word) - 1)) over the
    hyphen-separated words of the site run; keep that small.
    """
    for h in re.finditer(r"(?=\d{8}T\d{6}([+-]\d{4}|Z)_)", name):
        run = re.compile(r"[\w-]*").match(name, h.start() + 16 + len(h.group(1))).group()
        if sum(max(len(w) - 1, 0) for w in run.split("-")) > 15:
            return False
    return True


# --------------------------------------------------------------------------- goldens


def _records(path: Path):
    for raw in read_records(path):
        f = example_pb2.Example.FromString(raw).features.feature
        T, C, _ = f["embedding_shape"].int64_list.value
        yield f["timestamp_s"].float_list.value[0], f["filename"].bytes_list.value[0], T, C


@pytest.mark.parametrize("folder,suffix", [("a2o", ""), ("a2o_gzip", ".gz")])
@pytest.mark.parametrize("shard", SHARDS)
def test_golden_metadata_reproduced_exactly(folder: str, suffix: str, shard: str) -> None:
    mapping = a2o.load_site_mapping(DATA / "a2o" / "site_name_to_id_mapping.json")
    rows: list[dict] = []
    via_helper: list[dict] = []
    for i, (ts, filename, T, C) in enumerate(_records(DATA / folder / f"{shard}{suffix}")):
        name = a2o.parse_filename(filename, path=shard, index=i)
        assert notebook_fields(filename.decode()) == (
            name.datetime,
            name.timezone,
            name.site_name,
            name.subsite_name,
            name.file_seq_id,
        )
        site_id = a2o.lookup_site_id(mapping, name)
        rows += a2o.metadata_rows(name, filename.decode(), np.float32(ts), T, C, site_id=site_id)
        via_helper += a2o.record_metadata(filename, ts, T, C, mapping)
    golden_text = (DATA / "a2o" / "golden" / f"{shard}.json").read_text()
    # The notebook wrote json.dumps(metadata): same values, types and key order.
    assert json.dumps(rows) == golden_text
    assert json.dumps(via_helper) == golden_text
    assert all(list(r) == KEYS for r in rows)


# --------------------------------------------------------------------------- parse_filename


def test_folder_prefix_and_fields() -> None:
    r = a2o.parse_filename("site_0285/20201014T010000+1030_Arkaba-Dry-A_49500.flac")
    assert (r.site_name, r.subsite_name, r.file_seq_id, r.timezone) == ("Arkaba", "Dry-A", 49500, "+1030")
    assert r.datetime == dt.datetime(2020, 10, 14, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=10, minutes=30)))
    assert r.file_timestamp == int(dt.datetime(2020, 10, 13, 14, 30, tzinfo=dt.timezone.utc).timestamp())
    assert r.file_seconds_since_midnight == 3600
    assert r.site_key == "arkaba-dry-a"
    # any prefix, as the notebook's unanchored findall; gs:// paths too
    s = a2o.parse_filename("gs://bucket/a2o/site_0285/20201014T010000+1030_Arkaba-Dry-A_49500.flac")
    assert s == r


@pytest.mark.parametrize(
    "zone,offset",
    [
        ("Z", dt.timedelta(0)),
        ("+0000", dt.timedelta(0)),
        ("+0800", dt.timedelta(hours=8)),
        ("+0930", dt.timedelta(hours=9, minutes=30)),
        ("+1100", dt.timedelta(hours=11)),
        ("-0300", -dt.timedelta(hours=3)),
        ("-0930", -dt.timedelta(hours=9, minutes=30)),
    ],
)
def test_timezones(zone: str, offset: dt.timedelta) -> None:
    r = a2o.parse_filename(f"20200101T010203{zone}_Bowra-Wet-A_77.flac")
    assert r.timezone == zone
    assert r.datetime.utcoffset() == offset
    assert r.file_timestamp == int(
        (dt.datetime(2020, 1, 1, 1, 2, 3) - offset).replace(tzinfo=dt.timezone.utc).timestamp()
    )
    assert r.file_seconds_since_midnight == 3723
    if not zone.startswith("-"):
        name = f"20200101T010203{zone}_Bowra-Wet-A_77.flac"
        assert our_fields(name) == notebook_fields(name)


def test_minus_zone_only_extension() -> None:
    name = "20200101T010203-0300_Bowra-Wet-A_77.flac"
    assert notebook_fields(name) is None  # the notebook only knew "+" and "Z"
    assert our_fields(name, signed=False) is None
    assert our_fields(name) is not None


def test_leap_day_midnight_and_last_minute() -> None:
    leap = a2o.parse_filename("20200229T000000Z_Fowlers-Gap-Dry-A_000042.flac")
    assert leap.datetime == dt.datetime(2020, 2, 29, tzinfo=dt.timezone.utc)
    assert leap.file_seconds_since_midnight == 0 and leap.file_seq_id == 42
    late = a2o.parse_filename("20191105T235900+1000_Noosa-National-Park-Wet-A_87311.flac")
    assert late.file_seconds_since_midnight == 86340
    assert late.site_name == "Noosa-National-Park"
    last = a2o.parse_filename("20191231T235959-1200_Yourka-Dry-B_1.flac")
    assert last.file_seconds_since_midnight == 86399
    assert last.file_timestamp == int(dt.datetime(2020, 1, 1, 11, 59, 59, tzinfo=dt.timezone.utc).timestamp())
    with pytest.raises(SchemaError, match="impossible date"):
        a2o.parse_filename("20210229T000000Z_Fowlers-Gap-Dry-A_1.flac")
    with pytest.raises(SchemaError, match="impossible date"):
        a2o.parse_filename("20200101T240000Z_Fowlers-Gap-Dry-A_1.flac")
    with pytest.raises(SchemaError, match="impossible date"):
        a2o.parse_filename("20200101T000000+2400_Fowlers-Gap-Dry-A_1.flac")


@pytest.mark.parametrize(
    "seq,value", [("0", 0), ("000042", 42), ("9", 9), ("0001380", 1380), ("12345678901234567890", 12345678901234567890)]
)
def test_sequence_ids(seq: str, value: int) -> None:
    assert a2o.parse_filename(f"20200101T000000Z_Bowra-Wet-A_{seq}.flac").file_seq_id == value


@pytest.mark.parametrize(
    "name,site,subsite",
    [
        ("20200101T000000Z_X-Y-Wet-A_1.flac", "X-Y", "Wet-A"),
        ("20200101T000000Z_Tumbarumba-Wet-Eucalypt-Wet-B_1.flac", "Tumbarumba-Wet-Eucalypt", "Wet-B"),
        ("20200101T000000Z_A-Wet-A-Dry-B_1.flac", "A-Wet-A", "Dry-B"),
        ("20200101T000000Z_A-Wet-A_1-Dry-B_2.flac", "A-Wet-A_1", "Dry-B"),
        ("20200101T000000Z_Strzelecki-93-Dry-A_5.flac", "Strzelecki-93", "Dry-A"),
        ("20200101T000000Z_a--b_-Dry-A_5.flac", "a--b_", "Dry-A"),
        ("20200101T000000Z_-Wet-A_1.flac", "", "Wet-A"),  # empty site: the notebook accepts it too
        ("20200101T000000Z_Café-Wet-A_1.flac", "Café", "Wet-A"),  # Unicode \w, as the notebook
        ("xx1120200101T000000Z_B-Wet-A_1.flac.bak", "B", "Wet-A"),  # unanchored both ends
    ],
)
def test_site_split_matches_notebook(name: str, site: str, subsite: str) -> None:
    r = a2o.parse_filename(name)
    assert (r.site_name, r.subsite_name) == (site, subsite)
    assert our_fields(name) == notebook_fields(name)


def test_notebook_faults_are_rejected() -> None:
    # unescaped "." took any character; an empty id crashed int(); two matches crashed the unpacking
    for name, why in [
        ("20200101T000000Z_Bowra-Wet-A_1xflac", "not an A2O"),
        ("20200101T000000Z_Bowra-Wet-A_.flac", "empty sequence id"),
        ("20200101T000000Z_A-Wet-A_1.flac/20200101T000000Z_B-Wet-A_2.flac", "ambiguous"),
    ]:
        with pytest.raises(SchemaError, match=why):
            a2o.parse_filename(name)
    assert notebook_fields("20200101T000000Z_Bowra-Wet-A_1xflac") is not None  # the notebook's bug


def test_bytes_names_and_error_location() -> None:
    good = b"20200120T043000+1030_Fowlers-Gap-Wet-B_231604.flac"
    assert a2o.parse_filename(good) == a2o.parse_filename(good.decode())
    with pytest.raises(SchemaError, match="not UTF-8") as err:
        a2o.parse_filename(b"20200120T043000+1030_Fowlers\xff-Wet-B_1.flac", path="s.tfrecord", index=3)
    assert err.value.index == 3
    with pytest.raises(SchemaError) as err:
        a2o.parse_filename("nothing to see", path="gs://b/shard", index=7, offset=1234)
    e = err.value
    assert isinstance(e, TFRecordError) and isinstance(e, ValueError)
    assert (e.path, e.index, e.offset) == ("gs://b/shard", 7, 1234)
    assert "'nothing to see'" in str(e) and "record 7" in str(e) and "offset 1234" in str(e)
    with pytest.raises(TypeError):
        a2o.parse_filename(12345)  # type: ignore[arg-type]


def test_record_name_is_frozen() -> None:
    r = a2o.parse_filename("20200101T000000Z_Bowra-Wet-A_1.flac")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.site_name = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- hostile names

HOSTILE = [
    "20200101T000000Z_" * 600,
    "20200101T000000Z_" + "a" * 10_000,
    "20200101T000000Z_" + "a" * 10_000 + ".flac",
    "20200101T000000Z_" + "a-" * 5_000 + "Wet-A_.flac",
    "20200101T000000Z_" + "-Wet-A_" * 1_430,
    "20200101T000000Z_" + "1" * 10_000 + "xflac",
    "-Wet-A_" + "1" * 10_000,
    ("20200101T000000Z_" + "a" * 30 + "-Wet-A_1xflac") * 200,
    "é" * 10_000,
    "20200101T000000Z_" + "é" * 5_000 + "🐦" + "é" * 5_000 + "-Wet-A_1.flac",
    "20200101T000000Z_Fowlers🐦-Wet-A_1.flac" + "🐦" * 10_000,
    "20200101T000000Z_" + "../" * 3_400 + "-Wet-A_1.flac",
    "20200101T000000Z_Fowlers\x00Gap-Wet-A_1.flac" + "\x00" * 10_000,
    "\x00" * 10_000,
]


def _warm_up() -> None:
    """One-off costs (strptime's lazy import and regex) are not the name's work."""
    a2o.parse_filename("20200101T000000Z_Fowlers-Wet-A_1.flac")
    names._parse.cache_clear()


@pytest.mark.parametrize("name", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_hostile_names_rejected_fast(name: str) -> None:
    """Linear work, counted: 13-38 calls measured for these ~10,000-character
    names (43 at most for the doubled names), so 200 + len/50 leaves 5x or more;
    a Python loop per character makes 10,000+.  The regex scans are single C
    calls the count cannot see: the hang net turns the notebook's exponential
    backtracking into a failure instead of a run that never ends."""
    assert len(name) >= 10_000
    _warm_up()
    limit = 200 + len(name) // 50
    with hang_net(), pytest.raises(SchemaError) as err, count_calls(limit) as work:
        a2o.parse_filename(name)
    assert work.calls <= limit
    assert len(str(err.value)) < 400  # the name is quoted, shortened
    assert "characters)" in str(err.value)


@pytest.mark.parametrize(
    "name",
    [
        "20200101T000000Z_../Fowlers-Wet-A_1.flac",
        "20200101T000000Z_Fowlers/../../etc-Wet-A_1.flac",
        "20200101T000000Z_Fowl\x00ers-Wet-A_1.flac",
        "20200101T000000Z_Fowlers-Wet-A_1\x00.flac",
        "20200101T000000Z_Fowlers\u202e-Wet-A_1.flac",  # right-to-left override
        "20200101T000000Z_Fowlers Gap-Wet-A_1.flac",
        "20200101T000000Z_Fowlers🐦-Wet-A_1.flac",
        "20200101T000000Z_Fowlers-Wet-A_.flac",
        "２０２００１０１T000000Z_Fowlers-Wet-A_1.flac",  # fullwidth digits: strptime refuses them
    ],
)
def test_short_hostile_names_rejected(name: str) -> None:
    with pytest.raises(SchemaError):
        a2o.parse_filename(name)
    assert notebook_fields(name) is None


def test_unicode_digits_follow_the_notebook() -> None:
    name = "20200101T000000Z_Fowlers-Wet-A_١٢.flac"  # Arabic-Indic digits are \d and int() reads them
    assert our_fields(name) == notebook_fields(name)
    assert a2o.parse_filename(name).file_seq_id == 12


_PIECES = [
    "20200101T000000Z_",
    "20200229T235959+1030_",
    "20200101T000000-0300_",
    "2020",
    "T",
    "Z",
    "+1030",
    "_",
    "-",
    "a",
    "aaaaaaaaaaaaaaaaaaaa",
    "-Wet-A",
    "-Dry-B_",
    "Wet-A_",
    "_123",
    "1" * 50,
    ".flac",
    "xflac",
    ".",
    "é",
    "\x00",
    "../",
    " ",
    "🐦",
]


def test_random_hostile_names_linear_and_correct() -> None:
    """Work counted per name: at most 175 calls measured (939 characters; names
    up to 1,227), i.e. under 50 + 0.17 x length; the bound is 250 + length / 2."""
    rng = random.Random(20230615)
    _warm_up()
    for _ in range(3000):
        name = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 120)))
        names._parse.cache_clear()
        limit = 250 + len(name) // 2
        with hang_net(), count_calls(limit) as work:
            got = our_fields(name)
        assert work.calls <= limit, name
        assert got == notebook_fields(name, REFERENCE_SIGNED)


# --------------------------------------------------------------------------- equivalence with the notebook

_FRAGMENTS = [
    "20200229T235959",
    "20201014T010000",
    "2",
    "0",
    "9",
    "T",
    "Z",
    "+1030",
    "-0300",
    "+",
    "-",
    "_",
    "Wet",
    "Dry",
    "-A",
    "-B",
    "A",
    "B",
    "Gap",
    "x",
    "é",
    "٣",
    "/",
    ".",
    " ",
    "\x00",
    ".flac",
    "flac",
    "xflac",
    "_7",
    "0042",
    "Wet-A",
    "-Wet-B_",
    "Dry-A_",
    "Z_",
    "+0800_",
]
_fragment_names = st.lists(st.sampled_from(_FRAGMENTS), max_size=14).map("".join)
_char_names = st.text(alphabet="0123456789TZ+-_WetDryAB.flacx/ é", max_size=45)


@st.composite
def _mutated_names(draw) -> str:
    """Mostly valid A2O names (with tricky sites), then a few random edits."""
    stamp = draw(
        st.sampled_from(
            ["20200120T043000", "20200229T000000", "20211231T235959", "20201301T000000"][
                : draw(st.sampled_from([3, 3, 3, 4]))
            ]
        )
    )
    zone = draw(st.sampled_from(["Z", "+1030", "+0800", "-0300", "Z", "+1030", "+", "Z-"]))
    words = draw(
        st.lists(
            st.sampled_from(["Fowlers", "Gap", "Wet", "Dry", "A", "B", "x_1", "", "93", "Wet-A", "Dry-B_2"]), max_size=4
        )
    )
    subsite = draw(st.sampled_from(["Wet-A", "Wet-B", "Dry-A", "Dry-B", "Wet-A", "Dry-B", "Wet-C", "wet-a"]))
    seq = draw(st.sampled_from(["1", "000042", "231604", "7", "0", "", "x"]))
    ext = draw(st.sampled_from([".flac", ".flac", ".flac", ".flac", ".flac.bak", "xflac", ".wav"]))
    name = f"{stamp}{zone}_{'-'.join(words)}-{subsite}_{seq}{ext}"
    if draw(st.booleans()):
        name = draw(st.sampled_from(["site_0285/", "gs://b/", "1", "x", "-0300_", "20200101T000000-0300_a"])) + name
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2, 3]))):  # random edits
        i = draw(st.integers(0, len(name)))
        if draw(st.booleans()):
            name = name[:i] + draw(st.sampled_from(["-", "_", ".", "Z", "1", "T", "é", " ", name[: i // 2]])) + name[i:]
        else:
            name = name[:i] + name[i + 1 :]
    if draw(st.integers(0, 5)) == 0:
        name = name + draw(st.sampled_from(["", "/", "-"])) + name  # two matches, or one long site
    return name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.one_of(_fragment_names, _char_names, _mutated_names(), _mutated_names()))
def test_equivalent_to_notebook_regex(name: str) -> None:
    assume(notebook_is_fast(name))
    plus = our_fields(name, signed=False)
    # 1. Exactly the notebook's procedure with only the "." escaped.
    assert plus == notebook_fields(name, ORACLE_PLUS)
    # 2. The notebook itself, whenever none of its matches leaned on the unescaped ".".
    if all(name[m.end("file_seq_id")] == "." for m in NOTEBOOK.finditer(name)):
        assert plus == notebook_fields(name)
    # 3. Accepting "-HHMM" changes nothing for names without such a stamp.
    signed = our_fields(name)
    assert signed == notebook_fields(name, ORACLE_SIGNED) == notebook_fields(name, REFERENCE_SIGNED)
    if not MINUS_HEAD.search(name):
        assert signed == plus
    # 4. The public function agrees with the internal one.
    if signed is None:
        with pytest.raises(SchemaError):
            a2o.parse_filename(name)
    else:
        r = a2o.parse_filename(name)
        assert (r.datetime, r.timezone, r.site_name, r.subsite_name, r.file_seq_id) == signed


# --------------------------------------------------------------------------- site keys and ids


def test_site_key() -> None:
    assert a2o.site_key("Fowlers-Gap", "Wet-B") == "fowlers-gap-wet-b"
    assert a2o.site_key("Mt Barney", "Dry A") == "mt-barney-dry-a"
    assert a2o.site_key("", "Wet-A") == "-wet-a"
    r = a2o.parse_filename("20200101T000000Z_Bon-Bon-Station-Dry-B_1.flac")
    assert r.site_key == a2o.site_key(r.site_name, r.subsite_name) == "bon-bon-station-dry-b"


def test_lookup_site_id() -> None:
    r = a2o.parse_filename("20200101T000000Z_Bon-Bon-Station-Dry-B_1.flac")
    assert a2o.lookup_site_id({"bon-bon-station-dry-b": "8"}, r) == "8"
    with pytest.raises(SchemaError, match="No site id found for site: bon-bon-station-dry-b") as err:
        a2o.lookup_site_id({}, r, path="p", index=2)
    assert err.value.index == 2
    for falsy in (0, "", None):  # the notebook's "if not site_id"
        with pytest.raises(SchemaError):
            a2o.lookup_site_id({"bon-bon-station-dry-b": falsy}, r)


# --------------------------------------------------------------------------- metadata rows


def test_metadata_rows_order_and_values() -> None:
    name = a2o.parse_filename("20200906T171023+1030_Bon-Bon-Station-Dry-B_333333.flac")
    rows = a2o.metadata_rows(
        name, "20200906T171023+1030_Bon-Bon-Station-Dry-B_333333.flac", np.float32(60.0), 3, 2, site_id="8"
    )
    assert len(rows) == 6 and all(list(r) == KEYS for r in rows)
    assert [(r["recording_offset_in_file"], r["channel_index"]) for r in rows] == [
        (60, 0),
        (60, 1),
        (65, 0),
        (65, 1),
        (70, 0),
        (70, 1),
    ]
    assert rows[0] == {
        "file_timestamp": name.file_timestamp,
        "file_seconds_since_midnight": 61823,
        "recording_offset_in_file": 60,
        "channel_index": 0,
        "site_id": "8",
        "site_name": "Bon-Bon-Station",
        "subsite_name": "Dry-B",
        "file_seq_id": 333333,
        "filename": "20200906T171023+1030_Bon-Bon-Station-Dry-B_333333.flac",
    }
    assert all(type(r["recording_offset_in_file"]) is int for r in rows)
    assert rows[0] is not rows[1]
    assert a2o.metadata_rows(name, b"f.flac", 0.0, 0, 5) == []
    assert a2o.metadata_rows(name, b"f.flac", 0.0, 1, 1)[0]["filename"] == "f.flac"
    assert a2o.metadata_rows(name, "f", 0.0, np.int64(2), np.int64(1), None)[1]["recording_offset_in_file"] == 5
    assert [r["recording_offset_in_file"] for r in a2o.metadata_rows(name, "f", 1.0, 3, 1, hop_seconds=2.5)] == [
        1,
        3,
        6,
    ]


def test_recording_offset_uses_float32_like_the_notebook() -> None:
    name = a2o.parse_filename("20200101T000000Z_Bowra-Wet-A_1.flac")
    ts = np.nextafter(np.float32(1), np.float32(0))  # 0.99999994
    rows = a2o.metadata_rows(name, "f", ts, 2, 1)
    # float32: 0.99999994 + 5 rounds to 6.0; float64 would give 5
    assert [r["recording_offset_in_file"] for r in rows] == [0, 6]
    assert rows[1]["recording_offset_in_file"] == int(np.float32(ts) + np.float32(5))
    if int(np.__version__.split(".")[0]) >= 2:  # NEP 50: what the notebook's own expression gives
        assert rows[1]["recording_offset_in_file"] == int(ts + (5 * 1))
    assert a2o.metadata_rows(name, "f", float(ts), 2, 1) == rows  # a Python float is read as float32
    big = a2o.metadata_rows(name, "f", 16777216.0, 2, 1)
    assert big[1]["recording_offset_in_file"] == int(np.float32(16777216.0) + np.float32(5))
    assert a2o.metadata_rows(name, "f", -0.5, 1, 1)[0]["recording_offset_in_file"] == 0  # int() truncates
    huge = np.float32(3e38)  # beyond int64: Python's int, not a wrapped array value
    assert [r["recording_offset_in_file"] for r in a2o.metadata_rows(name, "f", huge, 2, 1)] == [
        int(huge),
        int(huge + np.float32(5)),
    ]
    for ts in (0.3, 59.99, 1e7 + 0.5, -3.7):  # the one-array-op path, window by window
        want = [int(np.float32(ts) + np.float32(0.96 * t)) for t in range(12)]
        rows = a2o.metadata_rows(name, "f", ts, 12, 1, hop_seconds=0.96)
        assert [r["recording_offset_in_file"] for r in rows] == want
    for bad in (float("nan"), float("inf")):
        with pytest.raises(SchemaError, match="finite"):
            a2o.metadata_rows(name, "f", bad, 1, 1)
    with pytest.raises(ValueError):
        a2o.metadata_rows(name, "f", 0.0, -1, 1)
    with pytest.raises(TypeError):
        a2o.metadata_rows(name, "f", 0.0, 1.5, 1)  # type: ignore[arg-type]


def test_record_metadata_unknown_site() -> None:
    with pytest.raises(SchemaError, match="No site id found for site: bowra-wet-a") as err:
        a2o.record_metadata("20200101T000000Z_Bowra-Wet-A_1.flac", 0.0, 12, 5, {}, path="x", index=4, offset=99)
    assert (err.value.path, err.value.index, err.value.offset) == ("x", 4, 99)


# --------------------------------------------------------------------------- site mappings


def test_default_mapping() -> None:
    m = a2o.load_site_mapping()
    assert len(m) == 340
    assert all(isinstance(v, str) and v.isdigit() for v in m.values())
    assert m["arkaba-dry-a"] == "285" and m["mt-barney-dry-a"] == "1" and m["mourachan-wet-b"] == "424"
    assert all(re.fullmatch(r"[a-z0-9&-]+-(dry|wet)-(a|b)", k) for k in m)
    sites = {k.rsplit("-", 2)[0] for k in m}
    assert len(sites) == 85 and all(f"{s}-{sub}" in m for s in sites for sub in ("dry-a", "dry-b", "wet-a", "wet-b"))
    assert sorted(m.values(), key=int) == sorted(set(m.values()), key=int)  # ids are unique
    assert a2o.load_site_mapping(a2o.DEFAULT_SITE_MAPPING) == m
    assert a2o.DEFAULT_SITE_MAPPING.is_file()
    # A notebook-parsed name finds its id through site_key.
    r = a2o.parse_filename("site_0285/20201014T010000+1030_Arkaba-Dry-A_49500.flac")
    assert a2o.lookup_site_id(m, r) == "285"


def test_mapping_from_file_keeps_values(tmp_path: Path) -> None:
    m = a2o.load_site_mapping(DATA / "a2o" / "site_name_to_id_mapping.json")
    assert len(m) == 28 and m["fowlers-gap-wet-b"] == 101 and all(type(v) is int for v in m.values())
    assert a2o.load_site_mapping(str(DATA / "a2o" / "site_name_to_id_mapping.json")) == m
    p = tmp_path / "sites.json"
    p.write_text(json.dumps({"a-wet-a": "7", "b-dry-b": 8, "c-wet-b": None}))
    assert a2o.load_site_mapping(p) == {"a-wet-a": "7", "b-dry-b": 8, "c-wet-b": None}
    assert a2o.load_site_mapping(f"file://{p}") == {"a-wet-a": "7", "b-dry-b": 8, "c-wet-b": None}


def test_mapping_from_memory_url() -> None:
    url = "memory://a2o-test-sites/mapping.json"
    fs = fsspec.filesystem("memory")
    try:
        with fsspec.open(url, "wb") as f:
            f.write(b'{"fowlers-gap-wet-b": "96"}')
        assert a2o.load_site_mapping(url) == {"fowlers-gap-wet-b": "96"}
        assert a2o.load_site_mapping(url, storage_options={}) == {"fowlers-gap-wet-b": "96"}
    finally:
        fs.rm("/a2o-test-sites", recursive=True)


@pytest.mark.parametrize(
    "content,why",
    [
        (b"{not json", "not a valid JSON"),
        (b"", "not a valid JSON"),
        (b"\xff\xfe\x00garbage", "not a valid JSON"),
        (b'["a-wet-a", 1]', "not a JSON list"),
        (b'"a-wet-a"', "not a JSON str"),
        (b'{"a-wet-a": 1, "a-wet-a": 2}', "duplicate key 'a-wet-a'"),
    ],
)
def test_mapping_errors_name_the_file(tmp_path: Path, content: bytes, why: str) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(a2o.SiteMappingError, match=re.escape(why)) as err:
        a2o.load_site_mapping(p)
    assert str(p) in str(err.value) and err.value.source == str(p)
    assert isinstance(err.value, ValueError)


def test_mapping_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        a2o.load_site_mapping(tmp_path / "absent.json")
    with pytest.raises(TypeError):
        a2o.load_site_mapping(42)  # type: ignore[arg-type]


EXPECTED_FROM_RESPONSE = {
    "mt-barney-dry-a": "1",
    "mt-barney-wet-a": "2",
    "bon-bon-station-wet-a": "5",  # "Bon Bon Station  Wet-A": double space
    "boolcoomatta-dry-b": "12",
    "little-llangothlin-reserve-warra-national-park-wet-b": "42",  # "/"
    "uunguu-indigenous-protected-area-wunambal-gaambera-dry-a": "61",  # ":"
    "fowlers-gap-wet-b": "96",
    "boodjamulla-lawn-hill-national-park-wet-a": "102",  # "(", ")"
    "blacksoil-creek-bowling-green-bay-national-park-dry-a": "113",
    "rinyirru-lakefield-national-park-wet-b": "160",
    "victorian-dry-eucalypt-wombat-dry-a": "245",
    "arkaba-dry-a": "285",
    "pegarah-forest-&-bootlace-reserve-dry-b": "299",
    "sturt-national-park-nw-wet-a": "317",
    "tjoritja-west-macdonnell-national-park-1-&-2-dry-a": "345",
    "monjebup-reserve-swwa-floristic-region-wet-a": "362",
    "strzelecki-93-wet-a": "370",
}


def test_build_site_mapping_on_saved_response() -> None:
    response = json.loads(API_RESPONSE.read_text())
    assert any(s["notes"] is None for s in response["data"])
    built = a2o.build_site_mapping(response["data"])
    assert built == EXPECTED_FROM_RESPONSE
    assert list(built) == [k for k in (a2o.sanitize_site_name(s["name"]) for s in response["data"] if s["notes"])]
    # Same key format and ids as the shipped mapping, which was built the same way.
    shipped = a2o.load_site_mapping()
    assert all(shipped[k] == v for k, v in built.items())
    # null notes are skipped (their keys would not be in the mapping)
    assert "qut-test-deployment-bench" not in built and "arkaba-dry-a--decommissioned-unit" not in built


def test_sanitize_site_name_is_the_notebooks() -> None:
    s = a2o.sanitize_site_name
    assert s("Arkaba Dry-A") == "arkaba-dry-a"
    assert s("Mt  Barney Dry-A") == "mt-barney-dry-a"  # "  " -> "-" first
    assert s("A   B") == "a--b"  # then the odd space
    assert s("A/B (C): D") == "a-b-c-d"
    assert s("Pegarah Forest & Bootlace") == "pegarah-forest-&-bootlace"
    assert s("ÉCOLE Site") == "école-site"


def test_build_site_mapping_semantics_and_errors() -> None:
    data = [
        {"name": "Twin Dry-A", "notes": '{"Point ID": "1"}'},
        {"name": "Twin  Dry-A", "notes": '{"Point ID": "2"}'},  # same key: the later wins
        {"name": "Gone Dry-A", "notes": None},
        {"name": "Number Wet-B", "notes": '{"Point ID": 7}'},  # kept as the API gives it
    ]
    assert a2o.build_site_mapping(data) == {"twin-dry-a": "2", "number-wet-b": 7}
    assert a2o.build_site_mapping([]) == {}
    for bad, why in [
        ([{"name": "X Dry-A", "notes": "Point ID: 5"}], "notes are not JSON"),
        ([{"name": "X Dry-A", "notes": '{"Site": "5"}'}], 'no "Point ID"'),
        ([{"name": "X Dry-A", "notes": "[1, 2]"}], 'no "Point ID"'),
        ([{"name": "X Dry-A", "notes": {"Point ID": "5"}}], "must be a JSON string"),
        ([{"name": "X Dry-A"}], "'name' and 'notes'"),
        (["X Dry-A"], "'name' and 'notes'"),
        ([{"name": None, "notes": '{"Point ID": "5"}'}], "name must be a string"),
    ]:
        with pytest.raises(a2o.SiteMappingError, match=re.escape(why)):
            a2o.build_site_mapping(bad)


class _ApiHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        routes = {
            "/sites?direction=asc&items=500": (200, self.body),
            "/fail": (500, b'{"meta": {"status": 500, "message": "Internal Server Error"}}'),
            "/garbage": (200, b"<html>maintenance</html>"),
            "/nodata": (200, b'{"meta": {"status": 200}}'),
            "/badnotes": (200, json.dumps({"data": [{"name": "X Dry-A", "notes": "{oops"}]}).encode()),
        }
        status, payload = routes.get(self.path, (404, b"{}"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@pytest.fixture
def api_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    handler = type("Handler", (_ApiHandler,), {"body": API_RESPONSE.read_bytes()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="a2o-api", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    request.addfinalizer(stop)
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_fetch_site_mapping(api_url: str) -> None:
    got = a2o.fetch_site_mapping(f"{api_url}/sites?direction=asc&items=500", timeout=5)
    assert got == EXPECTED_FROM_RESPONSE


@pytest.mark.parametrize(
    "path,why",
    [
        ("/fail", "HTTP 500"),
        ("/missing", "HTTP 404"),
        ("/garbage", "response is not JSON"),
        ("/nodata", 'no "data" list'),
        ("/badnotes", "notes are not JSON"),
    ],
)
def test_fetch_site_mapping_errors(api_url: str, path: str, why: str) -> None:
    with pytest.raises(a2o.SiteMappingError, match=re.escape(why)) as err:
        a2o.fetch_site_mapping(api_url + path, timeout=5)
    assert err.value.source == api_url + path


def test_fetch_site_mapping_unreachable_and_bad_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with socket.socket() as s:  # a port nobody listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(a2o.SiteMappingError, match="request failed"):
        a2o.fetch_site_mapping(f"http://127.0.0.1:{port}/sites", timeout=5)
    with pytest.raises(ValueError, match="http"):
        a2o.fetch_site_mapping("file:///etc/passwd")


def test_default_api_url() -> None:
    assert a2o.DEFAULT_SITES_API_URL == "https://api.acousticobservatory.org/sites?direction=asc&items=500"


def test_public_names_whatever_the_import_order() -> None:
    code = (
        "import tfrecord_numpy.perch.local as e, tfrecord_numpy.a2o as a\n"
        "from tfrecord_numpy.a2o import extract, read_shard\n"
        "import tfrecord_numpy.perch.notebook as n\n"
        "assert extract is e.extract and read_shard is n.read_shard and a.extract is e.extract\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    swapped = code.replace("perch.local as e, tfrecord_numpy.a2o as a", "a2o as a, tfrecord_numpy.perch.local as e")
    subprocess.run([sys.executable, "-c", swapped], check=True, timeout=60)


def test_metadata_columns_are_the_notebooks_keys() -> None:
    assert a2o.METADATA_COLUMNS == tuple(KEYS)
