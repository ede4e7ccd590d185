# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The machine behind :class:`~charm_upgrade.testing.FakeSystemd`: unit files, links, state.

One model serves the stand-in ``systemctl`` executable (a separate process per
call, like the real one) and the Python side (the test's assertions, and
:class:`~charm_upgrade.testing.FakeSnapd`, whose snap services are units here
too). It follows real systemd on the points charm-upgrade meets, each checked
against systemd 252:

- Unit files are real files under the fake's root: ``etc/systemd/system``
  (the configuration directory, where enablement symlinks go) and
  ``lib/systemd/system`` (packaged units). Enablement *is* symlinks, as on a
  real machine: ``enable`` links the unit into ``<target>.wants/`` as its
  ``[Install]`` section says (and follows ``Alias=`` and ``Also=``),
  ``disable`` removes every symlink of the unit and of its ``Also=`` units
  (a ``systemctl link`` too), ``add-wants`` adds one ``.wants/`` link, and
  ``is-enabled`` is computed from the links.
- Names: a name without a unit suffix means ``.service``; a symlink named
  ``old.service`` to ``new.service`` makes ``old.service`` an alias (``show``
  answers with ``Id=new.service``, and ``enable`` refuses the alias name); a
  template name (``foo@.service``) makes ``show`` fail.
- Drop-ins take effect at ``daemon-reload`` (or an ``enable``/``disable``
  without ``--no-reload``), in the order of their file names across
  directories and aliases; ``ConditionPathExists=!/`` holds the unit, another
  ``ConditionPathExists=`` (``%E`` and ``%n`` resolved) is checked at each
  start, and an empty ``ConditionPathExists=`` resets the conditions before
  it. ``start`` skips a unit whose conditions are false and succeeds.
- ``start`` and ``stop`` go on past a unit they cannot handle and exit
  non-zero at the end: 5 for an unknown unit, 1 for a masked one, 4 for a
  unit with ``RefuseManualStart=``/``RefuseManualStop=``.

The runtime state (what runs, what is held, injected failures) is a JSON file
next to the root, changed under an exclusive ``flock``. The command line is
:mod:`charm_upgrade.testing._fake_systemctl`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import re
from typing import TYPE_CHECKING, Any

from .._systemd import UNIT_SUFFIXES as _SUFFIXES

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

__all__ = ['HOLD_CONDITION', 'Machine', 'UnitFile', 'full_name', 'is_template', 'symlink']

HOLD_CONDITION = 'ConditionPathExists=!/'
"""The always-false condition charm-upgrade's hold drop-in uses."""

_WANTS_DIRS = ('.wants', '.requires', '.upholds')
_INSTALL_DIRS = {'WantedBy': '.wants', 'RequiredBy': '.requires', 'UpheldBy': '.upholds'}
_TEMPLATE = re.compile(r'[^@]*@(\.[a-z]+)?')
_RUNNING = ('active', 'activating', 'reloading')


def full_name(name: str) -> str:
    """Return ``name`` as systemd reads it: no unit suffix means ``.service``."""
    return name if name.endswith(_SUFFIXES) else f'{name}.service'


def is_template(name: str) -> bool:
    """Whether ``name`` is a template (``foo@``, ``foo@.service``), not a unit."""
    return _TEMPLATE.fullmatch(name) is not None


