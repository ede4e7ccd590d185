# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Series upgrade on the real systemd and snapd, across a real reboot.

Each step runs in its own process inside the container (``_inside.py``), as a
hook would. Between prepare and complete the tests do what an OS upgrade does
to services: a package's maintainer script enables them again and runs
``deb-systemd-invoke restart``, root runs ``systemctl start``, another unit
pulls them in with ``Wants=``, a client connects to a socket, and the machine
reboots. None of that may run a held service ("held down means held down"),
and complete restores exactly the state before.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from _snaps import PROBE, UP, reset, services, web_page
from _units import condition_results, connect_to, held, unit_states

if TYPE_CHECKING:
    from collections.abc import Callable

    from _container import Container
    from conftest import Probe
LONG_RUNNING = '[Service]\nExecStart=/bin/sleep infinity\n'
INSTALL = '[Install]\nWantedBy=multi-user.target\n'
UNITS = {
    # A charm's own unit, where mask is refused.
    '/etc/systemd/system/cu-etc.service': (
        '[Unit]\nWants=cu-dep.service\nAfter=cu-dep.service\n' + LONG_RUNNING + INSTALL
    ),
    # A packaged unit.
    '/lib/systemd/system/cu-lib.service': LONG_RUNNING + INSTALL,
    # Static: runs only because cu-etc wants it.
    '/etc/systemd/system/cu-dep.service': LONG_RUNNING,
    # Installable, but the operator disabled it.
    '/etc/systemd/system/cu-off.service': LONG_RUNNING + INSTALL,
    # Socket activation: the service runs because a client connected.
    '/etc/systemd/system/cu-sock.socket': (
        '[Socket]\nListenStream=/run/cu-sock.sock\n[Install]\nWantedBy=sockets.target\n'
    ),
    '/etc/systemd/system/cu-sock.service': LONG_RUNNING,
    # Not held: a unit that pulls every held one in.
    '/etc/systemd/system/cu-pull.service': (
        '[Unit]\nWants=cu-etc.service cu-lib.service cu-dep.service cu-off.service\n'
        '[Service]\nType=oneshot\nExecStart=/bin/true\n'
    ),
}
# As a charm lists a socket-activated service: the socket and its service.
HELD = [
    'cu-etc.service',
    'cu-lib.service',
    'cu-dep.service',
    'cu-off.service',
    'cu-sock.socket',
    'cu-sock.service',
]
BEFORE = {
    'cu-etc.service': ('enabled', 'active'),
    'cu-lib.service': ('enabled', 'active'),
    'cu-dep.service': ('static', 'active'),
    'cu-off.service': ('disabled', 'inactive'),
    'cu-sock.socket': ('enabled', 'active'),
    'cu-sock.service': ('static', 'active'),
}


def connect(container: Container) -> int:
    """Connect to cu-sock.socket: 7 when refused, 28 (time-out) when it accepted."""
    return connect_to(container, '/run/cu-sock.sock')


@pytest.fixture
def systemd_units(container: Container) -> Any:
    """Install the test units, start them as BEFORE says; remove everything at the end."""
    for path, text in UNITS.items():
        container.write_file(path, text)
    container.exec(['systemctl', 'daemon-reload'])
    container.exec(['systemctl', 'enable', 'cu-etc.service', 'cu-lib.service', 'cu-sock.socket'])
    container.exec(['systemctl', 'start', 'cu-etc.service', 'cu-lib.service', 'cu-sock.socket'])
    # The service never accepts: the client times out, the service runs.
    assert connect(container) == 28
    try:
        yield
    finally:
        units = [*HELD, 'cu-pull.service']
        container.exec(['systemctl', 'disable', '--now', *units], check=False)
        for unit in units:
            container.exec(['rm', '-rf', f'/etc/systemd/system/{unit}.d'], check=False)
        container.exec(['rm', '-f', *UNITS], check=False)
        container.exec(['systemctl', 'daemon-reload'], check=False)


