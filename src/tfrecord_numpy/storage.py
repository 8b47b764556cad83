"""Where bytes come from and go to: fsspec URLs, paths, file objects.

One abstraction (fsspec) covers local files, ``gs://``, ``memory://`` and the
rest; nothing here special-cases a backend.  Compression is detected here
(suffix, then gzip magic) and undone by :mod:`.compression`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Literal, Union, cast

import fsspec
from fsspec.core import url_to_fs

from .compression import GZIP_MAGIC, Compression, DecompressingReader, ReadableStream
from .framing import HEADER_BYTES, check_header

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Source = Union[str, "os.PathLike[str]", BinaryIO, IO[bytes]]
CompressionArg = Literal["auto", "gzip", "zlib", "none"] | None
#: what :func:`normalize_compression` gives: a codec, "auto" (detect it) or None
NormalizedCompression = Literal["auto", "gzip", "zlib"]

_SUFFIXES: dict[str, Compression] = {".gz": "gzip", ".gzip": "gzip", ".zz": "zlib", ".zlib": "zlib"}
DEFAULT_BLOCK_SIZE = 8 << 20


def normalize_compression(compression: str | None) -> NormalizedCompression | None:
    """Map the user's spelling to "auto", "gzip", "zlib" or None."""
    if compression is None:
        return None
    c = str(compression).lower()
    if c in ("none", "", "uncompressed"):
        return None
    if c in ("auto", "gzip", "zlib"):
        return cast(NormalizedCompression, c)
    raise ValueError(f"compression must be None, 'auto', 'gzip' or 'zlib', not {compression!r}")


def compression_from_name(name: str) -> Compression | None:
    """The compression a file's suffix implies, if any."""
    return _SUFFIXES.get(os.path.splitext(name)[1].lower())


