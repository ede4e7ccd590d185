# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Copies of a migration's declared paths, taken before it runs and put back if it fails.

osup snapshots the ZFS datasets a migration declares and rolls them back when
it fails. A charm's data has no such file system under it, so this copies the
declared files and directories instead, with their modes, owners and times:

- :func:`take` copies them into a new directory that becomes the backup only
  when it is complete and on disk (files and directories fsynced, then the
  directory renamed into place). A backup directory that exists is complete.
- :func:`restore` puts every path back as it was, removing what the migration
  created where nothing was; it can be run again after a crash part-way.
- :func:`discard` removes a backup.

Declare what the migration changes and little else: the copy is taken on
every run, inside the workload's downtime.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import stat
import time
from typing import TYPE_CHECKING, Any

from . import _state

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ['BackupInfo', 'discard', 'exists', 'restore', 'take']

_MANIFEST = 'manifest.json'
_RESTORING = '.charm-upgrade-restoring'


@dataclasses.dataclass(frozen=True)
class BackupInfo:
    """What a backup holds: for the journal."""

    paths: tuple[str, ...]
    absent: tuple[str, ...]
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The journal's form."""
        return {
            'paths': list(self.paths),
            'absent': list(self.absent),
            'bytes': self.bytes,
            'seconds': round(self.seconds, 6),
        }


def exists(backup: pathlib.Path) -> bool:
    """Whether a complete backup is at ``backup``."""
    return (backup / _MANIFEST).is_file()


def take(backup: pathlib.Path, paths: Sequence[pathlib.Path]) -> BackupInfo:
    """Copy ``paths`` into a new backup at ``backup``, replacing any there.

    Raises:
        OSError: a path could not be read or the copy written; no backup is left.
    """
    began = time.monotonic()
    discard(backup)
    backup.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = backup.with_name(f'.{backup.name}.partial')
    _remove(partial)
    partial.mkdir(mode=0o700)
    entries: list[dict[str, Any]] = []
    size = 0
    written: list[pathlib.Path] = []
    try:
        for index, path in enumerate(paths):
            present = path.exists() or path.is_symlink()
            if present:
                size += _copy(path, partial / str(index), written)
            entries.append({'path': str(path), 'present': present})
        # fsync once everything is written: the first call commits most of
        # it, where a call after each file would wait for each in turn.
        for copied in written:
            _state.fsync(copied)
        # Written last: its presence is what makes the backup complete.
        _state.write_json(partial / _MANIFEST, {'v': 1, 'entries': entries})
        os.replace(partial, backup)
        _state.fsync(backup.parent)
    except BaseException:
        _remove(partial)
        raise
    return BackupInfo(
        paths=tuple(str(p) for p in paths),
        absent=tuple(e['path'] for e in entries if not e['present']),
        bytes=size,
        seconds=time.monotonic() - began,
    )


def restore(backup: pathlib.Path) -> list[str]:
    """Put every path of the backup at ``backup`` back as it was; return them.

    A path that did not exist when the backup was taken is removed. Each
    path is rebuilt beside itself and renamed into place, so a crash
    part-way leaves every path either as the migration left it or restored,
    and a second run finishes the job.

    Raises:
        OSError: a path could not be put back; run it again once the cause is fixed.
    """
    manifest = _state.read_json(backup / _MANIFEST)
    restored: list[str] = []
    for index, entry in enumerate(manifest['entries']):
        path = pathlib.Path(entry['path'])
        staging = path.with_name(path.name + _RESTORING)
        _remove(staging)
        if entry['present']:
            path.parent.mkdir(parents=True, exist_ok=True)
            written: list[pathlib.Path] = []
            _copy(backup / str(index), staging, written)
            for copied in written:
                _state.fsync(copied)
            if path.is_dir() and not path.is_symlink():
                # A directory cannot be renamed over a non-empty one.
                shutil.rmtree(path)
            os.replace(staging, path)
        else:
            _remove(path)
        if path.parent.is_dir():
            _state.fsync(path.parent)
        restored.append(str(path))
    return restored


def discard(backup: pathlib.Path) -> None:
    """Remove the backup at ``backup``, if any, and a partial one."""
    _remove(backup.with_name(f'.{backup.name}.partial'))
    _remove(backup)


def _copy(source: pathlib.Path, target: pathlib.Path, written: list[pathlib.Path]) -> int:
    """Copy a file, symlink or directory tree with modes, owners and times; return bytes.

    Appends to ``written`` the files and directories to fsync.
    """
    info = os.lstat(source)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), target)
        size = 0
    elif stat.S_ISDIR(info.st_mode):
        target.mkdir(mode=0o700)
        size = 0
        with os.scandir(source) as children:
            for child in children:
                size += _copy(pathlib.Path(child.path), target / child.name, written)
        written.append(target)
    elif stat.S_ISREG(info.st_mode):
        shutil.copyfile(source, target, follow_symlinks=False)
        written.append(target)
        size = info.st_size
    else:
        raise OSError(f'cannot back up {source}: not a file, directory or symlink')
    _copy_metadata(info, target)
    return size


def _copy_metadata(info: os.stat_result, target: pathlib.Path) -> None:
    # The owner first: chown clears the setuid and setgid bits that chmod sets.
    with contextlib.suppress(PermissionError):
        os.chown(target, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(target, stat.S_IMODE(info.st_mode))
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
