"""The embeddings application: Perch/A2O TFRecord shards -> ``.npy`` + ``.json``.

Built on the generic core (:mod:`tfrecord_numpy`), which never imports it.
Users call it through :mod:`tfrecord_numpy.a2o` and :mod:`tfrecord_numpy.dask`.

Modules, one job each: :mod:`.names` (A2O recording names and sites),
:mod:`.fastpath` / :mod:`.records` / :mod:`.direct` (decoding a record),
:mod:`.rows` and :mod:`.outputs` (what is written), :mod:`.options`,
:mod:`.plan`, :mod:`.manifest`, :mod:`.lock` and :mod:`.job` (a run's
state), :mod:`.shard` (one shard), :mod:`.local` and :mod:`.dask` (engines),
:mod:`.notebook` (``read_shard``), :mod:`.synth` (synthetic shards).
"""
