# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""An exclusive lock on the unit's state directory, held around every step that changes it.

Juju's machine lock serialises a unit's hooks, but an action, ``juju exec``
or the charm's own tooling may run outside it. Two processes running the same
step would both run the same migration, and one's restore of a backup would
wipe the other's finished work. So every step that changes the records (a
series prepare or complete, a run of migrations, the refresh flow) runs
inside :func:`unit_lock`: ``flock(2)`` on the file ``lock`` in the state
directory.

- A second process waits, polling, for up to :data:`DEFAULT_TIMEOUT` seconds,
  then raises :class:`~charm_upgrade.StateLockTimeout` naming the holder; it
  never runs the step alongside. Once it has the lock it reads the records
  afresh, so it sees what the first one did.
- The lock is re-entrant within a process (the series flow holds it and runs
  the migrations, which take it too) and exclusive between threads.
- The kernel drops it when the holder dies, even by ``SIGKILL``: a crashed
  hook never leaves the unit locked.

The holder writes its pid, the step and the time into the file, for the
error message of a process that waits in vain. Taking the lock also drops
the temporary files that a write killed part-way left in the directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import threading
import time
from typing import TYPE_CHECKING

from . import _clock, _state
from .errors import StateLockTimeout

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Generator

__all__ = ['DEFAULT_TIMEOUT', 'LOCK_NAME', 'forget_process_locks', 'unit_lock']

LOCK_NAME = 'lock'
"""The lock file's name in the state directory."""

DEFAULT_TIMEOUT = 60.0
"""Seconds a process waits for another one's step before it gives up."""

_POLL_FIRST = 0.01
_POLL_MAX = 0.25


@dataclasses.dataclass
class _Held:
    """This process's hold on one lock file."""

    threads: threading.RLock = dataclasses.field(default_factory=threading.RLock)
    depth: int = 0
    fd: int = -1


_guard = threading.Lock()
_held: dict[str, _Held] = {}


@contextlib.contextmanager
def unit_lock(
    directory: pathlib.Path, *, step: str, timeout: float | None = None
) -> Generator[None]:
    """Hold the exclusive lock of the state directory ``directory`` around a block.

    Args:
        directory: The state directory (created if needed).
        step: What the holder does, for another process's error message.
        timeout: Seconds to wait for another process; :data:`DEFAULT_TIMEOUT`
            if None.

    Raises:
        StateLockTimeout: another process held it for longer than ``timeout``.
        OSError: the lock file cannot be created or opened (naming it).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    key = os.path.realpath(path)
    wait = DEFAULT_TIMEOUT if timeout is None else timeout
    with _guard:
        held = _held.setdefault(key, _Held())
    began = time.monotonic()
    # Another thread of this process: wait for it like for another process.
    if not held.threads.acquire(timeout=max(wait, 0.0)):
        raise _timeout(path, time.monotonic() - began, wait)
    try:
        if held.depth == 0:
            _acquire(held, path, step, began, wait)
            # Nobody else writes here now: what a killed write left can go.
            _state.drop_temporaries(directory)
        held.depth += 1
    except BaseException:
        if held.depth == 0:
            # Not entered: an open descriptor would keep the flock, and every later
            # step of this process would wait for itself.
            _close(held)
        held.threads.release()
        raise
    try:
        yield
    finally:
        held.depth -= 1
        if held.depth == 0:
            # Closing the last descriptor of the file releases the flock.
            with contextlib.suppress(OSError):
                if held.fd != -1:  # -1: forgotten after a simulated kill
                    os.ftruncate(held.fd, 0)
            _close(held)
        held.threads.release()


def _close(held: _Held) -> None:
    # The descriptor stays in ``held`` until it is closed, so that whatever stops this
    # half-way (a simulated kill) leaves it where forget_process_locks finds it.
    if held.fd != -1:
        with contextlib.suppress(OSError):
            os.close(held.fd)
        held.fd = -1


def forget_process_locks() -> None:
    """Drop every lock this process holds, as the end of the process would.

    For the test kit's simulated kills: a killed hook's frames never reach their
    ``finally``, and the descriptor they held would keep the flock for the rest of
    the test process. The in-process guards are made anew, not acquired: the kill
    may have stopped a frame while it held one.
    """
    global _guard, _held
    for held in list(_held.values()):
        _close(held)
    _guard = threading.Lock()
    _held = {}


def _acquire(held: _Held, path: pathlib.Path, step: str, began: float, wait: float) -> None:
    """Open the lock file into ``held.fd`` and take its flock; on failure, close it."""
    try:
        held.fd = fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES):
            raise
        # A read-only state directory: flock needs no write access, and the
        # step's own write then says what is wrong, naming its record.
        held.fd = fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pause = _POLL_FIRST
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - began
                if waited >= wait:
                    raise _timeout(path, waited, wait) from None
                time.sleep(min(pause, wait - waited))
                pause = min(pause * 2, _POLL_MAX)
        # For the message of a process that waits in vain; not needed on disk.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f'pid {os.getpid()}, {step}, since {_clock.utc_now()}\n'.encode(), 0)
    except BaseException:
        _close(held)
        raise


def _timeout(path: pathlib.Path, waited: float, wait: float) -> StateLockTimeout:
    try:
        holder = path.read_text(encoding='utf-8', errors='replace').strip()
    except OSError:
        holder = ''
    return StateLockTimeout(
        f'another process holds the lock {path} ({holder or "holder unknown"}) and did not '
        f'release it within {wait:g} s: it is running an upgrade step on this unit. Nothing '
        'was changed; the step runs again at the next hook, or run it again once that process '
        'is done',
        path=str(path),
        holder=holder,
        waited=waited,
    )
