"""The ``tfrecord-numpy`` command.

Exit codes: 0 success; 1 bad data or a failed job (one line on stderr
naming file, record and offset); 2 bad usage.
"""

from __future__ import annotations

import os
import sys

# Only os and sys at import time: the command catches Ctrl-C from main() on,
# so the less that loads before it, the shorter the window it cannot cover.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any


def _storage_options(args: argparse.Namespace) -> dict[str, Any]:
    import json

    opts: dict[str, Any] = {}
    for item in args.storage_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(_usage_error(f"--storage-option wants KEY=VALUE, got {item!r}"))
        try:
            opts[key] = json.loads(value)
        except ValueError:
            opts[key] = value
    if args.token is not None:
        opts["token"] = args.token
    return opts


def _usage_error(msg: str) -> int:
    print(f"tfrecord-numpy: error: {msg}", file=sys.stderr)
    return 2


def sample_sources(name: str = "a2o") -> list[str]:
    """The sample shards that ship inside the package: ``a2o`` (the notebook's
    layout), or ``public`` (the public A2O set's: float16, nuisances, config.json)."""
    from importlib import resources

    folder = resources.files("tfrecord_numpy") / "data" / "sample"
    if name == "public":
        return [str(folder / "public")]
    return sorted(str(p) for p in folder.iterdir() if p.name.startswith("embeddings-"))


