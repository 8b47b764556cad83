"""Files that appear whole or not at all, on any fsspec filesystem.

Every output is written under a hidden temporary name beside its final name
and moved into place only by :meth:`AtomicFile.commit`; a crash, an error or
a ``kill -9`` leaves at most a ``.<name>.tmp-<id>`` file, which
:func:`is_tmp_name` recognises so that the next run can remove it.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from typing import IO, Any, Protocol


class Digest(Protocol):
    """Anything with ``update(bytes)``: a hashlib object, a running CRC."""

    def update(self, data: bytes, /) -> None: ...


TMP_MARK = ".tmp-"


def tmp_name(final: str) -> str:
    """A hidden, unique temporary name in the same folder as ``final``."""
    head, _, name = final.rpartition("/")
    tmp = f".{name}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    return f"{head}/{tmp}" if head else tmp


def is_tmp_name(path: str) -> bool:
    """Whether ``path`` names a temporary file made by :func:`tmp_name`."""
    name = path.rstrip("/").rpartition("/")[2]
    return name.startswith(".") and TMP_MARK in name


class AtomicFile:
    """A writable binary file on an fsspec filesystem, published by rename.

    If the filesystem's files cannot seek (object stores), writes go to a
    local spool file that is uploaded on commit, so seeking still works
    (``spool=False`` for writers that never seek).
    """

    def __init__(self, fs: Any, final: str, *, spool: bool = True, digest: Digest | None = None) -> None:
        self.fs = fs
        self.final = final
        self.tmp = tmp_name(final)
        try:
            self._remote: IO[bytes] = fs.open(self.tmp, "wb")
        except OSError as exc:
            raise _located(exc, self.tmp) from exc
        self._spool: IO[bytes] | None
        if self._remote.seekable() or not spool:
            self._spool = None
            target: IO[bytes] = self._remote
        else:
            self._spool = tempfile.TemporaryFile(prefix="tfrecord-numpy-")
            target = self._spool
        #: where to write: a file whose OSErrors (a full disk) name this output
        self.f: IO[bytes] = _Named(target, final)  # type: ignore[assignment]
        self.done = False
        self.spooled = self._spool is not None
        #: fed the bytes of a spooled file on their way up (then :attr:`digested` is True),
        #: so the published object never has to be downloaded again to be checked
        self.digest = digest
        self.digested = False

    def commit(self) -> None:
        """Flush, close and move into place.

        A spooled file feeds :attr:`digest` on its way up.
        """
        try:
            if self._spool is not None:
                self._spool.seek(0)
                while chunk := self._spool.read(8 << 20):
                    if self.digest is not None:
                        self.digest.update(chunk)
                    self._remote.write(chunk)
                self.digested = self.digest is not None
                self._spool.close()
            self._remote.close()
            self.fs.mv(self.tmp, self.final)
        except OSError as exc:
            self.abort()
            raise _located(exc, self.final) from exc
        self.done = True

    def abort(self) -> None:
        """Drop the temporary file (best effort)."""
        if self.done:
            return
        self.done = True
        for f in (self._spool, self._remote):
            try:
                if f is not None:
                    f.close()
            except Exception:
                pass
        try:
            self.fs.rm(self.tmp)
        except Exception:
            pass

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class _Named:
    """A file whose write errors say which output they are about (a full disk names none)."""

    def __init__(self, f: IO[bytes], name: str) -> None:
        self._f = f
        self._name = name

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            raise _located(exc, self._name) from exc

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._f, attr)


def _located(exc: OSError, path: str) -> OSError:
    """An ``OSError`` that names the file it is about (a full disk names none)."""
    if getattr(exc, "filename", None):
        return exc
    if exc.errno is not None:
        return OSError(exc.errno, exc.strerror or str(exc), path)
    return OSError(f"{exc} (writing {path})")


def write_json_atomic(fs: Any, final: str, obj: Any) -> None:
    """``json.dumps(obj, indent=1)`` published atomically at ``final``."""
    with AtomicFile(fs, final) as out:
        out.f.write(json.dumps(obj, indent=1, sort_keys=False).encode("utf-8"))