def test_series_upgrade_on_real_systemd_with_reboot(
    container: Container,
    systemd_units: None,
    run_step: Callable[[str, list[dict[str, Any]]], dict[str, Any]],
    record_timing: Callable[[str, float], None],
) -> None:
    spec: list[dict[str, Any]] = [{'systemd': HELD}]
    assert unit_states(container, HELD) == BEFORE

    prepared = run_step('prepare', spec)

    assert prepared['step'] == 'took-down'
    record_timing('series_prepare_6_units', prepared['seconds'])
    recorded = prepared['record']['services']['systemd:' + ','.join(HELD)]['units']
    assert {u: (s['is_enabled'], s['running']) for u, s in recorded.items()} == {
        u: (enabled, active == 'active') for u, (enabled, active) in BEFORE.items()
    }
    assert held(container, HELD) == HELD
    down = {
        u: ('static' if e == 'static' else 'disabled', 'inactive') for u, (e, _) in BEFORE.items()
    }
    assert unit_states(container, HELD) == down

    # What an OS upgrade does: a postinst enables its units again and restarts
    # them through deb-systemd-invoke; root starts some; a unit pulls them in;
    # a client connects to the socket.
    reenabled = ['cu-lib.service', 'cu-off.service', 'cu-sock.socket']
    container.exec(['systemctl', 'enable', *reenabled])
    container.exec(['deb-systemd-invoke', 'restart', *reenabled])
    container.exec(['systemctl', 'start', 'cu-etc.service', 'cu-dep.service', 'cu-sock.service'])
    container.exec(['systemctl', 'start', 'cu-pull.service'])
    assert connect(container) == 7
    assert {u: s[1] for u, s in unit_states(container, HELD).items()} == dict.fromkeys(
        HELD, 'inactive'
    )
    assert condition_results(container, HELD) == ['no'] * len(HELD)

    assert container.reboot() == 'running', container.failed_units

    # The boot tried to start the units enabled meanwhile, and skipped them.
    assert unit_states(container, HELD) == {
        **down,
        **{u: ('enabled', 'inactive') for u in reenabled},
    }
    assert condition_results(container, reenabled) == ['no'] * len(reenabled)
    container.exec(['systemctl', 'start', 'cu-pull.service', *HELD])
    assert connect(container) == 7
    assert {u: s[1] for u, s in unit_states(container, HELD).items()} == dict.fromkeys(
        HELD, 'inactive'
    )
    assert held(container, HELD) == HELD

    completed = run_step('complete', spec)

    assert completed['step'] == 'brought-back'
    record_timing('series_complete_6_units', completed['seconds'])
    assert completed['record']['phase'] == 'completed'
    assert unit_states(container, HELD) == BEFORE
    assert held(container, HELD) == []
    assert connect(container) == 28  # the socket listens again
    state_dir = f'/var/lib/cu-it-state/{test_series_upgrade_on_real_systemd_with_reboot.__name__}'
    migrations = container.exec(['cat', f'{state_dir}/migrations.jsonl']).stdout
    assert [json.loads(line) for line in migrations.splitlines()] == [['debian@12', 'debian@13']]


@pytest.fixture
def worker_disabled(container: Container, probe: Probe, snapd_socket: str) -> Any:
    """The probe with its worker disabled by the operator; both daemons up again at the end."""
    reset(container, 'x2')
    container.exec(['snap', 'stop', '--disable', f'{PROBE}.worker'])
    try:
        yield
    finally:
        units = [f'snap.{PROBE}.web.service', f'snap.{PROBE}.worker.service']
        for unit in units:
            container.exec(['rm', '-rf', f'/etc/systemd/system/{unit}.d'], check=False)
        container.exec(['systemctl', 'daemon-reload'], check=False)
        container.exec(['snap', 'start', '--enable', PROBE], check=False)


def test_series_upgrade_of_snap_services_with_reboot(
    container: Container,
    worker_disabled: None,
    run_step: Callable[[str, list[dict[str, Any]]], dict[str, Any]],
    record_timing: Callable[[str, float], None],
) -> None:
    spec: list[dict[str, Any]] = [{'snap': PROBE, 'services': None}]
    before = {
        f'{PROBE}.web': ('enabled', 'active'),
        f'{PROBE}.worker': ('disabled', 'inactive'),
    }
    units = [f'snap.{PROBE}.web.service', f'snap.{PROBE}.worker.service']
    assert services(container) == before

    prepared = run_step('prepare', spec)

    assert prepared['step'] == 'took-down'
    record_timing('series_prepare_snap', prepared['seconds'])
    assert services(container) == {
        f'{PROBE}.web': ('disabled', 'inactive'),
        f'{PROBE}.worker': ('disabled', 'inactive'),
    }
    assert held(container, units) == units
    container.exec(['systemctl', 'start', *units])
    assert [s[1] for s in unit_states(container, units).values()] == ['inactive'] * 2

    assert container.reboot() == 'running', container.failed_units

    assert [s[1] for s in unit_states(container, units).values()] == ['inactive'] * 2
    container.exec(['systemctl', 'start', *units])
    assert [s[1] for s in unit_states(container, units).values()] == ['inactive'] * 2
    assert container.exec(['curl', '-fsS', 'http://127.0.0.1:8080/'], check=False).returncode

    completed = run_step('complete', spec)

    assert completed['step'] == 'brought-back'
    record_timing('series_complete_snap', completed['seconds'])
    assert services(container) == before
    assert held(container, units) == []
    assert web_page(container) == '2.0'
    assert before != UP  # the operator's choice survived
