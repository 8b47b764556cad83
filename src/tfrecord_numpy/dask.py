"""Scale-out on Dask, under the names users call: ``tfrecord_numpy.dask.extract``,
``extract_with_cluster`` and ``read_embeddings`` (needs the ``dask`` extra).

The code lives in :mod:`tfrecord_numpy.perch.dask`; ``import tfrecord_numpy``
never imports dask.
"""

from __future__ import annotations

from .perch.dask import METADATA_COLUMNS, extract, extract_with_cluster, read_embeddings

__all__ = ["METADATA_COLUMNS", "extract", "extract_with_cluster", "read_embeddings"]
