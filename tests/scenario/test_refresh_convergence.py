# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A refresh that fails or dies half-way converges, with the real charm-refresh.

The example charm runs under the test kit: ``charm_refresh.Machines`` is the real one, so
charm-refresh re-records the installed revision at every event and never calls
``refresh_snap`` again once snapd has the new revision. Whatever a hook leaves, the next
events must finish from the unit's own records: the workload runs as it did before, the
revision is recorded, each refresh migration ran exactly once, and no unit showed Active
while the library held its workload down.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from typing import TYPE_CHECKING, Any

import pytest
from ops import testing

from charm_upgrade import (
    Migration,
    MigrationContext,
    Migrations,
    SnapRefreshError,
    machine_path,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

import _demo
from _demo import SNAP, App, charm

DATA = '20260301-data-format'
SERVING = {'server': (True, True)}


def deploy(units: int) -> App:
    app = _demo.deploy(units)
    app.install()
    # Deployed before the charm had the refresh migration: the next refresh runs it.
    app.make_migration_pending(DATA)
    for unit in app.units:
        data = data_dir(app, unit)
        data.mkdir(parents=True)
        (data / 'format').write_text('v2\n')
    return app


DATA_DIR = f'/var/snap/{SNAP}/common/data'


def data_dir(app: App, unit: int) -> pathlib.Path:
    return app.machine_path(unit, DATA_DIR)


def add_format_line(ctx: MigrationContext) -> None:
    """The refresh migration: one line in the unit's data, written once.

    A run that a killed hook may have finished (``interrupted``) is not repeated: the way
    a migration without ``backup=`` makes itself safe to run again.
    """
    data = machine_path(f'{DATA_DIR}/format')  # the unit's own, under the test kit
    lines = data.read_text().splitlines()
    if ctx.interrupted and lines[-1] == f'v{ctx.new}':
        return
    data.write_text('\n'.join([*lines, f'v{ctx.new}']) + '\n')


@pytest.fixture(autouse=True)
def migrations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example charm with a refresh migration whose every run shows in the unit's data."""
    registry = Migrations(
        [Migration(DATA, 'Add a line to the data format', kind='refresh', up=add_format_line)]
    )
    monkeypatch.setattr(charm, 'MIGRATIONS', registry)


@pytest.fixture
def app1() -> Iterator[App]:
    app = deploy(1)
    yield app
    app.close()


@pytest.fixture
def app3() -> Iterator[App]:
    app = deploy(3)
    yield app
    app.close()


def state_file(app: App, unit: int, name: str) -> pathlib.Path:
    return app.harness(unit).state_dir / name


def journal(app: App, unit: int) -> list[dict[str, Any]]:
    text = state_file(app, unit, 'journal.jsonl').read_text()
    return [json.loads(line) for line in text.splitlines()]


def migrations_run(app: App, unit: int) -> int:
    """How many runs of the refresh migration the unit's data shows."""
    return (data_dir(app, unit) / 'format').read_text().splitlines().count('v3')


def assert_converged(app: App, unit: int, revision: str = '3') -> None:
    assert app.failing(unit) is None
    assert app.revision(unit) == revision
    assert json.loads(app.unit_data(unit)['installed_snap_revision']) == revision
    assert app.snapd(unit).service_state(SNAP) == SERVING
    record = json.loads(state_file(app, unit, 'snap-refresh.json').read_text())
    assert record['phase'] == 'completed'
    assert migrations_run(app, unit) == (1 if revision == '3' else 0)


def assert_never_active_while_down(app: App) -> None:
    for event in app.events:
        down = event.services and not all(active for _, active in event.services.values())
        if down and not event.killed:
            assert event.unit_status is not None
            assert event.unit_status.name != 'active', event


def settle_events(app: App) -> None:
    """A few more events, as Juju sends them: nothing may change any more."""
    app.update_status()
    app.update_status()


# snapd fails the change -----------------------------------------------------------------------


def test_one_unit_change_failing_after_the_link_converges(app1: App):
    app1.snapd(0).fail_next_refresh(undo=False)

    with pytest.raises(testing.errors.UncaughtCharmError) as failed:
        app1.refresh('1/1.1.0', '3', workload='1.1')
    error = failed.value.__cause__
    assert isinstance(error, SnapRefreshError)
    assert error.revision_after == '3'

    app1.settle()  # Juju runs the failed hook again
    settle_events(app1)

    assert_converged(app1, 0)
    assert app1.unit_status(0).name == 'active'
    assert app1.app_status.name == 'active'
    assert_never_active_while_down(app1)


def test_three_units_change_failing_after_the_link_converges(app3: App):
    app3.snapd(2).fail_next_refresh(undo=False)

    with pytest.raises(testing.errors.UncaughtCharmError):
        app3.refresh('1/1.1.0', '3', workload='1.1')
    app3.settle()
    assert_converged(app3, 2)

    app3.run_action(1, 'resume-refresh')  # pause-after-unit-refresh is "first"
    settle_events(app3)

    for unit in app3.units:
        assert_converged(app3, unit)
    assert_never_active_while_down(app3)


@pytest.mark.parametrize('units', [1, 3])
def test_a_change_snapd_undoes_is_retried_by_charm_refresh_and_converges(units: int):
    app = deploy(units)
    try:
        app.snapd(units - 1).fail_next_refresh(undo=True)
        with pytest.raises(testing.errors.UncaughtCharmError) as failed:
            app.refresh('1/1.1.0', '3', workload='1.1')
        error = failed.value.__cause__
        assert isinstance(error, SnapRefreshError)
        assert error.revision_after == '2'
        assert app.snapd(units - 1).service_state(SNAP) == SERVING  # back before the raise

        app.settle()  # the retried hook: charm-refresh calls refresh_snap again
        if units == 3:
            app.run_action(1, 'resume-refresh')
        settle_events(app)

        for unit in app.units:
            assert_converged(app, unit)
        assert_never_active_while_down(app)
    finally:
        app.close()


# Hooks killed anywhere ------------------------------------------------------------------------


def refresh_lines(units: int) -> int:
    """How many lines of the library the event that refreshes the first unit runs."""
    app = deploy(units)
    try:
        app.count_library_lines = True
        app.refresh('1/1.1.0', '3', workload='1.1')
        (first,) = [e for e in app.events if e.unit == units - 1 and e.event == 'upgrade_charm']
        assert first.library_lines is not None
        return first.library_lines
    finally:
        app.close()


def kill_points(lines: int, count: int) -> list[int]:
    """``count`` lines spread evenly over the first 85 % of the event's ``lines``.

    Not the very end: how many times a poll loop turns varies from run to run.
    """
    last = lines * 85 // 100
    return [1 + (last - 1) * i // (count - 1) for i in range(count)]


@pytest.fixture(scope='module')
def lines_1() -> int:
    return refresh_lines(1)


@pytest.fixture(scope='module')
def lines_3() -> int:
    return refresh_lines(3)


def test_the_kill_points_cover_the_whole_refresh(lines_1: int):
    # The refresh event runs the stop, the change, the record, the migration, the start and
    # the gate: hundreds of the library's lines. If this shrinks, the matrix tests less.
    assert lines_1 > 300


# CU_KILL_POINTS=300 runs a denser matrix (about 10 minutes); CI runs 40.
POINTS = int(os.environ.get('CU_KILL_POINTS', '40'))


@pytest.mark.matrix
@pytest.mark.parametrize('point', range(POINTS))
def test_one_unit_killed_at_any_point_of_its_refresh_converges(lines_1: int, point: int):
    kill_at = kill_points(lines_1, POINTS)[point]
    app = deploy(1)
    try:
        app.kill_next_event(0, after_lines=kill_at)
        app.refresh('1/1.1.0', '3', workload='1.1')  # the killed hook is run again
        settle_events(app)

        killed = [e for e in app.events if e.killed]
        assert len(killed) == 1, f'no kill at line {kill_at}'
        assert_converged(app, 0)
        assert_never_active_while_down(app)
    finally:
        app.close()


@pytest.mark.matrix
@pytest.mark.parametrize('point', range(8))
def test_the_first_of_three_units_killed_at_any_point_converges(lines_3: int, point: int):
    kill_at = kill_points(lines_3, 8)[point]
    app = deploy(3)
    try:
        app.kill_next_event(2, after_lines=kill_at)
        app.refresh('1/1.1.0', '3', workload='1.1')
        app.run_action(1, 'resume-refresh')
        settle_events(app)

        assert [e.unit for e in app.events if e.killed] == [2]
        for unit in app.units:
            assert_converged(app, unit)
        assert_never_active_while_down(app)
    finally:
        app.close()


# A series upgrade during the rolling refresh ------------------------------------------------


def test_a_unit_whose_turn_came_during_its_series_upgrade_refreshes_in_the_complete_hook(
    monkeypatch: pytest.MonkeyPatch,
):
    # Its refresh migration runs with the workload down, before the series upgrade brings
    # the workload back; the refresh finishes and lets the next unit go in the complete
    # hook itself, without waiting for another event; and the unit shows charm-refresh's
    # status, not a bare Active.
    app = deploy(4)
    try:
        seen: list[tuple[int, dict[str, tuple[bool, bool]]]] = []

        def up(ctx: MigrationContext) -> None:
            unit = int(pathlib.Path.cwd().name.removeprefix('unit-'))
            seen.append((unit, app.snapd(unit).service_state(SNAP)))
            add_format_line(ctx)

        monkeypatch.setattr(
            charm,
            'MIGRATIONS',
            Migrations([Migration(DATA, 'Add a line to the data format', kind='refresh', up=up)]),
        )
        app.refresh('1/1.1.0', '3', workload='1.1')  # unit 3 refreshes; the refresh pauses
        app.prepare_series_upgrade(1, 'ubuntu@24.04')
        app.run_action(2, 'resume-refresh')  # unit 2 refreshes; unit 1's turn, but it idles
        assert app.refresh_order == [3, 2]
        assert app.snapd(1).service_state(SNAP) == {'server': (False, False)}

        app.complete_series_upgrade(1, settle=False)
        with contextlib.suppress(RuntimeError):  # the others' events stay queued
            app.settle(max_rounds=1)  # post-series-upgrade, alone

        (complete,) = [e for e in app.events if e.event == 'post_series_upgrade']
        assert complete.error is None
        assert app.refresh_order == [3, 2, 1]
        assert [s for u, s in seen if u == 1] == [{'server': (False, False)}]
        assert app.snapd(1).service_state(SNAP) == SERVING
        record = json.loads(state_file(app, 1, 'snap-refresh.json').read_text())
        assert record['phase'] == 'completed'
        assert complete.unit_status == testing.ActiveStatus(
            'Demo 1.1 running; Snap revision 3; Charm revision 2'
        )
        stages = [(r['stage'], r['event']) for r in journal(app, 1)]
        after = stages[stages.index(('series-complete', 'ended')) :]
        assert ('health', 'ended') in after  # the next unit was let go in this hook

        app.settle()
        assert app.refresh_order == [3, 2, 1, 0]
        for unit in app.units:
            assert_converged(app, unit)
        assert_never_active_while_down(app)
    finally:
        app.close()
