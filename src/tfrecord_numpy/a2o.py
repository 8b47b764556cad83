"""The A2O/Perch extraction job and its pieces, under the names users call.

``a2o.extract`` (the job), ``a2o.read_shard`` (one shard in memory),
``a2o.parse_filename``, ``a2o.load_site_mapping`` and the other recording-name
and site helpers.  The code lives in :mod:`tfrecord_numpy.perch`.
"""

from __future__ import annotations

from .perch.job import format_summary
from .perch.local import extract
from .perch.names import (
    DEFAULT_SITE_MAPPING,
    DEFAULT_SITES_API_URL,
    METADATA_COLUMNS,
    NOTEBOOK_FILENAME_PATTERN,
    RecordName,
    SiteMappingError,
    build_site_mapping,
    fetch_site_mapping,
    load_site_mapping,
    lookup_site_id,
    metadata_rows,
    parse_filename,
    record_metadata,
    recording_offsets,
    sanitize_site_name,
    site_key,
)
from .perch.notebook import read_shard
from .perch.options import ExtractOptions

__all__ = [
    "DEFAULT_SITES_API_URL",
    "DEFAULT_SITE_MAPPING",
    "METADATA_COLUMNS",
    "NOTEBOOK_FILENAME_PATTERN",
    "ExtractOptions",
    "RecordName",
    "SiteMappingError",
    "build_site_mapping",
    "extract",
    "fetch_site_mapping",
    "format_summary",
    "load_site_mapping",
    "lookup_site_id",
    "metadata_rows",
    "parse_filename",
    "read_shard",
    "record_metadata",
    "recording_offsets",
    "sanitize_site_name",
    "site_key",
]
