# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Runs inside the container with /opt/venv/bin/python: the library against the real systemd.

The library shells out to ``systemctl`` and writes drop-ins under
/etc/systemd/system, which the host cannot do for the container, so the series
upgrade steps run in here, one process per step, as a hook would. Flags live in
a JSON file of the state directory, so that they survive a reboot like a
charm's stored state. Every command prints one JSON object on stdout.

    python _inside.py series prepare|complete SPEC   # SPEC: JSON list of groups
    python _inside.py bench-systemd N ROUNDS         # ours vs service_pause, N units

A group in SPEC is ``{"systemd": [unit, ...], "allow_unlisted_triggers": bool}`` or
``{"snap": name, "services": [...]|null}``. A step that the library refuses
prints ``{"error": ...}``; every step prints the ``systemctl`` calls it made.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from charm_upgrade import CharmUpgradeError, SnapServices, SystemdServices, _systemd
from charm_upgrade._flags import APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS
from charm_upgrade._series_flow import SeriesUpgradeFlow
from charm_upgrade._services import Services

STATE_DIR = pathlib.Path(os.environ.get('CHARM_UPGRADE_STATE_DIR', '/var/lib/cu-it-state'))


class FileFlags:
    """A FlagStore in a JSON file (stored state survives reboots; /run does not)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str | None]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _write(self, flags: dict[str, str | None]) -> None:
        self.path.write_text(json.dumps(flags, sort_keys=True))

    def is_set(self, flag: str) -> bool:
        return flag in self._read()

    def set(self, flag: str, value: str | None = None) -> None:
        self._write({**self._read(), flag: value})

    def clear(self, flag: str) -> None:
        self._write({k: v for k, v in self._read().items() if k != flag})

    def value(self, flag: str) -> str | None:
        return self._read().get(flag)


def groups(spec: list[dict[str, Any]]) -> list[Services]:
    result: list[Services] = []
    for group in spec:
        if 'systemd' in group:
            allow = bool(group.get('allow_unlisted_triggers'))
            result.append(SystemdServices(group['systemd'], allow_unlisted_triggers=allow))
        else:
            result.append(SnapServices(group['snap'], group.get('services')))
    return result


def count_systemctl_calls(log: pathlib.Path) -> None:
    """Point the library at a systemctl that logs each call's subcommand to ``log``."""
    wrapper = log.with_suffix('.sh')
    first_word = f'case "$a" in --*) ;; *) echo "$a" >> {log}; break;; esac'
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do {first_word}; done\nexec systemctl "$@"\n')
    wrapper.chmod(0o755)
    log.unlink(missing_ok=True)
    _systemd.SYSTEMCTL = str(wrapper)


def series(step: str, spec: list[dict[str, Any]]) -> dict[str, Any]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    os.environ['CHARM_UPGRADE_STATE_DIR'] = str(STATE_DIR)
    # The container stays on bookworm; the library reads the base from this
    # file, which says the OS went from 12 to 13 between prepare and complete.
    os_release = STATE_DIR / 'os-release'
    version = '12' if step == 'prepare' else '13'
    os_release.write_text(f'ID=debian\nVERSION_ID="{version}"\n')
    os.environ['CHARM_UPGRADE_OS_RELEASE'] = str(os_release)
    flags = FileFlags(STATE_DIR / 'flags.json')
    migrations = STATE_DIR / 'migrations.jsonl'

    def migrate(old: str, new: str) -> None:
        with migrations.open('a') as f:
            f.write(json.dumps([old, new]) + '\n')

    # As the framework does: in-progress from pre-series-upgrade to post-series-upgrade.
    if step == 'prepare':
        flags.set(APPLICATION_STARTED)
        flags.set(UPGRADE_SERIES_IN_PROGRESS)
    else:
        flags.clear(UPGRADE_SERIES_IN_PROGRESS)
    calls = STATE_DIR / f'systemctl-{step}.log'
    count_systemctl_calls(calls)
    began = time.monotonic()
    try:
        flow = SeriesUpgradeFlow(groups(spec), flags=flags, migrate=migrate)
        done = flow.run(target_base='debian@13').value
    except CharmUpgradeError as e:
        return {'error': f'{type(e).__name__}: {e}', 'calls': _calls(calls)}
    result = flow.last_result
    record = flow.read_record()
    return {
        'step': done,
        'seconds': time.monotonic() - began,
        'record': record.to_json() if record is not None else None,
        'skipped': result.skipped if result else {},
        'renamed': result.renamed if result else {},
        'calls': _calls(calls),
    }


def _calls(log: pathlib.Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _systemctl(*args: str) -> int:
    # As charmhelpers' service(): subprocess.call, output to the caller's stdout.
    return subprocess.call(['systemctl', *args], stdout=subprocess.DEVNULL)


def service_pause(name: str) -> None:
    """charmhelpers.core.host.service_pause on systemd: is-active, stop, disable, mask."""
    if _systemctl('is-active', name) == 0:
        _systemctl('stop', name)
    _systemctl('disable', name)
    _systemctl('mask', name)


def service_resume(name: str) -> None:
    """charmhelpers.core.host.service_resume on systemd: unmask, enable, start."""
    _systemctl('unmask', name)
    _systemctl('enable', name)
    if _systemctl('is-active', name) != 0:
        _systemctl('start', name)


def bench_systemd(count: int, rounds: int) -> dict[str, Any]:
    """Time taking ``count`` real units down: SystemdServices vs one service_pause each."""
    names = [f'cu-bench{i}.service' for i in range(count)]
    unit = '[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n'
    for name in names:
        # /lib units, so that charmhelpers' mask succeeds (it is refused for /etc units).
        pathlib.Path(f'/lib/systemd/system/{name}').write_text(unit)
    subprocess.run(['systemctl', 'daemon-reload'], check=True)
    subprocess.run(['systemctl', 'enable', '--now', *names], check=True, capture_output=True)
    ours: list[float] = []
    theirs: list[float] = []
    services = SystemdServices(names)
    try:
        for _ in range(rounds):
            began = time.perf_counter()
            before = services.read_state()
            services.take_down(before)
            ours.append(time.perf_counter() - began)
            _check_down(names)
            services.bring_back(before)
            _check_up(names)

            began = time.perf_counter()
            for name in names:
                service_pause(name)
            theirs.append(time.perf_counter() - began)
            _check_down(names)
            for name in names:
                service_resume(name)
            _check_up(names)
    finally:
        subprocess.run(['systemctl', 'disable', '--now', *names], capture_output=True, check=False)
        for name in names:
            pathlib.Path(f'/lib/systemd/system/{name}').unlink(missing_ok=True)
        subprocess.run(['systemctl', 'daemon-reload'], check=False)
    return {'ours': ours, 'service_pause': theirs}


def _active(names: list[str]) -> list[str]:
    out = subprocess.run(
        ['systemctl', 'is-active', *names], capture_output=True, text=True, check=False
    ).stdout.split()
    return [name for name, state in zip(names, out, strict=True) if state == 'active']


def _check_down(names: list[str]) -> None:
    if _active(names):
        raise SystemExit(f'still active after take-down: {_active(names)}')


def _check_up(names: list[str]) -> None:
    if len(_active(names)) != len(names):
        raise SystemExit(f'not all active after bring-up: {_active(names)}')


def main(argv: list[str]) -> None:
    if argv[:1] == ['series']:
        result = series(argv[1], json.loads(argv[2]))
    elif argv[:1] == ['bench-systemd']:
        result = bench_systemd(int(argv[1]), int(argv[2]))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result))


if __name__ == '__main__':
    main(sys.argv[1:])
