# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The refresh holds the snap's units with the library's drop-in, on real snapd and systemd.

``refresh_snap`` no longer asks snapd to stop the services with ``disable`` and to start
them with ``enable``: it stops the units behind the drop-in that holds them in a series
upgrade, lets snapd refresh, records the revision, then releases them and starts those that
ran. These tests show, on each snapd the tier runs (2.57 and 2.68), that this holds: the
drop-in survives snapd rewriting the units, no service runs between the refresh and the
record, a reboot while held keeps them held, a failed and undone refresh leaves them held
until the library starts them, and snapd's own view of the services never changes.

The refresh runs on the host (``_refresh_driver.py``), as the other refresh tests; its
``systemctl`` is a shim that runs the container's own systemctl in the container's
namespaces, and its drop-ins go to the container's ``/etc/systemd/system``. At each
``update_snap_revision`` the driver records what systemd says of the units then.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from _snaps import (
    PROBE,
    UP,
    assert_workload_runs,
    changes_since,
    last_change_id,
    post_refresh_hook_fails,
    reset,
    revision,
    services,
)
from conftest import PROBE_UNITS as UNITS

if TYPE_CHECKING:
    from _container import Container
    from conftest import Machine, Probe, RefreshRunner


def unit_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if 'units' in r]


def test_the_units_stay_held_through_snapds_refresh_until_the_revision_is_recorded(
    container: Container, probe: Probe, refresh_runner: RefreshRunner, machine: Machine
) -> None:
    reset(container, 'x1')
    since = last_change_id()

    outcome, run = refresh_runner.run('x2')

    assert outcome['ok'], outcome
    # At the record, right after snapd's change, whose last task starts the services:
    (at_record,) = unit_records(run.records)
    assert at_record['revision'] == 'x2'
    assert at_record['units'] == dict.fromkeys(UNITS, 'inactive')
    assert sorted(at_record['held']) == sorted(UNITS)  # the drop-ins survived the refresh
    # Then released and started; snapd's view of the services never changed.
    assert machine.held() == []
    assert_workload_runs(container, '2.0')
    # One snapd change in the downtime, not three: no stop --disable, no start --enable.
    assert [c['kind'] for c in changes_since(since)] == ['refresh-snap']


def test_a_refresh_snapd_undoes_leaves_them_held_until_the_library_starts_them(
    container: Container, probe: Probe, refresh_runner: RefreshRunner, machine: Machine
) -> None:
    reset(container, 'x1')
    with post_refresh_hook_fails(container):
        outcome, run = refresh_runner.run('x2')

    assert outcome['ok'] is False
    assert outcome['change_status'] == 'Error'
    # snapd's undo "started" the services it had stopped: the hold kept them down.
    (at_record,) = unit_records(run.records)
    assert at_record['revision'] == 'x1'
    assert at_record['units'] == dict.fromkeys(UNITS, 'inactive')
    # The library then brought them back, before it raised.
    assert machine.held() == []
    assert_workload_runs(container, '1.0')


def test_a_reboot_while_held_keeps_them_held_then_the_next_event_converges(
    container: Container, probe: Probe, refresh_runner: RefreshRunner, machine: Machine
) -> None:
    reset(container, 'x1')
    killed = refresh_runner.start('x2', kill_at_record=True)
    assert killed.result() == {'killed': 9}
    assert revision() == 'x2'
    assert sorted(machine.held()) == sorted(UNITS)

    machine.rebooted()

    # Boot did not start them: enabled in snapd, held by the drop-in.
    assert machine.active() == dict.fromkeys(UNITS, 'inactive')
    assert services(container) == {
        f'{PROBE}.web': ('enabled', 'inactive'),
        f'{PROBE}.worker': ('enabled', 'inactive'),
    }
    outcome, run = refresh_runner.run('x2')
    assert outcome['ok'], outcome
    assert machine.held() == []
    assert services(container) == UP
    assert_workload_runs(container, '2.0')
    record = json.loads((run.charm_dir / 'state' / 'snap-refresh.json').read_text())
    assert (record['phase'], record['outcome']) == ('completed', 'refreshed')
