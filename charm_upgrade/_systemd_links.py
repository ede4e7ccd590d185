# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What a systemd unit's enablement is made of: its symlinks in ``/etc/systemd/system``.

What makes a unit start at boot is a symlink in a ``<target>.wants/`` (or
``.requires/``, ``.upholds/``) directory of ``/etc/systemd/system``: the
links ``systemctl enable`` creates from the ``[Install]`` section, and any an
operator added with ``systemctl add-wants``. :func:`enablement_links` reads
them, with the unit's other symlinks there (a ``systemctl link``, an alias,
a mask), in one scan of the directory, so that the state before an upgrade
can be restored link by link. ``systemctl disable`` would not do: it removes
the link of a linked unit (which then no longer exists), the aliases, and the
links of the units named in ``Also=``, whether they are listed or not.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import TYPE_CHECKING

from ._systemd import config_dir

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ['UnitLinks', 'create_links', 'enablement_links', 'install_section', 'remove_links']

_WANTS_SUFFIXES = ('.wants', '.requires', '.upholds')


@dataclasses.dataclass(frozen=True)
class UnitLinks:
    """A unit's symlinks in ``/etc/systemd/system``, each as path (relative) -> target.

    Attributes:
        names: Symlinks named after the unit in the directory itself: a
            ``systemctl link``, an alias, a mask (to ``/dev/null``).
        wants: Symlinks named after the unit in ``<target>.wants/``,
            ``.requires/`` and ``.upholds/``: what starts it at boot.
    """

    names: dict[str, str]
    wants: dict[str, str]


def enablement_links(units: Mapping[str, Iterable[str]]) -> dict[str, UnitLinks]:
    """Return each unit's symlinks, from one scan of ``/etc/systemd/system``.

    Args:
        units: Each unit's key (its id) -> every name it has (its ``Names``).
    """
    owner = {name: key for key, names in units.items() for name in names}
    links = {key: UnitLinks({}, {}) for key in units}
    directory = config_dir()
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return links
    for entry in entries:
        if entry.is_symlink() and entry.name in owner:
            links[owner[entry.name]].names[entry.name] = os.readlink(entry)
        elif entry.name.endswith(_WANTS_SUFFIXES) and entry.is_dir():
            for link in sorted(entry.iterdir()):
                if link.is_symlink() and link.name in owner:
                    relative = f'{entry.name}/{link.name}'
                    links[owner[link.name]].wants[relative] = os.readlink(link)
    return links


def remove_links(relative_paths: Iterable[str]) -> None:
    """Remove symlinks of ``/etc/systemd/system`` (relative paths); missing ones are fine."""
    directory = config_dir()
    for relative in relative_paths:
        path = directory / relative
        if path.is_symlink():
            path.unlink()


def create_links(links: Mapping[str, str]) -> list[str]:
    """Create symlinks of ``/etc/systemd/system`` (relative path -> target) that are missing.

    A link whose target no longer exists (the OS upgrade removed the unit
    file) is not created.

    Returns:
        The relative paths not created for that reason.
    """
    directory = config_dir()
    dangling: list[str] = []
    for relative, target in links.items():
        path = directory / relative
        if path.is_symlink() and os.readlink(path) == target:
            continue
        if not os.path.exists(target):
            dangling.append(relative)
            continue
        if path.is_symlink():
            path.unlink()  # pointing elsewhere now: point it back
        elif path.exists():
            continue  # a real file of that name: not ours to replace
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.symlink_to(target)
    return dangling


def install_section(fragment_path: str) -> dict[str, list[str]]:
    """Return the ``[Install]`` section of a unit file: ``WantedBy``, ``Also``, ``Alias``...

    A file that cannot be read gives ``{}``: the section is recorded to
    explain the unit's enablement, never to decide it.
    """
    try:
        text = pathlib.Path(fragment_path).read_text(encoding='utf-8', errors='replace')
    except OSError:
        return {}
    section: dict[str, list[str]] = {}
    current = ''
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith('[') and line.endswith(']'):
            current = line[1:-1]
        elif current == 'Install' and '=' in line and not line.startswith(('#', ';')):
            key, _, value = line.partition('=')
            values = section.setdefault(key.strip(), [])
            if value.strip():
                values.extend(value.split())
            else:
                values.clear()  # an empty assignment resets the list
    return {key: values for key, values in section.items() if values}
