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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ['FakeSystemd']

# The stand-in executable. It keeps the units in a JSON file next to it and
# behaves like systemctl for the subcommands charm-upgrade uses. Like the real
# systemd, drop-ins take effect at daemon-reload, not when they are written.
_SCRIPT = r"""
import json, os, pathlib, sys

HOLD = 'zz-charm-upgrade-hold.conf'
home = pathlib.Path(__file__).resolve().parent.parent
state_path = home / 'state.json'
state = json.loads(state_path.read_text())
argv = sys.argv[1:]
with open(home / 'calls.jsonl', 'a') as f:
    f.write(json.dumps(argv) + '\n')
args = [a for a in argv if not (a.startswith('--') and a != '--')]
props = next((a.split('=', 1)[1] for a in argv if a.startswith('--property=')), '')
names = [a for a in args[1:] if a != '--']
command = args[0] if args else ''
units = state['units']
fail = state.get('fail', {})

def save():
    tmp = state_path.with_suffix('.tmp')
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, state_path)

def full(name):
    return name if '.' in name else name + '.service'

if command in fail and fail[command]['count'] > 0:
    fail[command]['count'] -= 1
    save()
    sys.stderr.write(fail[command]['message'] + '\n')
    sys.exit(fail[command].get('code', 1))

def unit(name, *, must_exist=True):
    u = units.get(full(name))
    if u is None and must_exist:
        sys.stderr.write(f'Failed to {command} {name}: Unit {full(name)} not found.\n')
        sys.exit(5)
    return u

if command == 'show':
    blocks = []
    for name in names:
        u = units.get(full(name))
        values = {
            'Id': full(name),
            'LoadState': u['load'] if u else 'not-found',
            'ActiveState': u['active'] if u else 'inactive',
            'UnitFileState': u['enabled'] if u else '',
            'FragmentPath': u['path'] if u else '',
        }
        wanted = props.split(',') if props else list(values)
        blocks.append('\n'.join(f'{k}={values[k]}' for k in wanted))
    sys.stdout.write('\n\n'.join(blocks) + '\n')
elif command == 'daemon-reload':
    config = pathlib.Path(state['config_dir'])
    state['held'] = sorted(p.parent.name[:-2] for p in config.glob('*.d/' + HOLD))
    save()
elif command in ('enable', 'disable'):
    for name in names:
        u = unit(name)
        if u['enabled'] in ('enabled', 'disabled'):
            u['enabled'] = 'enabled' if command == 'enable' else 'disabled'
    save()
elif command == 'mask':
    for name in names:
        u = unit(name)
        if u['path'].startswith('/etc/systemd/system/'):
            sys.stderr.write(f'Failed to mask unit: File {u["path"]} already exists.\n')
            sys.exit(1)
        u['enabled'] = 'masked'
        u['load'] = 'masked'
    save()
elif command == 'unmask':
    for name in names:
        u = unit(name)
        if u['enabled'] == 'masked':
            u['enabled'] = 'disabled'
            u['load'] = 'loaded'
    save()
elif command == 'stop':
    for name in names:
        unit(name)['active'] = 'inactive'
    save()
elif command in ('start', 'restart'):
    for name in names:
        u = unit(name)
        if u['enabled'] == 'masked':
            sys.stderr.write(f'Failed to start {full(name)}: Unit {full(name)} is masked.\n')
            sys.exit(1)
        # A held unit's condition is false: systemd skips it, and start succeeds.
        if full(name) not in state.get('held', []):
            u['active'] = 'active'
    save()
elif command == 'is-active':
    sys.stdout.write('\n'.join(unit(n)['active'] for n in names) + '\n')
    sys.exit(0 if all(unit(n)['active'] == 'active' for n in names) else 3)
elif command == 'is-enabled':
    sys.stdout.write('\n'.join(unit(n)['enabled'] for n in names) + '\n')
    sys.exit(0 if all(unit(n)['enabled'] == 'enabled' for n in names) else 1)
else:
    sys.stderr.write(f'fake systemctl: unknown command {command!r}\n')
    sys.exit(1)
"""


class FakeSystemd:
    """A ``systemctl`` stand-in on ``PATH``, with units kept in a JSON file.

    It answers ``show``, ``daemon-reload``, ``enable``, ``disable``, ``mask``, ``unmask``,
    ``start``, ``stop``, ``restart``, ``is-active`` and ``is-enabled`` as
    systemd does for the cases charm-upgrade meets, including two that matter
    for series upgrades: ``mask`` fails for a unit file in
    ``/etc/systemd/system``, and a unit with a hold drop-in (after a
    ``daemon-reload``) is not started by ``start``. Every call is logged.

    Use it as a context manager: it puts the stand-in first on ``PATH`` and
    points ``$CHARM_UPGRADE_SYSTEMD_DIR`` at its own drop-in directory.

    Args:
        directory: Where to keep the executable, the state and the log; a new
            temporary directory by default.

    Example::

        with FakeSystemd() as systemd:
            systemd.add_unit('myapp.service')
            SystemdServices(['myapp']).read_state()
            assert systemd.calls == [['--no-ask-password', '--no-pager', 'show', ...]]
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = pathlib.Path(directory or tempfile.mkdtemp(prefix='fake-systemd-'))
        """Where the executable (``bin/systemctl``), state and log live."""
        self.config_dir = self.directory / 'etc-systemd-system'
        """Where hold drop-ins are written (stands for ``/etc/systemd/system``)."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        bin_dir = self.directory / 'bin'
        bin_dir.mkdir(exist_ok=True)
        executable = bin_dir / 'systemctl'
        executable.write_text(f'#!{sys.executable}\n{_SCRIPT}')
        executable.chmod(executable.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.bin_dir = bin_dir
        """The directory put first on ``PATH``."""
        self._state_path = self.directory / 'state.json'
        self._calls_path = self.directory / 'calls.jsonl'
        if not self._state_path.exists():
            self._save({'units': {}, 'held': [], 'fail': {}, 'config_dir': str(self.config_dir)})
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

    def add_unit(
        self,
        name: str,
        *,
        enabled: str = 'enabled',
        active: bool = True,
        path: str | None = None,
    ) -> None:
        """Add a unit.

        Args:
            name: The full unit name, such as ``myapp.service``.
            enabled: What ``systemctl is-enabled`` reports (``enabled``,
                ``disabled``, ``static``, ``masked``).
            active: Whether the unit is running.
            path: The unit file's path; ``/etc/systemd/system/<name>`` by default.
        """
        state = self._load()
        state['units'][name] = {
            'load': 'masked' if enabled == 'masked' else 'loaded',
            'active': 'active' if active else 'inactive',
            'enabled': enabled,
            'path': path or f'/etc/systemd/system/{name}',
        }
        self._save(state)

    def unit(self, name: str) -> dict[str, str]:
        """Return a unit's ``enabled`` and ``active`` states, as systemctl would print them."""
        u = self._load()['units'][name]
        return {'enabled': u['enabled'], 'active': u['active']}

    def held(self) -> list[str]:
        """Return the units systemd currently holds down (as of the last daemon-reload)."""
        return list(self._load()['held'])

    def fail_next(self, command: str, message: str, *, count: int = 1, code: int = 1) -> None:
        """Make the next ``count`` calls of ``command`` fail with ``message``."""
        state = self._load()
        state['fail'][command] = {'count': count, 'message': message, 'code': code}
        self._save(state)

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

    def _load(self) -> dict[str, Any]:
        return json.loads(self._state_path.read_text())

    def _save(self, state: dict[str, Any]) -> None:
        self._state_path.write_text(json.dumps(state, indent=1))
