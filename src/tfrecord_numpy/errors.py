"""The one error family: every decoding failure says where it happened."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Location(TypedDict, total=False):
    """Where an error happened: the keyword arguments of :class:`TFRecordError`."""

    path: str | os.PathLike[str] | None
    index: int | None
    offset: int | None


class TFRecordError(ValueError):
    """Base of every error this library raises about its input.

    ``path`` is the file or URL (or ``None`` for an in-memory buffer),
    ``index`` the record number (0-based) and ``offset`` the byte offset of
    that record's start in the uncompressed stream; any of them may be
    ``None`` where the notion does not apply (a lone serialized tensor).
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | os.PathLike[str] | None = None,
        index: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = os.fspath(path) if path is not None else None
        self.index = index
        self.offset = offset
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path is not None:
            where.append(f"file {self.path!r}")
        if self.index is not None:
            where.append(f"record {self.index}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason

    def located(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        index: int | None = None,
        offset: int | None = None,
    ) -> TFRecordError:
        """Fill in whatever location this error does not know yet (in place)."""
        if self.path is None and path is not None:
            self.path = os.fspath(path)
        if self.index is None:
            self.index = index
        if self.offset is None:
            self.offset = offset
        self.args = (self._format(),)
        return self

    def __reduce__(self) -> tuple[Callable[..., TFRecordError], tuple[object, ...]]:
        # picklable across worker processes
        return (_rebuild, (type(self), self.reason, self.path, self.index, self.offset, self.__dict__))

    def __str__(self) -> str:
        return self._format()


def _rebuild(
    cls: type[TFRecordError],
    reason: str,
    path: str | None,
    index: int | None,
    offset: int | None,
    state: dict[str, Any],
) -> TFRecordError:
    err = cls.__new__(cls)
    TFRecordError.__init__(err, reason, path=path, index=index, offset=offset)
    err.__dict__.update(state)
    return err


class CorruptRecordError(TFRecordError):
    """A masked CRC32C did not match: ``which`` is "length" or "data"."""

    def __init__(self, reason: str, *, which: str = "data", **where: Unpack[Location]) -> None:
        self.which = which
        super().__init__(reason, **where)


class TruncatedRecordError(TFRecordError):
    """The data ends inside a record's header, payload or footer."""


class CompressionError(TFRecordError):
    """The compressed stream is not what was declared (wrong codec, damage)."""


class RecordTooLargeError(TFRecordError):
    """A record's length exceeds ``max_record_bytes``."""


class DecodeError(TFRecordError):
    """A record's payload is not a valid Example / TensorProto."""


class SchemaError(TFRecordError):
    """A value is valid protobuf but not what the schema or spec asks for."""
