# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The unit's state directory and atomic JSON files in it.

ops commits stored state, and charms.reactive its flags, only when a hook
succeeds. What must survive a failed hook (the before-state, the applied
migrations) is written here instead, atomically: a temporary file, fsync,
rename, fsync of the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from typing import Any

from .errors import CharmUpgradeError

__all__ = ['StateFileError', 'fsync', 'read_json', 'remove', 'state_dir', 'write_json']

STATE_DIR_ENV = 'CHARM_UPGRADE_STATE_DIR'
_STATE_DIR_NAME = '.charm_upgrade'


class StateFileError(CharmUpgradeError):
    """A state file exists but cannot be read as JSON."""


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


def read_json(path: pathlib.Path) -> Any:
    """Return the JSON document at ``path``, or None if there is no such file.

    Raises:
        StateFileError: the file exists but is not valid JSON.
    """
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise StateFileError(f'{path} is not valid JSON ({e}); remove it to start over') from e


def write_json(path: pathlib.Path, document: object) -> None:
    """Replace ``path`` with ``document`` as JSON, atomically and durably."""
    data = json.dumps(document, indent=1).encode()  # insertion order: services stay in order
    fd, tmp_name = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync(path.parent)


def remove(path: pathlib.Path) -> None:
    """Remove ``path`` durably; a missing file is not an error."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync(path.parent)


def fsync(path: pathlib.Path) -> None:
    """Flush a file, or a directory's entries (a rename is durable only then), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
