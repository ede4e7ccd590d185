# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The stand-in ``systemctl`` command line over :class:`~._fake_systemd_model.Machine`.

:func:`systemctl` runs one command line against the machine's locked state;
:func:`main` is what the executable that :class:`~charm_upgrade.testing.FakeSystemd`
puts on ``PATH`` runs, one process per call, like the real one.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import TYPE_CHECKING, Any

from ._fake_systemd_model import Machine, full_name, is_template, symlink

if TYPE_CHECKING:
    from ._fake_systemd_model import UnitFile

__all__ = ['Command', 'main', 'systemctl']

_SHORT = {'-q': '--quiet'}
# What `is-active` and `is-enabled` count as a yes (exit status 0), as systemctl's own lists.
_ACTIVE_YES = ('active', 'reloading', 'refreshing')
_ENABLED_YES = (
    'enabled',
    'enabled-runtime',
    'static',
    'alias',
    'indirect',
    'generated',
    'transient',
)


def _is_option(arg: str) -> bool:
    return arg in _SHORT or (arg.startswith('--') and arg != '--')


def systemctl(machine: Machine, argv: list[str]) -> tuple[int, str, str]:
    """Run one ``systemctl`` command line; return (exit status, stdout, stderr)."""
    with open(machine.home / 'calls.jsonl', 'a') as f:
        f.write(json.dumps(argv) + '\n')
    # `--` ends the options; short flags are systemctl's one-letter spellings.
    options = [_SHORT.get(a, a) for a in argv if _is_option(a)]
    args = [a for a in argv if not _is_option(a)]
    command = args[0] if args else ''
    names = [a for a in args[1:] if a != '--']
    with machine.state() as state:
        fail = state['fail'].get(command)
        if fail and fail['count'] > 0:
            fail['count'] -= 1
            return fail.get('code', 1), '', fail['message'] + '\n'
        return Command(machine, state, options, names).run(command)


