"""One writer per destination: ``DEST/.tfrecord-numpy.lock`` (or another name).

The lock is a small JSON object (host, pid, run id, start time, heartbeat)
created only if absent: ``open(mode="xb")``, which is ``O_EXCL`` on a local
disk and an ``ifGenerationMatch=0`` upload on Google Cloud Storage.  A lock
whose holder is gone is taken over: on the same host when its process no
longer exists, elsewhere when its heartbeat (refreshed every
``heartbeat_s``) is older than ``stale_after_s``.  After a takeover the lock
is read back, so of two processes racing for a stale lock only one goes on.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

LOCK_NAME = ".tfrecord-numpy.lock"
DEFAULT_HEARTBEAT_S = 30.0
DEFAULT_STALE_AFTER_S = 600.0


class DestinationLocked(OSError):
    """Another run is writing to this destination."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DestLock:
    """Hold DEST for one run (a context manager)."""

    def __init__(
        self,
        fs: Any,
        root: str,
        *,
        name: str = LOCK_NAME,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
    ) -> None:
        self.fs = fs
        self.path = f"{root}/{name}"
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.run = uuid.uuid4().hex
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _info(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "run": self.run,
            "started": self.started,
            "heartbeat": time.time(),
        }

    def _create(self) -> bool:
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(json.dumps(self._info()).encode())
        except FileExistsError:
            return False
        return True

    def _read(self) -> dict[str, Any] | None:
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate(self.path)  # listings cached by object-store filesystems go stale
        try:
            with self.fs.open(self.path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            return not _pid_alive(holder["pid"])
        beat = holder.get("heartbeat")
        if not isinstance(beat, (int, float)):
            try:
                beat = float(self.fs.modified(self.path).timestamp())
            except Exception:
                return False
        return time.time() - beat > self.stale_after_s

    def acquire(self) -> DestLock:
        for _ in range(3):
            # look first: a store that ignores the create-only precondition (an
            # emulator) must not let a second run overwrite a live lock
            holder = self._read()
            if holder is None and self._create():
                break
            holder = holder if holder is not None else self._read()
            if holder is None:
                continue  # released meanwhile: try again
            if not self._stale(holder):
                raise DestinationLocked(self._held_message(holder))
            try:
                self.fs.rm(self.path)
            except FileNotFoundError:
                pass
        else:
            raise DestinationLocked(f"could not take the lock {self.path} (another run is starting)")
        mine = self._read()
        if not mine or mine.get("run") != self.run:  # lost a takeover race
            raise DestinationLocked(self._held_message(mine or {}))
        self._thread = threading.Thread(target=self._beat, name="tfrecord-numpy-lock", daemon=True)
        self._thread.start()
        return self

    def _held_message(self, holder: dict[str, Any]) -> str:
        since = holder.get("started")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
        return (
            f"destination in use: {self.path} is held by pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')} since {when}; wait for that run to end (a lock whose "
            f"process is gone is taken over automatically)"
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                holder = self._read()
                if holder and holder.get("run") == self.run:
                    with self.fs.open(self.path, "wb") as f:
                        f.write(json.dumps(self._info()).encode())
            except Exception:
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        holder = self._read()
        if holder and holder.get("run") == self.run:
            try:
                self.fs.rm(self.path)
            except (FileNotFoundError, OSError):
                pass

    def __enter__(self) -> DestLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
