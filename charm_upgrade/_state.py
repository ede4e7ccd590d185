# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The unit's state directory, and the one way files are written and read in it.

ops commits stored state, and charms.reactive its flags, only when a hook
succeeds. What must survive a failed hook (the before-state, the applied
migrations) is written here instead, with :func:`atomic_write`: a temporary
file in the same directory, fsync, rename over the old file, fsync of the
directory. A crash leaves the old file or the new one, never half of one, and
once it returns the new one is on disk. The systemd hold drop-ins are written
the same way.

Every error names the file: an ``OSError`` keeps its errno (``ENOSPC``,
``EROFS``) and gets the path as its ``filename``; a file that cannot be read
as JSON is a :class:`~charm_upgrade.StateFileError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from typing import TYPE_CHECKING, Any

from .errors import StateFileError

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = [
    'atomic_write',
    'decode_text',
    'drop_temporaries',
    'fsync',
    'naming',
    'read_document',
    'read_json',
    'remove',
    'state_dir',
    'state_file_error',
    'write_all',
    'write_json',
]

STATE_DIR_ENV = 'CHARM_UPGRADE_STATE_DIR'

TEMPORARY_SUFFIX = '.charm-upgrade-tmp'
"""How the temporary file of an :func:`atomic_write` ends (see :func:`drop_temporaries`)."""
_STATE_DIR_NAME = '.charm_upgrade'

_GENERIC_ADVICE = (
    'fix it by hand, or move it away to have the library act as if nothing was recorded'
)


def state_dir() -> pathlib.Path:
    """Return the unit's state directory, creating it if needed.

    ``$CHARM_UPGRADE_STATE_DIR`` if set; otherwise ``.charm_upgrade`` inside the
    charm directory (``$JUJU_CHARM_DIR``, ``$CHARM_DIR``, or the working
    directory, which is the charm directory in a hook). Juju keeps the charm
    directory across hooks, reboots and charm upgrades.
    """
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        path = pathlib.Path(explicit)
    else:
        charm_dir = os.environ.get('JUJU_CHARM_DIR') or os.environ.get('CHARM_DIR') or '.'
        path = pathlib.Path(charm_dir) / _STATE_DIR_NAME
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def atomic_write(path: pathlib.Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``, atomically and durably.

    The temporary file is created 0600 and gets ``mode`` before any data is
    written to it.

    Raises:
        OSError: the file could not be written (its errno kept, such as
            ``ENOSPC`` or ``EROFS``; ``filename`` is ``path``). The old file,
            if any, is unchanged and no temporary file is left.
    """
    with naming(path):
        fd, tmp_name = tempfile.mkstemp(
            prefix=f'.{path.name}.', suffix=TEMPORARY_SUFFIX, dir=path.parent
        )
        try:
            try:
                if mode != 0o600:
                    os.fchmod(fd, mode)
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
    fsync(path.parent)


def drop_temporaries(directory: pathlib.Path) -> None:
    """Remove the temporary files that writes killed part-way left in ``directory``.

    Only while nothing else writes there: under the unit's state lock, or
    for a directory only one step writes to.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith('.') and entry.name.endswith(TEMPORARY_SUFFIX):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``; a write that makes no progress is an error.

    Raises:
        OSError: a write failed, or wrote nothing (``EIO``).
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(5, 'a write made no progress')  # EIO: the disk took nothing
        view = view[written:]


def write_json(path: pathlib.Path, document: object) -> None:
    """Replace ``path`` with ``document`` as JSON, with :func:`atomic_write`."""
    # Insertion order kept: services stay in order.
    atomic_write(path, json.dumps(document, indent=1).encode())


def read_document(path: pathlib.Path, *, advice: str) -> Any:
    """Return the JSON document at ``path``, whatever its type (``null`` included).

    Args:
        path: The file.
        advice: What to do about a damaged file, for the error message.

    Raises:
        FileNotFoundError: there is no such file.
        StateFileError: the file exists and cannot be read, is not UTF-8, or
            is not JSON.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise state_file_error(path, f'cannot be read ({e.strerror or e})', advice) from e
    text = decode_text(path, data, advice=advice)
    try:
        return json.loads(text)
    except ValueError as e:
        raise state_file_error(path, f'is not valid JSON ({e})', advice) from e


def decode_text(path: pathlib.Path, data: bytes, *, advice: str) -> str:
    """Return the bytes read from ``path`` as text.

    Raises:
        StateFileError: they are not UTF-8; the message names the file and the byte.
    """
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as e:
        problem = f'is not UTF-8 (byte {data[e.start]:#04x} at offset {e.start})'
        raise state_file_error(path, problem, advice) from e


def read_json(path: pathlib.Path) -> Any:
    """Return the JSON document at ``path``, or None if there is no such file.

    For a record without a typed reader yet; the typed records in
    :mod:`charm_upgrade._records` tell a missing file from a ``null`` one.

    Raises:
        StateFileError: the file exists and cannot be read as JSON.
    """
    try:
        return read_document(path, advice=_GENERIC_ADVICE)
    except FileNotFoundError:
        return None


def state_file_error(path: pathlib.Path, problem: str, advice: str) -> StateFileError:
    """Return the error for a state file: it names the file, the problem, and what to do."""
    return StateFileError(f'{path} {problem}: {advice}', path=str(path), problem=problem)


def remove(path: pathlib.Path) -> None:
    """Remove ``path`` durably; a missing file is not an error."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync(path.parent)


def fsync(path: pathlib.Path) -> None:
    """Flush a file, or a directory's entries (a rename is durable only then), to disk.

    Raises:
        OSError: naming ``path``.
    """
    with naming(path):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def naming(path: pathlib.Path) -> Generator[None]:
    """Re-raise an ``OSError`` of the block with ``path`` as its file name.

    The errno, and so the exception's type (``PermissionError``...), is kept:
    ``[Errno 28] No space left on device: '/path/of/the/file'``.
    """
    try:
        yield
    except OSError as e:
        if e.errno is None or e.filename == str(path):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
