# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Copies of a migration's declared paths, taken before it runs and put back if it fails.

osup snapshots the ZFS datasets a migration declares and rolls them back when
it fails. A charm's data has no such file system under it, so this copies the
declared files and directories instead, with their modes, owners, times,
extended attributes (ACLs and file capabilities live there) and the hard
links between files of one declared tree:

- :func:`take` checks the declared paths before it copies anything: each is
  resolved (a symlink on the way is followed, and the backup records where
  it led), and none may contain the state directory or another declared
  path. It copies them into a new directory that becomes the backup only
  when it is complete and on disk (files and directories fsynced, the
  manifest written last, then the directory renamed into place). A backup
  directory that exists is complete.
- :func:`restore` puts every path back as it was, first checking that each
  declared path still leads where it led; whatever now stands at a path (a
  file where a directory was, a symlink) is cleared. It can be run again
  after a crash part-way.
- :func:`discard` removes a backup.

Every file the backup or the restore creates is created 0600 with
``O_EXCL`` and gets its owner and mode before any data is written to it: a
secret is never readable by others, not even for a moment.

Declare what the migration changes and little else: the copy is taken on
every run, inside the workload's downtime.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import pathlib
import shutil
import stat
import time
from typing import TYPE_CHECKING, Any

from . import _records, _state

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ['BackupInfo', 'discard', 'exists', 'restore', 'take']

_MANIFEST = _records.BackupManifest.NAME
_RESTORING = '.charm-upgrade-restoring'
_PARTIAL = '.partial'
_PRIVILEGED_XATTRS = ('security.', 'trusted.')
_COPY_CHUNK = 1 << 30

# (st_dev, st_ino) of a source file with several links -> its first copy.
_Links = dict[tuple[int, int], pathlib.Path]


@dataclasses.dataclass(frozen=True)
class BackupInfo:
    """What a backup holds: for the journal."""

    paths: tuple[str, ...]
    absent: tuple[str, ...]
    bytes: int
    seconds: float
    resolved: dict[str, str] = dataclasses.field(default_factory=dict[str, str])

    def to_dict(self) -> dict[str, Any]:
        """The journal's form; ``resolved`` only for paths a symlink led elsewhere."""
        info: dict[str, Any] = {
            'paths': list(self.paths),
            'absent': list(self.absent),
            'bytes': self.bytes,
            'seconds': round(self.seconds, 6),
        }
        if self.resolved:
            info['resolved'] = dict(self.resolved)
        return info


def exists(backup: pathlib.Path) -> bool:
    """Whether a complete backup is at ``backup``."""
    return (backup / _MANIFEST).is_file()


def partial_of(backup: pathlib.Path) -> pathlib.Path:
    """Where :func:`take` builds the backup ``backup`` before renaming it into place."""
    return backup.with_name(f'.{backup.name}{_PARTIAL}')


def take(
    backup: pathlib.Path, paths: Sequence[pathlib.Path], *, state_dir: pathlib.Path
) -> BackupInfo:
    """Copy ``paths`` into a new backup at ``backup``, replacing any there.

    Args:
        backup: Where the backup goes.
        paths: The declared paths, absolute.
        state_dir: The unit's state directory, which holds ``backup``: no
            declared path may contain it or be in it.

    Raises:
        ValueError: a declared path contains the state directory, is inside
            it, or contains (or is) another declared path; nothing was copied.
        OSError: a path could not be read or the copy written; no backup is left.
    """
    began = time.monotonic()
    entries = [
        _records.BackupEntry(path=str(p), resolved=os.path.realpath(p), present=False)
        for p in paths
    ]
    _check_declared(entries, pathlib.Path(os.path.realpath(state_dir)))
    discard(backup)
    backup.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = partial_of(backup)
    partial.mkdir(mode=0o700)
    size = 0
    written: list[pathlib.Path] = []
    try:
        for index, entry in enumerate(entries):
            resolved = pathlib.Path(entry.resolved)
            present = os.path.lexists(resolved)
            if present:
                size += _copy(resolved, partial / str(index), written, {})
            entries[index] = dataclasses.replace(entry, present=present)
        # fsync once everything is written: the first call commits most of
        # it, where a call after each file would wait for each in turn.
        for copied in written:
            _state.fsync(copied)
        # Written last: its presence is what makes the backup complete.
        _state.write_json(partial / _MANIFEST, _records.BackupManifest(entries).to_json())
        os.replace(partial, backup)
        _state.fsync(backup.parent)
    except BaseException:
        _remove(partial)
        raise
    return BackupInfo(
        paths=tuple(e.path for e in entries),
        absent=tuple(e.path for e in entries if not e.present),
        bytes=size,
        seconds=time.monotonic() - began,
        resolved={e.path: e.resolved for e in entries if e.resolved != e.path},
    )


