# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Paths of the machine the unit runs on: :func:`machine_path`.

A machine charm reads and writes files outside its charm directory: a systemd unit
in ``/etc/systemd/system``, its workload's data in ``/var/snap/<snap>/common``.
On a machine, such a path is what it says. The test kit runs several units in one
process, and each test in a directory of its own, so each simulated unit has a
directory that stands for its machine's ``/``, named by
``$CHARM_UPGRADE_MACHINE_ROOT`` while its events run. :func:`machine_path` maps a
machine path into it, and is the identity when the variable is not set (on every
real machine).

The library maps the ``backup=`` paths of a migration with it; a charm maps its
own machine paths with it, at run time (not at import: the root is the running
unit's).
"""

from __future__ import annotations

import os
import pathlib

__all__ = ['MACHINE_ROOT_ENV', 'machine_path', 'under_root']

MACHINE_ROOT_ENV = 'CHARM_UPGRADE_MACHINE_ROOT'
"""The directory that stands for ``/`` of the unit's machine; set only by the test kit."""


def machine_path(path: str | os.PathLike[str]) -> pathlib.Path:
    """Return where the machine path ``path`` is for the unit running now.

    On a machine, ``path`` itself. Under :mod:`charm_upgrade.testing`, the same path
    under the simulated unit's machine root, so that two units, or two tests, that
    write the "same" path do not share it. A path already under the root is returned
    as it is, so mapping twice is harmless. Call it when the path is used (in the
    event), not at import.

    Args:
        path: An absolute path on the machine, e.g. ``'/etc/systemd/system/myapp.service'``.

    Returns:
        The path to read or write.

    Raises:
        ValueError: ``path`` is relative (hooks run in the charm directory, so a relative
            path would name a file of the charm, not of the machine).

    Example::

        unit_file = charm_upgrade.machine_path('/etc/systemd/system/mydb-exporter.service')
        unit_file.write_text(UNIT)
        subprocess.run(['systemctl', 'enable', '--now', 'mydb-exporter.service'], check=True)
    """
    root = os.environ.get(MACHINE_ROOT_ENV)
    return under_root(path, pathlib.Path(root) if root else None)


def under_root(path: str | os.PathLike[str], root: pathlib.Path | None) -> pathlib.Path:
    """Return the machine path ``path`` with ``root`` standing for ``/`` (None: ``/`` itself).

    Raises:
        ValueError: ``path`` is relative.
    """
    given = pathlib.Path(path)
    if not given.is_absolute():
        raise ValueError(f'machine path {str(path)!r} is relative: give an absolute path')
    if root is None or given == root or root in given.parents:
        return given
    return root.joinpath(*given.parts[1:])
