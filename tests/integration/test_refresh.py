# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""``refresh_snap`` on the real snapd and systemd, from a plain refresh to a hook killed.

A refresh, a failed change undone, a disabled service kept so, a hook killed while the
change runs or right after it, snapd restarted during the change.

Each ``refresh_snap`` runs in a process of its own on the host, as in a hook,
and reaches the container's snapd through the proxy socket and its systemd
through a ``systemctl`` shim (conftest's ``Machine``); ``refresh`` is a
recording stand-in for ``charm_refresh.Machines`` (see _refresh_driver.py),
except in the last test, which runs the real one.
Every test starts from cu-probe at x1 with both daemons running and refreshes
it to x2 (both revisions are on disk, so snapd runs a real refresh change).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from _snaps import (
    assert_workload_runs,
    changes_since,
    duration,
    last_change_id,
    post_refresh_hook_fails,
    reset,
    revision,
    services,
    wait_in_flight,
    web_page,
)
from conftest import PROBE_UNITS

if TYPE_CHECKING:
    from collections.abc import Callable

    from _container import Container
    from conftest import Machine, Probe, RefreshRun, RefreshRunner


def revision_records(run: RefreshRun) -> list[dict[str, Any]]:
    """The update_snap_revision() calls the stand-in recorded."""
    return [r for r in run.records if 'revision' in r]


def stages(run: RefreshRun) -> list[tuple[str, str]]:
    return [(r['stage'], r['event']) for r in run.journal]


def last_refresh_record(run: RefreshRun) -> dict[str, Any]:
    """The journal's last snap-refresh record (the health gate's records follow it)."""
    return [r for r in run.journal if r['stage'] == 'snap-refresh'][-1]


def test_refresh_snap_x1_to_x2(
    container: Container,
    probe: Probe,
    refresh_runner: RefreshRunner,
    record_timing: Callable[[str, float], None],
) -> None:
    reset(container, 'x1')
    since = last_change_id()

    outcome, run = refresh_runner.run('x2')

    assert outcome['ok'], outcome
    assert revision() == 'x2'
    assert_workload_runs(container, '2.0')
    # Recorded once, with the change ready: snapd had nothing in flight for the snap.
    assert [(r['revision'], r['in_flight']) for r in revision_records(run)] == [('x2', [])]
    assert {'next_unit_allowed_to_refresh': True}.items() <= run.records[-1].items()
    # The refresh, then the health gate that let the next unit go.
    assert stages(run) == [
        ('snap-refresh', 'start'),
        ('snap-refresh', 'ended'),
        ('health', 'start'),
        ('health', 'ended'),
    ]
    details = last_refresh_record(run)['details']
    assert (details['revision_before'], details['revision_after']) == ('x1', 'x2')
    # The default stop and start are systemd's, around the units' hold: the refresh is
    # snapd's one change.
    (made,) = changes_since(since)
    assert (made['kind'], made['status']) == ('refresh-snap', 'Done')
    assert details['change_id'] == made['id']
    record_timing('refresh_downtime', details['downtime'])
    record_timing('refresh_hold', details['hold'])
    record_timing('refresh_stop', details['stop'])
    record_timing('refresh_refresh', details['refresh'])
    record_timing('refresh_start', details['start'])
    record_timing('snapd_change_refresh', duration(made))


def test_failing_post_refresh_hook_is_undone_and_raised(
    container: Container, probe: Probe, refresh_runner: RefreshRunner
) -> None:
    reset(container, 'x1')
    since = last_change_id()
    with post_refresh_hook_fails(container):
        outcome, run = refresh_runner.run('x2')

    assert outcome['ok'] is False
    assert outcome['error'] == 'SnapRefreshError'
    assert outcome['cause_kind'] == 'change-failed'
    assert (outcome['revision_after'], outcome['change_status']) == ('x1', 'Error')
    assert 'post-refresh' in outcome['message']
    assert revision() == 'x1'
    assert_workload_runs(container, '1.0')
    # Recorded once the change was ready: the revision snapd undid back to.
    assert [(r['revision'], r['in_flight']) for r in revision_records(run)] == [('x1', [])]
    assert stages(run) == [
        ('snap-refresh', 'start'),
        ('refresh-finish', 'start'),
        ('refresh-finish', 'ended'),
        ('snap-refresh', 'failed'),
    ]
    refreshes = changes_since(since, 'refresh-snap')
    assert [c['status'] for c in refreshes] == ['Error']


def test_a_worker_disabled_before_the_refresh_stays_disabled(
    container: Container, probe: Probe, refresh_runner: RefreshRunner
) -> None:
    # A charm that keeps an optional daemon off: real snapd must not turn it
    # on, and the health gate must not wait for it.
    reset(container, 'x1')
    container.exec(['snap', 'stop', '--disable', 'cu-probe.worker'])
    since = last_change_id()

    outcome, run = refresh_runner.run('x2')

    assert outcome['ok'], outcome
    assert revision() == 'x2'
    assert services(container) == {
        'cu-probe.web': ('enabled', 'active'),
        'cu-probe.worker': ('disabled', 'inactive'),
    }
    assert web_page(container) == '2.0'
    assert {'next_unit_allowed_to_refresh': True}.items() <= run.records[-1].items()
    made = changes_since(since)
    assert [(c['kind'], c['status']) for c in made] == [('refresh-snap', 'Done')]


def _converged(container: Container, first: RefreshRun, second: RefreshRun, since: int) -> None:
    """One refresh change, the revision recorded once (by the second process), workload up."""
    assert revision() == 'x2'
    assert_workload_runs(container, '2.0')
    records = revision_records(second)
    assert [(r['revision'], r['in_flight']) for r in records] == [('x2', [])]
    assert records[0]['pid'] == second.process.pid
    refreshes = changes_since(since, 'refresh-snap')
    assert [c['status'] for c in refreshes] == ['Done']
    record = last_refresh_record(second)
    assert record['event'] == 'ended'
    assert record['details']['already_at_target'] is True
    assert stages(second)[-2:] == [('health', 'start'), ('health', 'ended')]


def test_kill_9_while_the_change_is_in_flight_converges(
    container: Container,
    probe: Probe,
    refresh_runner: RefreshRunner,
    record_note: Callable[[str], None],
) -> None:
    reset(container, 'x1')
    since = last_change_id()
    first = refresh_runner.start('x2')
    in_flight = wait_in_flight('refresh-snap')
    first.kill9()
    assert first.result() == {'killed': 9}

    outcome, second = refresh_runner.run('x2')

    assert outcome['ok'], outcome
    _converged(container, first, second, since)
    assert changes_since(since, 'refresh-snap')[0]['id'] == in_flight['id']
    waited = last_refresh_record(second)['details'].get('waited_changes', [])
    record_note(f'after kill -9 in flight, the new process waited for: {waited or "nothing"}')


def test_kill_9_right_after_the_change_is_ready_converges(
    container: Container, probe: Probe, refresh_runner: RefreshRunner
) -> None:
    reset(container, 'x1')
    since = last_change_id()
    first = refresh_runner.start('x2', kill_at_record=True)
    assert first.result() == {'killed': 9}
    assert revision() == 'x2'
    assert revision_records(first) == []

    outcome, second = refresh_runner.run('x2')

    assert outcome['ok'], outcome
    _converged(container, first, second, since)


def test_snapd_restart_during_the_change_is_waited_out(
    container: Container,
    probe: Probe,
    refresh_runner: RefreshRunner,
    record_timing: Callable[[str, float], None],
) -> None:
    reset(container, 'x1')
    since = last_change_id()
    run = refresh_runner.start('x2')
    in_flight = wait_in_flight('refresh-snap')
    began = time.monotonic()
    container.exec(['systemctl', 'restart', 'snapd.service'])
    record_timing('snapd_restart', time.monotonic() - began)

    outcome = run.result()

    assert outcome['ok'], outcome
    record_timing('refresh_across_snapd_restart', outcome['seconds'])
    assert revision() == 'x2'
    assert_workload_runs(container, '2.0')
    assert [(r['revision'], r['in_flight']) for r in revision_records(run)] == [('x2', [])]
    refreshes = changes_since(since, 'refresh-snap')
    assert [(c['id'], c['status']) for c in refreshes] == [(in_flight['id'], 'Done')]
    assert container.exec(['systemctl', 'is-active', 'snapd.service']).stdout.strip() == 'active'


class MachinesUnit:
    """One unit whose events run with the real charm_refresh.Machines (_machines_driver.py)."""

    def __init__(self, charm_dir: pathlib.Path, socket: str, machine: Machine) -> None:
        self.charm_dir = charm_dir
        self.socket = socket
        self.machine = machine
        charm_dir.mkdir(parents=True)

    def event(
        self, name: str, charm_version: str, revision: str, *, kill_at_start: bool = False
    ) -> dict[str, Any]:
        env = {
            **os.environ,
            **self.machine.env,
            'CHARM_UPGRADE_SNAPD_SOCKET': self.socket,
            'CU_IT_KILL_AT_START': '1' if kill_at_start else '0',
            'PYTHONWARNINGS': 'error',
        }
        env.pop('CHARM_UPGRADE_STATE_DIR', None)  # the unit's own, in its charm directory
        driver = pathlib.Path(__file__).with_name('_machines_driver.py')
        process = subprocess.run(
            [sys.executable, str(driver), name, charm_version, revision, 'peer-data.json'],
            cwd=self.charm_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if process.returncode < 0:
            return {'killed': -process.returncode}
        assert process.returncode == 0, f'driver failed:\n{process.stdout}\n{process.stderr}'
        return json.loads(process.stdout.splitlines()[-1])

    @property
    def peer_data(self) -> dict[str, dict[str, str]]:
        return json.loads((self.charm_dir / 'peer-data.json').read_text())

    def state_file(self, name: str) -> dict[str, Any]:
        return json.loads((self.charm_dir / '.charm_upgrade' / name).read_text())


def test_a_hook_killed_before_the_start_converges_at_the_next_event_with_the_real_machines(
    container: Container,
    probe: Probe,
    snapd_socket: str,
    tmp_path: pathlib.Path,
    machine: Machine,
) -> None:
    reset(container, 'x1')
    unit = MachinesUnit(tmp_path / 'unit-0', snapd_socket, machine)
    for event in ('install', 'leader_elected', 'config_changed', 'start'):
        assert unit.event(event, '1/1.0.0', 'x1')['ok'], event
    assert json.loads(unit.peer_data['unit']['installed_snap_revision']) == 'x1'
    since = last_change_id()

    # juju refresh: charm-refresh calls refresh_snap in upgrade-charm; the change ends
    # Done, then the hook is killed before the workload starts.
    assert unit.event('upgrade_charm', '1/1.1.0', 'x2', kill_at_start=True) == {'killed': 9}
    assert revision() == 'x2'
    # Down and held; snapd's enabled state untouched.
    assert services(container) == {
        'cu-probe.web': ('enabled', 'inactive'),
        'cu-probe.worker': ('enabled', 'inactive'),
    }
    assert sorted(machine.held()) == sorted(PROBE_UNITS)
    assert json.loads(unit.peer_data['unit']['installed_snap_revision']) == 'x1'  # lost

    # Juju runs the killed hook again. charm-refresh re-records x2 and does not call
    # refresh_snap; the library finishes the refresh from its record.
    again = unit.event('upgrade_charm', '1/1.1.0', 'x2')

    assert again == {'ok': True, 'status': ['active', '']}
    assert_workload_runs(container, '2.0')
    assert services(container) == {
        'cu-probe.web': ('enabled', 'active'),
        'cu-probe.worker': ('enabled', 'active'),
    }
    assert json.loads(unit.peer_data['unit']['installed_snap_revision']) == 'x2'
    assert machine.held() == []
    record = unit.state_file('snap-refresh.json')
    assert (record['phase'], record['outcome']) == ('completed', 'refreshed')
    assert [c['status'] for c in changes_since(since, 'refresh-snap')] == ['Done']  # once
    assert unit.event('update_status', '1/1.1.0', 'x2') == {'ok': True, 'status': ['active', '']}