def restore(backup: pathlib.Path) -> list[str]:
    """Put every path of the backup at ``backup`` back as it was; return them.

    A path that did not exist when the backup was taken is removed; whatever
    stands at a path now (a file, a directory, a symlink) is replaced. Each
    path is rebuilt beside itself and renamed into place, so a crash part-way
    leaves every path either as the migration left it, absent, or restored,
    and a second run finishes the job.

    Raises:
        ValueError: a declared path now leads somewhere else than when the
            backup was taken (a symlink on the way changed); nothing was touched.
        StateFileError: the backup's manifest is damaged.
        OSError: a path could not be put back; run it again once the cause is fixed.
    """
    manifest = _records.load(backup / _MANIFEST, _records.BackupManifest)
    if manifest is None:
        raise FileNotFoundError(errno.ENOENT, 'the backup has no manifest', str(backup))
    for entry in manifest.entries:
        # What is put back goes where the copy came from: the declared path
        # must still lead there, through its directory (whatever the
        # migration left at the path itself is replaced) or through the
        # symlink it was. An absent path is only removed where it was absent.
        now = os.path.realpath(entry.path)
        declared = pathlib.Path(entry.path)
        through_directory = os.path.join(os.path.realpath(declared.parent), declared.name)
        if entry.present and entry.resolved not in (now, through_directory):
            raise ValueError(
                f'{entry.path} now leads to {now}, but to {entry.resolved} when it was backed '
                f'up: a symlink on the way was changed (by the migration?). Nothing was put '
                f'back; point it at {entry.resolved} again and run again'
            )
    restored: list[str] = []
    for index, entry in enumerate(manifest.entries):
        path = pathlib.Path(entry.resolved)
        staging = path.with_name(path.name + _RESTORING)
        _remove(staging)
        if entry.present:
            path.parent.mkdir(parents=True, exist_ok=True)
            written: list[pathlib.Path] = []
            _copy(backup / str(index), staging, written, {})
            for copied in written:
                _state.fsync(copied)
            # A directory cannot be renamed over a file, nor a file over a
            # directory, nor anything over a non-empty directory.
            _remove(path)
            os.replace(staging, path)
        else:
            _remove(path)
        if path.parent.is_dir():
            _state.fsync(path.parent)
        restored.append(entry.path)
    return restored


def discard(backup: pathlib.Path) -> None:
    """Remove the backup at ``backup``, if any, and a partial one.

    The backup is first renamed back to its partial name: a removal killed
    part-way never leaves a directory that reads as a complete backup.
    """
    partial = partial_of(backup)
    _remove(partial)
    with contextlib.suppress(FileNotFoundError):
        os.replace(backup, partial)
    _remove(partial)


def _check_declared(entries: Sequence[_records.BackupEntry], state_dir: pathlib.Path) -> None:
    for entry in entries:
        resolved = pathlib.Path(entry.resolved)
        via = '' if entry.resolved == entry.path else f' (which leads to {resolved})'
        if resolved == state_dir or state_dir.is_relative_to(resolved):
            raise ValueError(
                f"{entry.path}{via} contains the unit's state directory {state_dir}, where the "
                'backup is written: declare the paths the migration changes, not a parent of '
                'the charm directory'
            )
        if resolved.is_relative_to(state_dir):
            raise ValueError(
                f"{entry.path}{via} is inside the unit's state directory {state_dir}: the "
                "library's own records are not a migration's to back up"
            )
        for other in entries:
            if other is entry:
                continue
            other_resolved = pathlib.Path(other.resolved)
            if other_resolved.is_relative_to(resolved):
                what = 'is the same as' if other_resolved == resolved else 'contains'
                raise ValueError(
                    f'{entry.path}{via} {what} {other.path}, also declared: it would be '
                    'copied twice and put back twice; declare it once'
                )