def parse_unit_file(text: str) -> dict[str, dict[str, list[str]]]:
    """Return ``{section: {key: [values]}}`` of a unit file; an empty value resets a key."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(('#', ';')):
            continue
        if line.startswith('[') and line.endswith(']'):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition('=')
        if not sep:
            continue
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.extend(value.split())
        else:
            values.clear()
    return sections


@dataclasses.dataclass(frozen=True)
class UnitFile:
    """What the fake knows of a unit name: where its file is and what it says.

    Attributes:
        id: The unit's own name (an alias resolves to the unit it names).
        load_state: ``loaded``, ``masked`` or ``not-found``.
        fragment_path: The path systemd reports: the link or mask symlink in
            the configuration directory, else the file.
        file: The real unit file, or None.
        linked: Whether the unit is a ``systemctl link`` to a file outside
            the unit directories.
        sections: The parsed unit file.
    """

    id: str
    load_state: str
    fragment_path: str
    file: pathlib.Path | None
    linked: bool
    sections: dict[str, dict[str, list[str]]]

    def values(self, section: str, key: str) -> list[str]:
        """The values of ``key`` in ``section`` (``[]`` if absent)."""
        return list(self.sections.get(section, {}).get(key, []))

    def flag(self, section: str, key: str) -> bool:
        """Whether a boolean setting is on."""
        values = self.values(section, key)
        return bool(values) and values[-1].lower() in ('yes', 'true', '1', 'on')

    @property
    def install(self) -> dict[str, list[str]]:
        """The ``[Install]`` section."""
        return self.sections.get('Install', {})


@dataclasses.dataclass(frozen=True)
class _Index:
    """One scan of the unit directories (see :meth:`Machine.index`)."""

    aliases: dict[str, list[str]]
    wants: dict[str, list[pathlib.Path]]
    triggers: dict[str, list[str]]


class Machine:
    """The fake machine's systemd: unit files and links on disk, runtime state in JSON.

    Args:
        home: The fake's directory (``state.json`` and ``root/`` in it).
    """

    def __init__(self, home: pathlib.Path):
        self.home = home
        self.root = home / 'root'
        self.config_dir = self.root / 'etc' / 'systemd' / 'system'
        self.vendor_dir = self.root / 'lib' / 'systemd' / 'system'
        self.state_path = home / 'state.json'
        self._lock_path = home / 'state.lock'

    # Files and paths ---------------------------------------------------------------------

    def setup(self) -> None:
        """Create the directories and an empty state, unless they exist."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.vendor_dir.mkdir(parents=True, exist_ok=True)
        # /usr/lib/systemd is /lib/systemd, as on a merged-/usr system: a unit file
        # written at either path is a packaged unit.
        usr_systemd = self.root / 'usr' / 'lib' / 'systemd'
        if not usr_systemd.is_symlink():
            usr_systemd.parent.mkdir(parents=True, exist_ok=True)
            usr_systemd.symlink_to('../../lib/systemd')
        if not self.state_path.exists():
            self.state_path.write_text(json.dumps({'active': {}, 'held': [], 'fail': {}}))

    def real_path(self, path: str) -> pathlib.Path:
        """Map a path of the machine (``/etc/systemd/system/x``) into the fake's root."""
        if path.startswith(str(self.root) + '/'):
            return pathlib.Path(path)
        for prefix in ('/usr/lib/systemd/system/', '/lib/systemd/system/'):
            if path.startswith(prefix):
                return self.vendor_dir / path[len(prefix) :]
        return self.root / path.lstrip('/')

    @contextlib.contextmanager
    def state(self) -> Generator[dict[str, Any]]:
        """The runtime state, locked against other processes; saved when the block ends."""
        with open(self._lock_path, 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state: dict[str, Any] = json.loads(self.state_path.read_text())
            yield state
            tmp = self.state_path.with_suffix('.tmp')
            tmp.write_text(json.dumps(state, indent=1))
            os.replace(tmp, self.state_path)

    def read_state(self) -> dict[str, Any]:
        """The runtime state, read once (no lock held afterwards)."""
        with self.state() as state:
            return state

    # Resolving names ---------------------------------------------------------------------

    def resolve(self, name: str, *, depth: int = 0) -> UnitFile:
        """What ``name`` refers to, as systemd would load it."""
        name = full_name(name)
        for directory in (self.config_dir, self.vendor_dir):
            path = directory / name
            if path.is_symlink():
                target = os.readlink(path)
                if target == '/dev/null':
                    return UnitFile(name, 'masked', str(path), None, False, {})
                target_name = os.path.basename(target)
                if target_name != name and depth < 8:
                    return self.resolve(target_name, depth=depth + 1)  # an alias
                real = self.real_path(target)
                if real.is_file():
                    linked = directory == self.config_dir and not self._in_unit_dirs(real)
                    return UnitFile(name, 'loaded', str(path), real, linked, _parse(real))
            elif path.is_file():
                return UnitFile(name, 'loaded', str(path), path, False, _parse(path))
        return UnitFile(name, 'not-found', '', None, False, {})

    def _in_unit_dirs(self, path: pathlib.Path) -> bool:
        return path.parent in (self.config_dir, self.vendor_dir)

    def index(self) -> _Index:
        """One scan of the unit directories: aliases, ``.wants/`` links, triggers."""
        aliases: dict[str, list[str]] = {}
        wants: dict[str, list[pathlib.Path]] = {}
        triggers: dict[str, list[str]] = {}
        for directory in (self.config_dir, self.vendor_dir):
            for path in sorted(directory.iterdir()):
                in_config = directory == self.config_dir
                if in_config and path.is_dir() and path.name.endswith(_WANTS_DIRS):
                    for link in sorted(path.iterdir()):
                        wants.setdefault(link.name, []).append(link)
                elif path.is_symlink():
                    target = os.readlink(path)
                    if target != '/dev/null' and os.path.basename(target) != path.name:
                        unit = self.resolve(path.name)
                        if unit.load_state == 'loaded':
                            aliases.setdefault(unit.id, []).append(path.name)
                elif path.name.endswith(('.socket', '.path')) and path.is_file():
                    other = self.resolve(path.name)
                    section = 'Socket' if other.id.endswith('.socket') else 'Path'
                    explicit = other.values(section, 'Service') + other.values(section, 'Unit')
                    for target in explicit or [f'{other.id.rsplit(".", 1)[0]}.service']:
                        triggers.setdefault(target, []).append(other.id)
        return _Index(aliases, wants, triggers)

    def names(self, unit: UnitFile, index: _Index | None = None) -> list[str]:
        """The unit's id and its aliases: symlinks in the unit directories that resolve to it."""
        index = index or self.index()
        return [unit.id, *(a for a in index.aliases.get(unit.id, []) if a != unit.id)]

    def wants_links(self, names: Iterable[str], index: _Index | None = None) -> list[pathlib.Path]:
        """The ``.wants/``, ``.requires/`` and ``.upholds/`` links named after any of ``names``."""
        index = index or self.index()
        return [link for name in names for link in index.wants.get(name, [])]

    def unit_file_state(self, unit: UnitFile, index: _Index | None = None) -> str:
        """What ``systemctl is-enabled`` says."""
        if unit.load_state == 'masked':
            return 'masked'
        if unit.load_state == 'not-found':
            return ''
        index = index or self.index()
        names = self.names(unit, index)
        if self.wants_links(names, index) or len(names) > 1:
            return 'enabled'
        if unit.linked:
            return 'linked'
        install = unit.install
        if any(install.get(key) for key in ('WantedBy', 'RequiredBy', 'UpheldBy', 'Alias')):
            return 'disabled'
        if install.get('Also'):
            return 'indirect'
        return 'static'

    def drop_ins(self, unit: UnitFile, index: _Index | None = None) -> list[pathlib.Path]:
        """The unit's drop-ins, in the order systemd applies them (by file name)."""
        found: dict[str, pathlib.Path] = {}
        names = self.names(unit, index)
        for directory in (self.vendor_dir, self.config_dir):  # /etc wins a name clash
            for name in names:
                d = directory / f'{name}.d'
                if d.is_dir():
                    found.update({p.name: p for p in d.iterdir() if p.name.endswith('.conf')})
        return [found[name] for name in sorted(found)]

    def conditions(self, unit: UnitFile, index: _Index | None = None) -> list[str]:
        """The unit's ``Condition*=`` lines from its drop-ins, as now on disk."""
        conditions: list[str] = []
        for path in self.drop_ins(unit, index):
            for raw in path.read_text().splitlines():
                line = raw.strip()
                if line.startswith('Condition') and '=' in line:
                    key, _, value = line.partition('=')
                    # An empty Condition*= resets the list of conditions.
                    conditions = [] if not value else [*conditions, f'{key}={value}']
        return conditions

    def is_held(self, unit: UnitFile, index: _Index | None = None) -> bool:
        """Whether the unit's drop-ins leave an always-false condition (as now on disk)."""
        return HOLD_CONDITION in self.conditions(unit, index)

    def path_conditions(self, unit: UnitFile, conditions: list[str]) -> list[str]:
        """The other ``ConditionPathExists=`` values of ``conditions``, specifiers resolved."""
        prefix = 'ConditionPathExists='
        return [
            # %E is systemd's configuration root (/etc), %n the unit's name.
            line[len(prefix) :].replace('%E', str(self.root / 'etc')).replace('%n', unit.id)
            for line in conditions
            if line.startswith(prefix) and line != HOLD_CONDITION
        ]

    def skips_start(self, unit_id: str, state: dict[str, Any]) -> bool:
        """Whether systemd would skip a start of the unit now, its conditions false.

        What a ``daemon-reload`` loaded: the always-false hold, or a path condition
        checked now (``!path``: the path must not exist).
        """
        if unit_id in state['held']:
            return True
        for path in state.get('path_conditions', {}).get(unit_id, []):
            negated = path.startswith('!')
            if pathlib.Path(path.lstrip('!')).exists() == negated:
                return True
        return False

    # Reading ---------------------------------------------------------------------------

    def properties(self, name: str, state: dict[str, Any], index: _Index) -> dict[str, str]:
        """The properties ``systemctl show`` prints for ``name``."""
        unit = self.resolve(name)
        names = self.names(unit, index)
        file_state = self.unit_file_state(unit, index)
        triggers = index.triggers.get(unit.id, []) if unit.load_state == 'loaded' else []
        return {
            'Id': unit.id,
            'Names': ' '.join(names),
            'LoadState': unit.load_state,
            'ActiveState': state['active'].get(unit.id, 'inactive'),
            'UnitFileState': file_state,
            'FragmentPath': unit.fragment_path,
            'DropInPaths': ' '.join(str(p) for p in self.drop_ins(unit, index)),
            'RefuseManualStart': yes_no(unit.flag('Unit', 'RefuseManualStart')),
            'RefuseManualStop': yes_no(unit.flag('Unit', 'RefuseManualStop')),
            'TriggeredBy': ' '.join(triggers),
            'ConditionResult': 'no' if self.skips_start(unit.id, state) else 'yes',
        }

    def reload(self, state: dict[str, Any]) -> None:
        """``daemon-reload``: drop-ins take effect."""
        held: set[str] = set()
        path_conditions: dict[str, list[str]] = {}
        index: _Index | None = None
        for directory in (self.config_dir, self.vendor_dir):
            for d in sorted(directory.glob('*.d')):
                index = index or self.index()
                unit = self.resolve(d.name[:-2])
                if unit.load_state == 'not-found':
                    continue
                conditions = self.conditions(unit, index)  # the drop-ins read once
                if HOLD_CONDITION in conditions:
                    held.add(unit.id)
                elif paths := self.path_conditions(unit, conditions):
                    path_conditions[unit.id] = paths
        state['held'] = sorted(held)
        state['path_conditions'] = path_conditions

    # Changing enablement -----------------------------------------------------------------

    def link_target(self, unit: UnitFile) -> str:
        """What an enablement link of the unit points to."""
        if unit.linked:
            return os.readlink(self.config_dir / unit.id)
        assert unit.file is not None
        return str(unit.file)

    def enable(self, unit: UnitFile, *, seen: set[str] | None = None) -> list[str]:
        """Create the links the ``[Install]`` section asks for; return messages."""
        seen = seen if seen is not None else set()
        if unit.id in seen:
            return []
        seen.add(unit.id)
        install = unit.install
        target = self.link_target(unit)
        links = [
            self.config_dir / f'{wanted_by}{suffix}' / unit.id
            for key, suffix in _INSTALL_DIRS.items()
            for wanted_by in install.get(key, [])
        ]
        links += [self.config_dir / alias for alias in install.get('Alias', [])]
        created = [symlink(link, target) for link in links]
        for also in install.get('Also', []):
            other = self.resolve(also)
            if other.load_state == 'loaded':
                created += self.enable(other, seen=seen)
        return [c for c in created if c]

    def disable(
        self, unit: UnitFile, *, seen: set[str] | None = None, index: _Index | None = None
    ) -> list[str]:
        """Remove every link of the unit and of its ``Also=`` units (not masks)."""
        seen = seen if seen is not None else set()
        if unit.id in seen:
            return []
        seen.add(unit.id)
        index = index or self.index()
        names = set(self.names(unit, index))
        removed: list[str] = []
        candidates = [self.config_dir / name for name in sorted(names)]
        candidates += self.wants_links(names, index)
        for path in candidates:
            if path.is_symlink() and os.readlink(path) != '/dev/null':
                path.unlink()
                removed.append(f'Removed "{path}".')
        for also in unit.install.get('Also', []):
            other = self.resolve(also)
            if other.load_state == 'loaded':
                removed += self.disable(other, seen=seen, index=index)
        return removed

    # Python-side helpers (tests, FakeSnapd) ---------------------------------------------------

    def set_active(self, name: str, active: bool) -> None:
        """Start or stop a unit as systemd would: a start of a held unit is skipped."""
        unit = self.resolve(name)
        with self.state() as state:
            if not active:
                state['active'][unit.id] = 'inactive'
            elif not self.skips_start(unit.id, state) and unit.load_state == 'loaded':
                state['active'][unit.id] = 'active'

    def is_active(self, name: str) -> bool:
        """Whether the unit runs."""
        unit = self.resolve(name)
        return self.read_state()['active'].get(unit.id, 'inactive') in _RUNNING

    def set_enabled(self, name: str, enabled: bool) -> None:
        """``systemctl enable`` / ``disable`` of one unit, with its reload."""
        unit = self.resolve(name)
        if unit.load_state != 'loaded':
            return
        if enabled:
            self.enable(unit)
        else:
            self.disable(unit)
        with self.state() as state:
            self.reload(state)

    def is_enabled(self, name: str) -> bool:
        """Whether ``is-enabled`` says ``enabled``."""
        return self.unit_file_state(self.resolve(name)) == 'enabled'


def _parse(path: pathlib.Path) -> dict[str, dict[str, list[str]]]:
    try:
        return parse_unit_file(path.read_text())
    except OSError:
        return {}


def symlink(link: pathlib.Path, target: str) -> str:
    if link.is_symlink():
        if os.readlink(link) == target:
            return ''
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return f'Created symlink {link} \u2192 {target}.'


def yes_no(value: bool) -> str:
    return 'yes' if value else 'no'
