"""Shared fixtures: the golden corpus, copied into tests/data so the project stands alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis comes with the test extra
    pass
else:
    # No wall-clock limits in tests: hypothesis's 200 ms deadline per example and
    # its too_slow health check both fail on a loaded machine.  Tests' own
    # @settings inherit this; examples are bounded by their sizes instead.
    settings.register_profile("no-clock", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("no-clock")

DATA = Path(__file__).parent / "data"
A2O = DATA / "a2o"
A2O_GZIP = DATA / "a2o_gzip"
A2O_SHARDS = sorted(p for p in A2O.iterdir() if p.name.startswith("embeddings-"))
A2O_GZIP_SHARDS = sorted(A2O_GZIP.iterdir())
CORRUPT = DATA / "corrupt"


@pytest.fixture(scope="session")
def corrupt_expected() -> dict:
    return json.loads((CORRUPT / "expected.json").read_text())


@pytest.fixture(scope="session")
def a2o_sites() -> dict:
    return json.loads((A2O / "site_name_to_id_mapping.json").read_text())