def source_name(source: Any) -> str | None:
    """A printable name for a source (path, URL or the file object's name)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "path", None) or getattr(source, "name", None)
    return name if isinstance(name, str) else None


class _Prefixed(io.RawIOBase):
    """A stream that first replays ``head`` (bytes already read to sniff it)."""

    def __init__(self, head: bytes, raw: BinaryIO, *, close_raw: bool = True) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._raw = raw
        self._close_raw = close_raw
        self.name = getattr(raw, "name", None)

    def tell(self) -> int:
        try:
            return int(self._raw.tell()) - len(self._head)
        except Exception:
            return 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        view = memoryview(b).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return _readinto(self._raw, view)

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                out = bytes(self._head) + self._raw.read()
                self._head = memoryview(b"")
                return out
            n = min(size, len(self._head))
            out = bytes(self._head[:n])
            self._head = self._head[n:]
            return out
        return self._raw.read(size)

    def close(self) -> None:
        try:
            if self._close_raw:
                self._raw.close()
        finally:
            super().close()


def _readinto(f: Any, view: memoryview) -> int:
    """``f.readinto(view)``, or a read-and-copy where the object lacks it."""
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        n = readinto(view)
        return 0 if n is None else n
    data = f.read(len(view))
    n = len(data)
    view[:n] = data
    return n


def readinto(f: ReadableStream, view: memoryview) -> int:
    """Fill as much of ``view`` as the stream gives in one call (0 at EOF)."""
    return _readinto(f, view)


def open_url(
    url: str | os.PathLike[str], mode: str = "rb", *, storage_options: dict[str, Any] | None = None, **kwargs: Any
) -> IO[bytes]:
    """Open a path or fsspec URL with fsspec (no decompression)."""
    fs, path = url_to_fs(os.fspath(url), **(storage_options or {}))
    f: IO[bytes] = fs.open(path, mode, **kwargs)
    if mode == "rb" and isinstance(f, io.BytesIO):
        # an in-memory store (memory://) hands every opener the same object, with
        # one shared position: read a private view of its bytes instead
        return io.BytesIO(f.getbuffer())
    return f


@dataclass
class OpenedSource:
    """A readable (decompressed) stream plus what errors should call it."""

    stream: Any
    name: str | None
    compression: str | None
    owned: bool  # whether closing is ours to do
    raw: Any = None  # the underlying (compressed) stream, for progress

    def raw_position(self) -> int:
        """Bytes consumed from the underlying file so far (compressed bytes if compressed)."""
        try:
            stored = getattr(self.raw, "stored_position", None)  # transcoded objects
            return int(stored() if stored is not None else self.raw.tell())
        except Exception:
            return 0

    def close(self) -> None:
        if self.owned:
            self.stream.close()


def sniff_compression(head: bytes) -> Compression | None:
    """ "gzip" when a stream's first bytes are a gzip header and not a valid TFRecord
    header (a record length's first two bytes can be the gzip magic), else None."""
    if len(head) >= HEADER_BYTES and check_header(head) >= 0:
        return None
    if head[:3] == GZIP_MAGIC + b"\x08" and (len(head) < 4 or head[3] & 0xE0 == 0):
        return "gzip"  # magic, deflate, no reserved flag bits
    return None


def open_source(
    source: Source,
    *,
    compression: str | None = "auto",
    storage_options: dict[str, Any] | None = None,
    block_size: int | None = None,
) -> OpenedSource:
    """Open ``source`` for reading records, undoing its compression.

    ``block_size``: bytes per read; None takes the backend's default (a remote
    object's range requests: :data:`tfrecord_numpy.remote.DEFAULT_BLOCK_SIZE`)."""
    compression = normalize_compression(compression)
    name = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        from .remote import open_input, should_use_remote  # lazy: no gcsfs at import time

        if should_use_remote(source):
            # block reads with prefetch and exact-offset resume on transient faults
            if block_size is None:
                raw = open_input(os.fspath(source), storage_options=storage_options)
            else:
                raw = open_input(os.fspath(source), storage_options=storage_options, block_size=block_size)
        else:
            raw = open_url(source, "rb", storage_options=storage_options, block_size=block_size or DEFAULT_BLOCK_SIZE)
        owned = True
    elif hasattr(source, "read"):
        raw = source
        owned = False
    else:
        raise TypeError(f"source must be a path, URL or binary file object, not {type(source).__name__}")
    if compression == "auto":
        # a transcoded object's gzip layer is already undone: trust the bytes, not the suffix
        transcoded = getattr(raw, "transcoded", False)
        compression = compression_from_name(name) if name and not transcoded else None
        if compression is None:
            head = raw.read(HEADER_BYTES)
            if not isinstance(head, bytes):
                head = bytes(head)
            compression = sniff_compression(head)
            raw = _Prefixed(head, raw, close_raw=owned)
    stream = raw
    if compression is not None:
        stream = DecompressingReader(raw, compression, name=name, close_raw=owned)
    # a caller's file object stays the caller's: we close only what we opened
    return OpenedSource(stream=stream, name=name, compression=compression, owned=owned, raw=raw)


#: one source, or several: what ``read_records`` and friends take
Sources = Source | Sequence[Source]


def resolve_sources(sources: Sources, *, storage_options: dict[str, Any] | None = None) -> list[Source]:
    """One source or a list of them, expanded as the CLI expands them.

    Paths and URLs may be files, directories (every non-hidden file in it)
    or globs (:func:`expand_sources`); binary file objects pass as they are.
    """
    if isinstance(sources, (str, os.PathLike)) or hasattr(sources, "read"):
        items: list[Source] = [sources]  # type: ignore[list-item]
    else:
        items = list(sources)
    out: list[Source] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            out.extend(expand_sources(item, storage_options=storage_options))
        elif hasattr(item, "read"):
            out.append(item)
        else:
            raise TypeError(f"a source must be a path, URL or binary file object, not {type(item).__name__}")
    return out


def expand_sources(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Turn files, directories, globs and URLs into a sorted list of file URLs.

    A directory yields every non-hidden file directly in it; a glob its
    matching files; anything that matches nothing is an error.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out: list[str] = []
    for src in sources:
        out.extend(_expand_one(os.fspath(src), storage_options))
    unique = list(dict.fromkeys(out))  # first occurrence of each, in order
    return unique


def _unstrip(fs: Any, original: str, path: str) -> str:
    """Give a listed path back its protocol, so it can be reopened alone."""
    if "://" in original or "::" in original:
        url: str = fs.unstrip_protocol(path)
        return url
    return path


def _hidden(path: str) -> bool:
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith(".")


def _expand_one(src: str, storage_options: dict[str, Any] | None) -> list[str]:
    fs, path = url_to_fs(src, **(storage_options or {}))
    if fsspec.core.has_magic(path) and not fs.exists(path):  # a name with [*?] that exists is literal
        matches = [p for p in fs.glob(path) if not _hidden(p)]
        files = sorted(p for p in matches if fs.isfile(p))
        if not files:
            raise FileNotFoundError(f"no files match {src!r}")
        return [_unstrip(fs, src, p) for p in files]
    # one metadata request (a stat, a HEAD, an object's metadata): fsspec's
    # isfile/isdir of an http(s) URL GET the body
    try:
        kind = fs.info(path).get("type")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {src!r}") from None
    if kind == "file" or (kind != "directory" and fs.isfile(path)):
        return [src]
    if kind == "directory":
        entries = fs.ls(path, detail=True)
        files = sorted(
            e["name"]
            for e in entries
            if not _hidden(e["name"])
            # symlinks are followed: a linked file counts as a file
            and (e.get("type") == "file" or (e.get("islink") and fs.isfile(e["name"])))
        )
        if not files:
            raise FileNotFoundError(f"directory {src!r} holds no files")
        return [_unstrip(fs, src, p) for p in files]
    raise FileNotFoundError(f"no such file: {src!r}")