def _add_storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--token", help="gcsfs credentials: 'anon', 'google_default', 'cloud' or a service-account JSON path"
    )
    p.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        help="fsspec storage option (repeatable; VALUE parsed as JSON when it can be)",
    )
    p.add_argument(
        "--read-concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="range requests in flight per remote shard (default 4, or $TFRECORD_NUMPY_READ_CONCURRENCY); "
        "memory about (N+1) x 16 MiB per shard being read",
    )


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="tfrecord-numpy",
        description="Read TFRecord files into numpy without TensorFlow.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"tfrecord-numpy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("extract", help="A2O/Perch shards -> embeddings/*.npy + metadata/*.json")
    ex.add_argument("sources", nargs="*", metavar="SOURCE", help="file, directory, glob or fsspec URL")
    ex.add_argument("--out", required=True, metavar="DEST", help="local directory or fsspec URL")
    ex.add_argument(
        "--sample",
        nargs="?",
        const="a2o",
        choices=["a2o", "public"],
        help="extract the sample shards shipped in the package (public: laid out like the public A2O set)",
    )
    ex.add_argument(
        "--sites", metavar="MAPPING", help="site-name-to-id JSON file or URL (default: the public A2O mapping)"
    )
    ex.add_argument("--workers", type=_positive_int, metavar="N", help="worker processes (default: number of CPUs)")
    ex.add_argument(
        "--hop-seconds",
        type=float,
        default=None,
        help="seconds between embedding windows (default: Perch's config.json beside the shards, else 5)",
    )
    ex.add_argument(
        "--perch-config", metavar="PATH/URL", help="Perch's config.json (default: the one beside the shards)"
    )
    ex.add_argument("--compression", choices=["auto", "none", "gzip", "zlib"], default="auto")
    ex.add_argument("--on-corrupt", choices=["error", "skip"], default="error")
    ex.add_argument("--on-unknown-site", choices=["error", "null"], default="error")
    ex.add_argument("--overwrite", action="store_true", help="redo every shard, even complete ones")
    ex.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    ex.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    ex.add_argument("--max-record-bytes", type=_positive_int, default=1 << 30)
    ex.add_argument(
        "--schema",
        choices=["a2o", "perch"],
        default="a2o",
        help="metadata rows: a2o (the notebook's: names parsed, sites mapped) or perch (any Perch "
        "embedding set: filename, timestamp_s, window_index, offset_s, channel_index)",
    )
    ex.add_argument(
        "--logits",
        metavar="HEAD[,HEAD...]|all",
        help="also write each logits head (e.g. nuisances) to DEST/logits/<head>/<shard>.npy, row-aligned",
    )
    ex.add_argument(
        "--logits-in-metadata",
        action="store_true",
        help="with --logits: also put each row's head values into its metadata row",
    )
    ex.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="RULE",
        help='drop rows where a logits head says so: "HEAD[CLASS] OP THRESHOLD [@ CHANNELS]", '
        'e.g. "nuisances[speech] > -0.25" or "nuisances[empty] > 0 @ 1-4" (repeatable)',
    )
    ex.add_argument(
        "--classes",
        action="append",
        metavar="HEAD=a,b,c",
        help="class names of a logits head's columns, for --drop (nuisances: empty,speech,unknown)",
    )
    ex.add_argument(
        "--blocklist", metavar="CSV", help="drop the rows of records whose (filename, timestamp_s) is listed"
    )
    ex.add_argument(
        "--metadata-format",
        choices=["json", "parquet"],
        default="json",
        help="metadata/<shard>.json (default) or .parquet with typed columns (needs tfrecord-numpy[arrow])",
    )
    ex.add_argument(
        "--checksum",
        choices=["crc32c", "sha256"],
        default="crc32c",
        help="checksum of each output in the manifest (crc32c: what GCS keeps, verified from object metadata)",
    )
    dk = ex.add_mutually_exclusive_group()
    dk.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="run on a running Dask cluster (e.g. tcp://10.0.0.5:8786); needs tfrecord-numpy[dask]",
    )
    dk.add_argument(
        "--dask-local",
        type=_positive_int,
        metavar="N",
        help="run on a local Dask cluster of N worker processes (127.0.0.1 only); needs tfrecord-numpy[dask]",
    )
    ex.add_argument(
        "--split-bytes",
        type=_positive_int,
        metavar="BYTES",
        help="with --dask-*: read uncompressed shards larger than BYTES as several tasks",
    )
    _add_storage_args(ex)

    st = sub.add_parser("sites", help="rebuild the site-name-to-id mapping from the A2O sites API")
    st.add_argument("--out", required=True, metavar="FILE")
    st.add_argument("--api-url", default=None, help="sites API URL (default: the public A2O API)")

    ins = sub.add_parser("inspect", help="what the records hold: kinds, features, tensors, a spec to paste")
    ins.add_argument("sources", nargs="+", metavar="SOURCE")
    ins.add_argument("--records", type=_positive_int, metavar="N", help="read only the first N records of each source")
    ins.add_argument("--json", action="store_true", help="print the report as JSON")
    ins.add_argument("--compression", choices=["auto", "none", "gzip", "zlib"], default="auto")
    _add_storage_args(ins)

    cv = sub.add_parser(
        "convert", help="Example shards -> one Parquet file per shard, resumable (needs tfrecord-numpy[arrow])"
    )
    cv.add_argument("sources", nargs="+", metavar="SOURCE", help="file, directory, glob or fsspec URL")
    cv.add_argument("--out", required=True, metavar="DIR", help="local directory or fsspec URL")
    cv.add_argument("--format", choices=["parquet"], default="parquet")
    cv.add_argument("--overwrite", action="store_true", help="redo every shard, even complete ones")
    cv.add_argument("--compression", choices=["auto", "none", "gzip", "zlib"], default="auto")
    _add_storage_args(cv)

    hd = sub.add_parser("head", help="the first records as JSON lines")
    hd.add_argument("sources", nargs="+", metavar="SOURCE")
    hd.add_argument("-n", type=_positive_int, default=5, metavar="N", help="how many records (default 5)")
    hd.add_argument("--compression", choices=["auto", "none", "gzip", "zlib"], default="auto")
    _add_storage_args(hd)

    vf = sub.add_parser("verify", help="read every record, check both CRCs, report counts")
    vf.add_argument("sources", nargs="+", metavar="SOURCE")
    vf.add_argument("--compression", choices=["auto", "none", "gzip", "zlib"], default="auto")
    _add_storage_args(vf)
    return parser


def _hop(value: float | None) -> float | int | None:
    return None if value is None else int(value) if float(value).is_integer() else value


