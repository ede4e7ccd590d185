# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A stand-in ``systemctl`` for unit tests: :class:`FakeSystemd`."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import sys
import tempfile
from typing import TYPE_CHECKING

from .._machine import under_root
from . import _fake_systemctl
from ._fake_systemd_model import Machine, full_name

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

__all__ = ['FakeSystemd']

# The stand-in executable: a thin wrapper around the model, one process per call.
_SCRIPT = """\
import sys
sys.path.insert(0, {package_parent!r})
from charm_upgrade.testing._fake_systemctl import main
sys.exit(main({home!r}, sys.argv[1:]))
"""

_DEFAULT_TARGETS = {'.socket': 'sockets.target', '.timer': 'timers.target'}
_BODIES = {
    '.socket': '[Socket]\nListenStream=/run/{stem}.sock\n',
    '.path': '[Path]\nPathChanged=/run/{stem}.trigger\n',
    '.timer': '[Timer]\nOnCalendar=daily\n',
    '.target': '',
}


class FakeSystemd:
    """A ``systemctl`` stand-in on ``PATH``, over a machine kept in a directory.

    Unit files and their enablement links are real files under the fake's
    root (:attr:`config_dir` stands for ``/etc/systemd/system``,
    :attr:`vendor_dir` for ``/lib/systemd/system``); what runs and what is
    held is kept in a JSON file. It answers ``show``, ``daemon-reload``,
    ``enable``, ``disable``, ``link``, ``add-wants``, ``mask``, ``unmask``,
    ``start``, ``stop``, ``restart``, ``reset-failed``, ``is-active`` and
    ``is-enabled`` as systemd 252 does for what charm-upgrade meets: links,
    aliases, ``Also=``, extra ``.wants/`` links, drop-ins applied by file name
    at ``daemon-reload`` (a hold skips every start, and succeeds), ``mask``
    refused for a unit file in ``/etc/systemd/system``, ``RefuseManualStart=``
    and ``RefuseManualStop=``, socket and path triggers, short names that
    mean ``.service``, ``enable --now`` and ``disable --now``, and
    ``is-active``/``is-enabled`` exit statuses (0 when any unit named is
    active, or enabled, static, an alias...; ``--quiet`` prints nothing).
    ``--no-block`` changes nothing: the fake's jobs finish at once. Every
    call is logged.

    A :class:`~charm_upgrade.testing.FakeSnapd` attached to it
    (``fake_snapd.attach(fake_systemd)``; the pytest fixtures do it when a
    test uses both) keeps its snap services here as the units
    ``snap.<snap>.<app>.service``, so ``systemctl`` and snapd see one truth.

    Unit files a charm writes itself, at the path
    :func:`charm_upgrade.machine_path` gives in a unit's events under
    :class:`~charm_upgrade.testing.RefreshHarness` or
    :class:`~charm_upgrade.testing.RollingRefresh` (``/etc/systemd/system/<unit>``
    under :attr:`root`; :meth:`machine_path` gives the same), are units of this
    machine at once, as systemd loads a new unit file when it is first named:
    ``enable``, ``start`` and ``show`` find it, with or without a
    ``daemon-reload`` first.

    Use it as a context manager: it puts the stand-in first on ``PATH`` and
    points ``$CHARM_UPGRADE_SYSTEMD_DIR`` at :attr:`config_dir`.

    Args:
        directory: Where to keep the executable, the machine and the log; a
            new temporary directory by default.

    Example::

        with FakeSystemd() as systemd:
            systemd.add_unit('myapp.service')
            SystemdServices(['myapp']).read_state()
            assert systemd.commands() == ['show']
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = pathlib.Path(directory or tempfile.mkdtemp(prefix='fake-systemd-'))
        """Where the executable (``bin/systemctl``), the machine and the log live."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.machine = Machine(self.directory)
        """The model behind the stand-in (shared with an attached FakeSnapd)."""
        self.machine.setup()
        self.root = self.machine.root
        """Stands for the machine's ``/``: a harness given this FakeSystemd maps paths here."""
        self.config_dir = self.machine.config_dir
        """Stands for ``/etc/systemd/system``: unit files, links, drop-ins (and holds)."""
        self.vendor_dir = self.machine.vendor_dir
        """Stands for ``/lib/systemd/system``: packaged unit files."""
        bin_dir = self.directory / 'bin'
        bin_dir.mkdir(exist_ok=True)
        executable = bin_dir / 'systemctl'
        package_parent = str(pathlib.Path(__file__).resolve().parents[2])
        script = _SCRIPT.format(package_parent=package_parent, home=str(self.directory))
        executable.write_text(f'#!{sys.executable}\n{script}')
        executable.chmod(executable.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.bin_dir = bin_dir
        """The directory put first on ``PATH``."""
        self._calls_path = self.directory / 'calls.jsonl'
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> FakeSystemd:
        for key, value in (
            ('PATH', f'{self.bin_dir}{os.pathsep}{os.environ.get("PATH", "")}'),
            ('CHARM_UPGRADE_SYSTEMD_DIR', str(self.config_dir)),
        ):
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    # Units --------------------------------------------------------------------------------

    def add_unit(
        self,
        name: str,
        *,
        enabled: str = 'enabled',
        active: bool = True,
        path: str | None = None,
        wanted_by: Iterable[str] | None = None,
        also: Iterable[str] = (),
        alias: Iterable[str] = (),
        refuse_manual_start: bool = False,
        refuse_manual_stop: bool = False,
        triggers: str | None = None,
    ) -> None:
        """Add a unit (replacing one of that name, with its links).

        Args:
            name: The unit name; no suffix means ``.service``.
            enabled: What ``systemctl is-enabled`` should report: ``enabled``
                (linked into each ``wanted_by`` target, and ``alias`` names
                made), ``disabled``, ``static`` (no ``[Install]`` section),
                ``masked`` or ``linked`` (a ``systemctl link`` to ``path``).
            active: Whether the unit is running.
            path: The unit file's path on the machine; ``/etc/systemd/system/<name>``
                by default (``/lib/systemd/system/<name>`` for a masked unit).
                A path outside the unit directories makes a linked unit.
            wanted_by: ``WantedBy=`` targets; ``multi-user.target`` by default
                (``sockets.target`` for a socket, ``timers.target`` for a timer).
            also: ``Also=`` units.
            alias: ``Alias=`` names.
            refuse_manual_start: ``RefuseManualStart=yes``.
            refuse_manual_stop: ``RefuseManualStop=yes``.
            triggers: For a ``.socket`` or ``.path`` unit, the unit it starts
                (``Service=``/``Unit=``); by default the ``.service`` of the same name.

        Example::

            systemd.add_unit('myapp.socket')
            systemd.add_unit('myapp', enabled='static', active=False)
        """
        name = full_name(name)
        self.remove_unit(name)
        suffix = '.' + name.rsplit('.', 1)[1]
        stem = name.rsplit('.', 1)[0]
        defaults = {'masked': f'/lib/systemd/system/{name}', 'linked': f'/opt/units/{name}'}
        machine_path = path or defaults.get(enabled) or f'/etc/systemd/system/{name}'
        lines = ['[Unit]', f'Description=fake {name}']
        if refuse_manual_start:
            lines.append('RefuseManualStart=yes')
        if refuse_manual_stop:
            lines.append('RefuseManualStop=yes')
        body = _BODIES.get(suffix, '[Service]\nExecStart=/bin/sleep infinity\n').format(stem=stem)
        if triggers and suffix in ('.socket', '.path'):
            key = 'Service' if suffix == '.socket' else 'Unit'
            body += f'{key}={full_name(triggers)}\n'
        text = '\n'.join(lines) + '\n' + body
        if enabled != 'static':
            targets = (
                list(wanted_by)
                if wanted_by is not None
                else [_DEFAULT_TARGETS.get(suffix, 'multi-user.target')]
            )
            install = ['[Install]', *(f'WantedBy={t}' for t in targets)]
            install += [f'Also={full_name(a)}' for a in also]
            install += [f'Alias={full_name(a)}' for a in alias]
            text += '\n'.join(install) + '\n'
        file = self.machine.real_path(machine_path)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        linked = file.parent not in (self.config_dir, self.vendor_dir)
        if linked or enabled == 'linked':
            (self.config_dir / name).symlink_to(file)
        if enabled == 'masked':
            (self.config_dir / name).symlink_to('/dev/null')
        unit = self.machine.resolve(name)
        if enabled == 'enabled':
            self.machine.enable(unit)
        with self.machine.state() as state:
            state['active'][name] = 'active' if active else 'inactive'
            self.machine.reload(state)

    def remove_unit(self, name: str) -> None:
        """Remove a unit's file, links and aliases, as a package removal would.

        Drop-ins in :attr:`config_dir` stay, as an administrator's do; a
        running unit keeps running (systemd keeps it loaded until it stops).
        """
        name = full_name(name)
        unit = self.machine.resolve(name)
        if unit.load_state != 'not-found':
            self.machine.disable(unit)
        for path in (self.config_dir / name, self.vendor_dir / name):
            if path.is_symlink() or path.is_file():
                path.unlink()
        if unit.file is not None and unit.file.exists():
            unit.file.unlink()

    def rename_unit(self, old: str, new: str) -> None:
        """Stand for a package that renames a unit: ``new`` replaces ``old`` with ``Alias=old``.

        The old unit file goes; the new one is a packaged unit, enabled as the
        package's maintainer script would (which makes the old name an alias).
        Its running state is the old unit's.
        """
        old, new = full_name(old), full_name(new)
        old_unit = self.machine.resolve(old)
        wanted_by = old_unit.values('Install', 'WantedBy') or ['multi-user.target']
        active = self.machine.is_active(old)
        self.remove_unit(old)
        self.add_unit(
            new,
            path=f'/lib/systemd/system/{new}',
            wanted_by=wanted_by,
            alias=[old],
            active=active,
        )

    def add_dropin(self, unit: str, name: str, text: str) -> pathlib.Path:
        """Write a drop-in ``name`` for ``unit`` in :attr:`config_dir`; takes effect at reload."""
        path = self.config_dir / f'{full_name(unit)}.d' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def activate(self, trigger: str) -> None:
        """Stand for a client that connects to a socket (or a path change): start its service.

        If the service is held, the start is skipped and the trigger fails, as
        systemd's trigger limit makes it do; as with systemd 257, the limit
        stays hit, even across a ``start`` of the trigger, until a
        ``reset-failed`` of it.
        """
        unit = self.machine.resolve(trigger)
        section = 'Socket' if unit.id.endswith('.socket') else 'Path'
        key = 'Service' if section == 'Socket' else 'Unit'
        target = (unit.values(section, key) or [f'{unit.id.rsplit(".", 1)[0]}.service'])[-1]
        with self.machine.state() as state:
            if state['active'].get(unit.id) != 'active':
                return
            limited: list[str] = state.setdefault('trigger_limit_hit', [])
            if self.machine.skips_start(self.machine.resolve(target).id, state) or (
                unit.id in limited
            ):
                state['active'][unit.id] = 'failed'
                limited[:] = sorted({*limited, unit.id})
            else:
                state['active'][self.machine.resolve(target).id] = 'active'

    def machine_path(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Where the machine path ``path`` is on this fake machine (under :attr:`root`).

        Example::

            systemd.machine_path('/etc/systemd/system/myapp.service').write_text(UNIT)
        """
        return under_root(path, self.root)

    def systemctl(self, *args: str) -> str:
        """Run the stand-in with ``args`` (logged like any call); return its output.

        Raises:
            AssertionError: it exited non-zero.
        """
        code, out, err = _fake_systemctl.systemctl(self.machine, list(args))
        assert code == 0, f'systemctl {" ".join(args)} exited {code}: {err}'
        return out

    # Looking ------------------------------------------------------------------------------

    def unit(self, name: str) -> dict[str, str]:
        """Return a unit's ``enabled`` and ``active`` states, as systemctl would print them."""
        unit = self.machine.resolve(name)
        return {
            'enabled': self.machine.unit_file_state(unit) or 'not-found',
            'active': self.machine.read_state()['active'].get(unit.id, 'inactive'),
        }

    def links(self, name: str) -> list[str]:
        """The unit's enablement links in :attr:`config_dir`, as paths relative to it."""
        unit = self.machine.resolve(name)
        names = self.machine.names(unit)
        top = [p for p in self.config_dir.iterdir() if p.is_symlink() and p.name in names]
        found = top + self.machine.wants_links(names)
        return sorted(str(p.relative_to(self.config_dir)) for p in found)

    def held(self) -> list[str]:
        """Return the units whose start systemd would skip now (conditions of the last reload)."""
        state = self.machine.read_state()
        loaded = {*state['held'], *state.get('path_conditions', {})}
        return sorted(unit for unit in loaded if self.machine.skips_start(unit, state))

    def fail_next(self, command: str, message: str, *, count: int = 1, code: int = 1) -> None:
        """Make the next ``count`` calls of ``command`` fail with ``message``."""
        with self.machine.state() as state:
            state['fail'][command] = {'count': count, 'message': message, 'code': code}

    @property
    def calls(self) -> list[list[str]]:
        """Every call's arguments, oldest first."""
        try:
            lines = self._calls_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines]

    def commands(self) -> list[str]:
        """Every call's subcommand (``show``, ``stop``...), oldest first."""
        return [next(a for a in call if not a.startswith('--')) for call in self.calls]

    def clear_calls(self) -> None:
        """Forget the calls made so far."""
        self._calls_path.unlink(missing_ok=True)