class Command:
    """One ``systemctl`` command, run against the locked state."""

    def __init__(
        self, machine: Machine, state: dict[str, Any], options: list[str], names: list[str]
    ):
        self.m = machine
        self.state = state
        self.options = options
        self.names = names
        self.out: list[str] = []
        self.err: list[str] = []
        self.code = 0

    def fail(self, code: int, message: str) -> None:
        self.err.append(message)
        self.code = code

    def option(self, prefix: str) -> str | None:
        return next((o.split('=', 1)[1] for o in self.options if o.startswith(prefix)), None)

    def run(self, command: str) -> tuple[int, str, str]:
        handler = getattr(self, 'do_' + command.replace('-', '_'), None)
        if handler is None:
            return 1, '', f'fake systemctl: unknown command {command!r}\n'
        handler()
        out = '\n'.join(self.out) + ('\n' if self.out else '')
        err = '\n'.join(self.err) + ('\n' if self.err else '')
        return self.code, out, err

    def do_show(self) -> None:
        for name in self.names:
            if is_template(name):
                self.out.clear()
                self.fail(
                    1,
                    f'Failed to get properties: Unit name {full_name(name)} is neither a valid '
                    'invocation ID nor unit name.',
                )
                return
        wanted = (self.option('--property=') or '').split(',')
        blocks: list[str] = []
        index = self.m.index()
        for name in self.names:
            props = self.m.properties(name, self.state, index)
            keys = [k for k in wanted if k] or list(props)
            blocks.append('\n'.join(f'{k}={props.get(k, "")}' for k in keys))
        self.out.append('\n\n'.join(blocks))

    def do_daemon_reload(self) -> None:
        self.m.reload(self.state)

    def _reload_unless_told(self) -> None:
        if '--no-reload' not in self.options:
            self.m.reload(self.state)

    def do_enable(self) -> None:
        units: list[UnitFile] = []
        for name in self.names:
            if name.startswith('/'):
                link = self.m.config_dir / os.path.basename(name)
                if not link.exists():
                    symlink(link, name)
                    self.err.append(f'Created symlink {link} \u2192 {name}.')
                name = os.path.basename(name)
            name = full_name(name)
            unit = self.m.resolve(name)
            if unit.load_state == 'not-found':
                return self.fail(1, f'Failed to enable unit: Unit file {name} does not exist.')
            if unit.load_state == 'masked':
                return self.fail(1, f'Failed to enable unit: Unit file {name} is masked.')
            if unit.id != name:
                return self.fail(
                    1,
                    'Failed to enable unit: Refusing to operate on alias name or linked unit '
                    f'file: {name}',
                )
            units.append(unit)
        for unit in units:
            created = self.m.enable(unit)
            if not unit.install:
                self.err.append(f'The unit files have no installation config ({unit.id}).')
            self.err += created
        self._reload_unless_told()
        if '--now' in self.options:
            self._start([unit.id for unit in units])  # a path given to enable, by its name

    def do_disable(self) -> None:
        units: list[UnitFile] = []
        for name in map(full_name, self.names):
            unit = self.m.resolve(name)
            if unit.load_state == 'not-found':
                return self.fail(1, f'Failed to disable unit: Unit file {name} does not exist.')
            units.append(unit)
        index = self.m.index()
        for unit in units:
            self.err += self.m.disable(unit, index=index)
        self._reload_unless_told()
        if '--now' in self.options:
            self._stop(self.names)

    def do_link(self) -> None:
        for path in self.names:
            link = self.m.config_dir / os.path.basename(path)
            if link.exists() and not link.is_symlink():
                return self.fail(1, f'Failed to link unit: File {link} already exists.')
            symlink(link, path)
        self._reload_unless_told()

    def do_add_wants(self) -> None:
        target, *units = self.names
        for name in map(full_name, units):
            unit = self.m.resolve(name)
            if unit.load_state != 'loaded':
                return self.fail(1, f'Failed to add dependency: Unit file {name} does not exist.')
            symlink(self.m.config_dir / f'{target}.wants' / unit.id, self.m.link_target(unit))
        self._reload_unless_told()

    def do_mask(self) -> None:
        for name in map(full_name, self.names):
            path = self.m.config_dir / name
            if path.exists() and not path.is_symlink():
                return self.fail(1, f'Failed to mask unit: File {path} already exists.')
            if path.is_symlink():
                path.unlink()
            path.symlink_to('/dev/null')
        self._reload_unless_told()

    def do_unmask(self) -> None:
        for name in map(full_name, self.names):
            path = self.m.config_dir / name
            if path.is_symlink() and os.readlink(path) == '/dev/null':
                path.unlink()
        self._reload_unless_told()

    def do_start(self) -> None:
        self._start(self.names)

    def do_restart(self) -> None:
        self._start(self.names, restart=True)

    def _start(self, names: list[str], *, restart: bool = False) -> None:
        for name in map(full_name, names):
            if is_template(name):
                self.fail(1, f'Failed to start {name}: Unit name {name} is missing the instance.')
                continue
            unit = self.m.resolve(name)
            if unit.load_state == 'not-found':
                self.fail(5, f'Failed to start {name}: Unit {name} not found.')
            elif unit.load_state == 'masked':
                self.fail(1, f'Failed to start {name}: Unit {name} is masked.')
            elif unit.flag('Unit', 'RefuseManualStart'):
                self.fail(
                    4,
                    f'Failed to start {name}: Operation refused, unit {name} may be requested '
                    'by dependency only (it is configured to refuse manual start/stop).',
                )
            elif self.m.skips_start(unit.id, self.state):
                # The condition is false: systemd skips the unit, and the start succeeds.
                if restart:
                    self.state['active'][unit.id] = 'inactive'
            else:
                self.state['active'][unit.id] = 'active'

    def do_stop(self) -> None:
        self._stop(self.names)

    def _stop(self, names: list[str]) -> None:
        for name in map(full_name, names):
            unit = self.m.resolve(name)
            if unit.load_state == 'not-found' and unit.id not in self.state['active']:
                self.fail(5, f'Failed to stop {name}: Unit {name} not loaded.')
            elif unit.flag('Unit', 'RefuseManualStop'):
                self.fail(
                    4,
                    f'Failed to stop {name}: Operation refused, unit {name} may be requested '
                    'by dependency only (it is configured to refuse manual start/stop).',
                )
            else:
                self.state['active'][unit.id] = 'inactive'

    def do_reset_failed(self) -> None:
        limited: list[str] = self.state.setdefault('trigger_limit_hit', [])
        for name in map(full_name, self.names):
            unit = self.m.resolve(name)
            if self.state['active'].get(unit.id) == 'failed':
                self.state['active'][unit.id] = 'inactive'
            if unit.id in limited:
                limited.remove(unit.id)

    def do_is_active(self) -> None:
        # Exit 0 if at least one unit is active, as systemctl's is-active does.
        states = [self.state['active'].get(self.m.resolve(n).id, 'inactive') for n in self.names]
        self._answer(states)
        self.code = 0 if any(s in _ACTIVE_YES for s in states) else 3

    def do_is_enabled(self) -> None:
        # Exit 0 if at least one unit file is enabled, static, an alias...; an unknown one
        # prints an error, not a state.
        states: list[str] = []
        for name in map(full_name, self.names):
            state = self._enablement(name)
            if state == 'not-found':
                self.err.append(
                    f'Failed to get unit file state for {name}: No such file or directory'
                )
            else:
                states.append(state)
        self._answer(states)
        self.code = 0 if any(s in _ENABLED_YES for s in states) else 1

    def _answer(self, states: list[str]) -> None:
        if '--quiet' not in self.options:
            self.out += states

    def _enablement(self, name: str) -> str:
        unit = self.m.resolve(name)
        if unit.load_state == 'loaded' and unit.id != name:
            return 'alias'
        return self.m.unit_file_state(unit) or 'not-found'


def main(home: str, argv: list[str]) -> int:
    """The stand-in ``systemctl``: run ``argv`` against the fake in ``home``."""
    code, out, err = systemctl(Machine(pathlib.Path(home)), argv)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code