def cmd_extract(args: argparse.Namespace) -> int:
    from .a2o import extract, format_summary

    sources = list(args.sources)
    if args.sample:
        sources += sample_sources(args.sample)
    if not sources:
        return _usage_error("extract needs SOURCE... or --sample")
    options = dict(
        sites=args.sites,
        hop_seconds=_hop(args.hop_seconds),
        compression=args.compression,
        on_corrupt=args.on_corrupt,
        on_unknown_site=args.on_unknown_site,
        overwrite=args.overwrite,
        quiet=args.quiet,
        summary_json=args.summary_json,
        storage_options=_storage_options(args),
        max_record_bytes=args.max_record_bytes,
        checksum=args.checksum,
        schema=args.schema,
        logits=args.logits,
        logits_in_metadata=args.logits_in_metadata,
        perch_config=args.perch_config,
        drop=tuple(args.drop),
        classes=args.classes,
        blocklist=args.blocklist,
        metadata_format=args.metadata_format,
    )
    if args.dask_scheduler is not None or args.dask_local is not None:
        if args.workers is not None:
            return _usage_error("--workers is for local runs; size the Dask cluster instead")
        try:
            from .dask import extract_with_cluster
        except ImportError as exc:
            return _usage_error(str(exc))
        summary = extract_with_cluster(
            sources,
            args.out,
            scheduler=args.dask_scheduler,
            local_workers=args.dask_local,
            split_bytes=args.split_bytes,
            **options,
        )
    else:
        if args.split_bytes is not None:
            return _usage_error("--split-bytes needs --dask-scheduler or --dask-local")
        summary = extract(sources, args.out, workers=args.workers, **options)
    if not args.quiet:
        print(format_summary(summary), file=sys.stderr)
    return 0


def cmd_sites(args: argparse.Namespace) -> int:
    from fsspec.core import url_to_fs

    from . import a2o
    from .atomic import write_json_atomic

    kwargs = {} if args.api_url is None else {"api_url": args.api_url}
    mapping = a2o.fetch_site_mapping(**kwargs)
    fs, path = url_to_fs(args.out)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    write_json_atomic(fs, path, mapping)
    print(f"wrote {len(mapping)} sites to {args.out}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .reader import read_records
    from .storage import expand_sources

    opts = _storage_options(args)
    total = 0
    for src in expand_sources(args.sources, storage_options=opts):
        n = nbytes = 0
        for rec in read_records(src, compression=args.compression, storage_options=opts):
            n += 1
            nbytes += len(rec)
        total += n
        print(f"{src}\t{n} records\t{nbytes} payload bytes")
    print(f"total\t{total} records")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from .inspection import format_report, inspect_records

    report = inspect_records(
        args.sources,
        max_records=args.records,
        compression=args.compression,
        storage_options=_storage_options(args),
    )
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def cmd_head(args: argparse.Namespace) -> int:
    import json

    from .inspection import head_records

    for record in head_records(
        args.sources, args.n, compression=args.compression, storage_options=_storage_options(args)
    ):
        print(json.dumps(record))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .arrow import convert

    s = convert(
        args.sources,
        args.out,
        format=args.format,
        compression=args.compression,
        storage_options=_storage_options(args),
        overwrite=args.overwrite,
    )
    print(
        f"{s['shards']} shards ({s['converted']} converted, {s['already_complete']} already complete), "
        f"{s['records']} records in {s['seconds']:.2f} s -> {s['out']}",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:  # from the first moment: a Ctrl-C while modules load is a clean stop too
        return _main(argv)
    except KeyboardInterrupt as exc:
        # An interrupt that passed through an exec/eval of source text (a dataclass
        # being made while a module loads) leaves CPython flagged to kill itself with
        # SIGINT at exit, handled or not; every such eval clears the flag first.
        eval("None")
        signum = getattr(exc, "signum", 2)  # Ctrl-C, or SIGTERM/SIGHUP during a job
        print(
            f"tfrecord-numpy: stopped ({'interrupted' if signum == 2 else f'signal {signum}'}); "
            "shards already published are recorded, a rerun does the rest",
            file=sys.stderr,
        )
        return 128 + signum


def _main(argv: Sequence[str] | None) -> int:
    from .errors import TFRecordError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "read_concurrency", None) is not None:
        # through the environment: it reaches worker processes (set before any pool starts)
        os.environ["TFRECORD_NUMPY_READ_CONCURRENCY"] = str(args.read_concurrency)
    handler = {
        "extract": cmd_extract,
        "sites": cmd_sites,
        "verify": cmd_verify,
        "inspect": cmd_inspect,
        "head": cmd_head,
        "convert": cmd_convert,
    }[args.command]
    try:
        return handler(args)
    except (TFRecordError, ValueError, OSError, RuntimeError, ImportError) as exc:
        msg = str(exc).replace("\n", " ")
        print(f"tfrecord-numpy: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 1


def run() -> None:
    """The console entry point: :func:`main`, then exit with its code.  Once main
    has returned the job is over, so a Ctrl-C while the interpreter shuts down is
    ignored (Python would otherwise restore the default action and the process
    would die by SIGINT, with no message, after a complete run)."""
    import signal

    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