def _copy(
    source: pathlib.Path, target: pathlib.Path, written: list[pathlib.Path], links: _Links
) -> int:
    """Copy a file, symlink or directory tree with all its metadata; return the bytes copied.

    Appends to ``written`` the files and directories to fsync. ``links`` maps
    the files with several links seen so far to their copies, so that hard
    links within the tree stay links.
    """
    info = os.lstat(source)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), target)
        _set_owner(target, info)
        _copy_xattrs(source, target)
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
        return 0
    if stat.S_ISDIR(info.st_mode):
        # 0700 while it fills; its own mode, owner and attributes once full.
        target.mkdir(mode=0o700)
        size = 0
        with os.scandir(source) as children:
            for child in children:
                size += _copy(pathlib.Path(child.path), target / child.name, written, links)
        _set_owner(target, info)
        os.chmod(target, stat.S_IMODE(info.st_mode))
        _copy_xattrs(source, target)
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        written.append(target)
        return size
    if stat.S_ISREG(info.st_mode):
        key = (info.st_dev, info.st_ino)
        if info.st_nlink > 1 and key in links:
            os.link(links[key], target)
            return 0
        _copy_file(source, target, info)
        if info.st_nlink > 1:
            links[key] = target
        written.append(target)
        return info.st_size
    raise OSError(errno.EINVAL, 'cannot back up: not a file, directory or symlink', str(source))


def _copy_file(source: pathlib.Path, target: pathlib.Path, info: os.stat_result) -> None:
    # Created 0600 and exclusive: nothing else can have it open, and nobody
    # can read it before it has its owner and mode, set before the data.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o600)
    try:
        _set_owner(fd, info)
        mode = stat.S_IMODE(info.st_mode)
        os.fchmod(fd, mode)
        with _state.naming(source):
            src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            _copy_data(src, fd)
        finally:
            os.close(src)
        if mode & (stat.S_ISUID | stat.S_ISGID):
            os.fchmod(fd, mode)  # a write by a process without CAP_FSETID clears them
        # After the data: a write clears a file's capabilities.
        _copy_xattrs(source, target)
        os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))
    finally:
        os.close(fd)


def _copy_data(src: int, dst: int) -> None:
    offset = 0
    try:
        while True:
            sent = os.sendfile(dst, src, offset, _COPY_CHUNK)
            if sent == 0:
                return
            offset += sent
    except OSError as e:
        if offset or e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    # No sendfile between these file systems: read and write.
    while chunk := os.read(src, 1 << 20):
        _state.write_all(dst, chunk)


def _set_owner(target: pathlib.Path | int, info: os.stat_result) -> None:
    # Before the mode: chown clears the setuid and setgid bits. Without
    # CAP_CHOWN a file keeps this process's owner, as a plain copy would.
    with contextlib.suppress(PermissionError):
        if isinstance(target, int):
            os.fchown(target, info.st_uid, info.st_gid)
        else:
            os.chown(target, info.st_uid, info.st_gid, follow_symlinks=False)


def _copy_xattrs(source: pathlib.Path, target: pathlib.Path) -> None:
    """Make ``target``'s extended attributes exactly ``source``'s.

    Raises:
        OSError: an attribute cannot be kept (the target's file system has no
            extended attributes); a ``security.`` or ``trusted.`` one that this
            process may not set is skipped, as its owner would be.
    """
    wanted = {
        name: os.getxattr(source, name, follow_symlinks=False) for name in _xattrs_of(source)
    }
    for name in _xattrs_of(target):
        # Inherited from a default ACL of the directory it was created in.
        if name not in wanted:
            with contextlib.suppress(PermissionError):
                os.removexattr(target, name, follow_symlinks=False)
    for name, value in wanted.items():
        try:
            os.setxattr(target, name, value, follow_symlinks=False)
        except PermissionError:
            if not name.startswith(_PRIVILEGED_XATTRS):
                raise
        except OSError as e:
            raise OSError(
                e.errno, f'cannot keep the extended attribute {name} ({e.strerror})', str(target)
            ) from e


def _xattrs_of(path: pathlib.Path) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise


def _remove(path: pathlib.Path) -> None:
    """Remove whatever is at ``path``: a directory tree, a file, a symlink; nothing is fine."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
