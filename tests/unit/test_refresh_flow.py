# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The refresh flow against FakeSnapd, through its ports.

charm-refresh's ``update_snap_revision`` is the flow's revision-recorder port: here a
:class:`Recorder` that notes, at each call, the revision snapd had installed and how many
requests snapd had answered, so that "recorded the moment the change was ready" is
asserted against snapd's own request log. Behaviour across events with the real
charm-refresh is tested through the test kit in ``tests/scenario/test_refresh_convergence.py``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from charm_upgrade import (
    Journal,
    Migration,
    MigrationContext,
    Migrations,
    SnapRefreshError,
    StateFileError,
    _records,
    _systemd,
)
from charm_upgrade._records import SeriesRecord
from charm_upgrade._refresh_flow import (
    RECORD_NAME,
    REFRESH_STAGE,
    STATUS_PREFIX,
    Outcome,
    RefreshFlow,
    RefreshRecord,
)
from charm_upgrade._snap_workload import SnapWorkload
from charm_upgrade.snapd import Snapd
from charm_upgrade.testing import FakeSnapd, FakeSystemd

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

SNAP = 'charmed-app'
RUNNING = {'daemon': (True, True), 'worker': (True, True)}
# Held down: stopped behind the library's drop-in, snapd's enabled state untouched.
STOPPED = {'daemon': (True, False), 'worker': (True, False)}
UNITS = [f'snap.{SNAP}.daemon.service', f'snap.{SNAP}.worker.service']


@pytest.fixture
def fake(fake_systemd: FakeSystemd) -> Iterator[FakeSnapd]:
    """snapd with the snap, its services units of the machine's systemd (holds apply)."""
    with FakeSnapd(change_duration=0.05) as snapd:
        snapd.attach(fake_systemd)
        snapd.add_snap(SNAP, revision='x1', services=('daemon', 'worker'), revisions=('x2',))
        yield snapd


def hold_and_stop(record: RefreshRecord) -> None:
    """What the refresh does to the units before snapd's change: hold them, stop them."""
    _systemd.hold(record.held_units, releasable=True)
    _systemd.systemctl('stop', '--', *record.held_units)


def unit_states(systemd: FakeSystemd) -> dict[str, tuple[str, bool]]:
    """Each unit of the snap: its active state, and whether the library's drop-in holds it."""
    return {unit: (systemd.unit(unit)['active'], _systemd.is_held(unit)) for unit in UNITS}


class Recorder:
    """The revision-recorder port: what snapd had installed at each call, and when.

    Also what the machine's systemd said then of each unit of the snap (``units``):
    active or not, and held by the library's drop-in or not.
    """

    def __init__(self, fake: FakeSnapd, systemd: FakeSystemd | None = None):
        self.fake = fake
        self.systemd = systemd
        self.calls: list[tuple[str, int]] = []
        self.units: list[dict[str, tuple[str, bool]]] = []

    def __call__(self) -> None:
        self.calls.append((self.fake.revision(SNAP), len(self.fake.requests)))
        if self.systemd is not None:
            self.units.append(unit_states(self.systemd))

    @property
    def revisions(self) -> list[str]:
        return [revision for revision, _ in self.calls]


class FailingWorkload(SnapWorkload):
    """The default snap workload, with a stop or a start that raises the charm's own error."""

    def __init__(
        self, snapd: Snapd, *, stop_error: Exception | None = None, start_errors: int = 0
    ):
        super().__init__(snapd, SNAP)
        self.stop_error = stop_error
        self.start_errors = start_errors
        self.starts = 0

    def stop(self, record: RefreshRecord | None = None) -> None:
        if self.stop_error is not None:
            super().stop(record)  # half done: the services are down, then it fails
            raise self.stop_error
        super().stop(record)

    def start(self, record: RefreshRecord | None) -> None:
        self.starts += 1
        if self.start_errors:
            self.start_errors -= 1
            raise RuntimeError('port 8080 is taken')
        super().start(record)


def client(*, change_timeout: float = 5.0) -> Snapd:
    return Snapd(request_timeout=2.0, change_timeout=change_timeout, restart_grace=1.0)


def make_flow(
    *,
    snapd: Snapd | None = None,
    workload: Any = None,
    migrations: Migrations | None = None,
    change_timeout: float = 5.0,
) -> RefreshFlow:
    # The flow's own limit on the refresh change; the client's stays for its other waits.
    snapd = snapd or client()
    return RefreshFlow(
        snapd=snapd,
        workload=workload or SnapWorkload(snapd, SNAP),
        journal=Journal(),
        migrations=migrations,
        change_timeout=change_timeout,
    )


def record_file(state_dir: pathlib.Path) -> dict[str, Any]:
    return json.loads((state_dir / RECORD_NAME).read_text())


def label(fake: FakeSnapd, index: int) -> str:
    r = fake.requests[index]
    if r.method == 'GET' and r.path.startswith('/v2/changes/'):
        return 'poll'
    if r.method == 'POST':
        return str(r.body.get('action'))
    return f'{r.method} {r.path}'


def journal(stage: str = REFRESH_STAGE) -> list[dict[str, Any]]:
    return [r for r in Journal().read() if r['stage'] == stage]


# A refresh that succeeds ----------------------------------------------------------------------


def test_success_records_the_revision_the_moment_the_change_is_done(
    fake: FakeSnapd, fake_systemd: FakeSystemd, state_dir: pathlib.Path
):
    recorder = Recorder(fake, fake_systemd)
    make_flow().refresh(SNAP, 'x2', recorder)

    assert recorder.revisions == ['x2']
    (_, answered) = recorder.calls[0]
    # The last request before the record is the poll that saw the change Done:
    # nothing, not even a read of the snap, comes between.
    assert label(fake, answered - 1) == 'poll'
    (refresh_change,) = [c for c in fake.changes() if c['kind'] == 'refresh-snap']
    assert fake.requests[answered - 1].path == f'/v2/changes/{refresh_change["id"]}'
    # snapd's one change in the downtime is the refresh: the units are stopped and held
    # with systemctl around it, and snapd's refresh, which starts the services at its
    # end, left them down until the record.
    writes = [label(fake, i) for i, r in enumerate(fake.requests) if r.method == 'POST']
    assert writes == ['refresh']
    assert recorder.units == [dict.fromkeys(UNITS, ('inactive', True))]
    # The hold's reload before the stop, the drop-ins' reload after the start: only the
    # stop and the start are in the downtime.
    assert fake_systemd.commands()[-4:] == ['daemon-reload', 'stop', 'start', 'daemon-reload']
    assert fake.service_state(SNAP) == RUNNING
    assert not any(_systemd.is_held(unit) for unit in UNITS)
    record = record_file(state_dir)
    assert (record['phase'], record['outcome'], record['revision_after']) == (
        'completed',
        'refreshed',
        'x2',
    )
    ended = journal()[-1]
    assert ended['event'] == 'ended'
    assert ended['details']['downtime'] > 0


def test_the_before_state_is_recorded_before_the_stop(fake: FakeSnapd, state_dir: pathlib.Path):
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)
    seen: list[dict[str, Any]] = []

    class Spy(SnapWorkload):
        def stop(self, record: RefreshRecord | None = None) -> None:
            seen.append(record_file(state_dir))
            super().stop(record)

    snapd = client()
    make_flow(snapd=snapd, workload=Spy(snapd, SNAP)).refresh(SNAP, 'x2', Recorder(fake))

    assert seen[0]['phase'] == 'started'
    assert seen[0]['services'] == {
        f'{SNAP}.daemon': {'enabled': True, 'active': True},
        f'{SNAP}.worker': {'enabled': False, 'active': False},
    }
    # Restored exactly: the worker the operator kept off stays off.
    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (False, False)}


def test_a_retry_of_an_attempt_that_died_before_the_refresh_keeps_the_first_before_state(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    flow = make_flow()
    record = flow._new_record(SNAP, flow.snapd.snap(SNAP), 'x2')  # the dead hook's record
    hold_and_stop(record)  # and its stop
    assert fake.service_state(SNAP) == STOPPED

    make_flow().refresh(SNAP, 'x2', Recorder(fake))

    assert fake.service_state(SNAP) == RUNNING  # not the half-stopped state of the retry
    assert record_file(state_dir)['recorded_at'] == record.recorded_at
    assert journal()[-1]['details']['retry_of'] == record.recorded_at


# Refused before anything is touched -----------------------------------------------------------


@pytest.mark.parametrize('bad', ['', '0', 'latest', 'x', 'x0', '12a'])
def test_bad_revisions_raise_before_anything(fake: FakeSnapd, bad: str):
    with pytest.raises(ValueError, match='invalid snap revision'):
        make_flow().refresh(SNAP, bad, Recorder(fake))
    assert fake.requests == []


def test_a_snap_that_is_not_installed_raises_untouched(fake: FakeSnapd):
    with pytest.raises(SnapRefreshError, match='is not installed'):
        make_flow().refresh('ghost', 'x2', Recorder(fake))
    assert not [r for r in fake.requests if r.method == 'POST']


def test_a_change_of_the_snap_in_flight_is_waited_for_first(fake: FakeSnapd):
    fake.start_change(SNAP, kind='auto-refresh', duration=0.3)
    recorder = Recorder(fake)
    make_flow().refresh(SNAP, 'x2', recorder)

    posts = [r for r in fake.requests if r.method == 'POST']
    assert [p.body['action'] for p in posts] == ['refresh']
    assert 'waited_changes' in journal()[-1]['details']
    assert recorder.revisions == ['x2']


def test_a_change_in_flight_past_the_limit_leaves_everything_untouched_and_says_so(
    fake: FakeSnapd,
):
    change = fake.start_change(SNAP, kind='auto-refresh', duration=5.0)
    flow = make_flow(change_timeout=0.2)
    flow.refresh(SNAP, 'x2', Recorder(fake))  # not raised: nothing was touched

    assert not [r for r in fake.requests if r.method == 'POST']
    assert fake.service_state(SNAP) == RUNNING
    assert flow.intent is not None
    assert flow.intent.level == 'waiting'
    assert f'change {change}' in flow.intent.message


# Failures after the stop ----------------------------------------------------------------------


def test_a_change_undone_by_snapd_brings_the_workload_back_and_raises(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    # snapd links x2 half-way through the change (the fake shows it), then undoes it.
    fake.fail_next_refresh(undo=True, duration=0.3)
    recorder = Recorder(fake)

    with pytest.raises(SnapRefreshError) as raised:
        make_flow().refresh(SNAP, 'x2', recorder)

    error = raised.value
    assert (error.revision_before, error.revision_requested, error.revision_after) == (
        'x1',
        'x2',
        'x1',  # read once the change was ready, not the x2 it showed before the undo
    )
    assert error.change_status == 'Error'
    assert 'post-refresh' in (error.change_error or '')
    assert fake.service_state(SNAP) == RUNNING
    assert record_file(state_dir)['outcome'] == 'unchanged'
    assert recorder.revisions == ['x1']  # charm-refresh's record says what is installed


def test_a_change_failing_after_the_new_revision_was_linked_finishes_the_refresh_and_raises(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    fake.fail_next_refresh(undo=False)
    ran: list[tuple[str | None, str | None]] = []
    migrations = Migrations(
        [
            Migration(
                '0001-format', 'format', kind='refresh', up=lambda c: ran.append((c.old, c.new))
            )
        ]
    )
    recorder = Recorder(fake)

    with pytest.raises(SnapRefreshError) as raised:
        make_flow(migrations=migrations).refresh(SNAP, 'x2', recorder)

    assert raised.value.revision_after == 'x2'
    assert recorder.revisions == ['x2']
    assert ran == [('x1', 'x2')]  # exactly once, with the workload stopped
    assert fake.service_state(SNAP) == RUNNING
    assert record_file(state_dir)['phase'] == 'completed'
    assert 'revision x2 is installed and recorded' in str(raised.value)


def test_a_stop_that_raises_the_charms_own_error_brings_the_workload_back(fake: FakeSnapd):
    snapd = client()
    workload = FailingWorkload(snapd, stop_error=OSError(24, 'Too many open files'))

    with pytest.raises(SnapRefreshError, match='Too many open files') as raised:
        make_flow(snapd=snapd, workload=workload).refresh(SNAP, 'x2', Recorder(fake))

    assert isinstance(raised.value.__cause__, OSError)
    assert fake.service_state(SNAP) == RUNNING
    assert fake.revision(SNAP) == 'x1'
    assert not [r for r in fake.requests if r.body and r.body.get('action') == 'refresh']


def test_a_refresh_snapd_rejects_brings_the_workload_back_and_raises(fake: FakeSnapd):
    with pytest.raises(SnapRefreshError, match='snap-local'):
        make_flow().refresh(SNAP, 'x9', Recorder(fake))
    assert fake.service_state(SNAP) == RUNNING


def test_a_start_that_fails_after_the_refresh_is_blocked_with_the_charms_message(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    snapd = client()
    workload = FailingWorkload(snapd, start_errors=1)
    flow = make_flow(snapd=snapd, workload=workload)
    recorder = Recorder(fake)

    flow.refresh(SNAP, 'x2', recorder)  # not raised: the refresh itself worked

    assert recorder.revisions == ['x2']
    assert flow.intent is not None
    assert flow.intent.level == 'blocked'
    assert flow.intent.message == f'{STATUS_PREFIX}Cannot start {SNAP}: port 8080 is taken'
    assert record_file(state_dir)['phase'] == 'refreshed'
    assert fake.service_state(SNAP) == STOPPED

    # The next event starts it.
    assert make_flow(snapd=snapd, workload=workload).converge(recorder) is Outcome.FINISHED
    assert fake.service_state(SNAP) == RUNNING
    assert record_file(state_dir)['phase'] == 'completed'


def test_a_change_that_outlives_the_limit_keeps_the_workload_stopped_until_it_ends(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    fake.set_change_duration(0.8)
    ran: list[str | None] = []
    migrations = Migrations(
        [Migration('0001-format', 'format', kind='refresh', up=lambda c: ran.append(c.new))]
    )
    flow = make_flow(migrations=migrations, change_timeout=0.1)
    recorder = Recorder(fake)

    flow.refresh(SNAP, 'x2', recorder)  # not raised: the change goes on in snapd

    assert flow.intent is not None
    assert flow.intent.level == 'waiting'
    assert 'still in flight after 0.1 s' in flow.intent.message
    assert fake.service_state(SNAP) == STOPPED  # never started during the change
    # The same event does not wait a second time.
    before = len(fake.requests)
    assert flow.converge(recorder) is Outcome.WAITING
    assert len(fake.requests) - before <= 2
    assert recorder.revisions == []
    assert record_file(state_dir)['phase'] == 'started'

    fake.wait_idle()
    # The change ended Done after the hook; the next event finishes the refresh.
    assert make_flow(migrations=migrations).converge(recorder) is Outcome.FINISHED
    assert recorder.revisions == ['x2']
    assert ran == ['x2']
    assert fake.service_state(SNAP) == RUNNING
    assert record_file(state_dir)['outcome'] == 'refreshed'


def test_snapd_gone_mid_change_leaves_the_workload_stopped_and_the_next_event_finishes(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    fake.set_change_duration(0.3)
    snapd = client()

    class GoneAfterPost(Snapd):
        def refresh(self, snap: str, revision: str) -> str:
            change_id = super().refresh(snap, revision)
            fake.refuse_connections(0.6)  # snapd restarts right after accepting it
            return change_id

    gone = GoneAfterPost(request_timeout=2.0, change_timeout=5.0, restart_grace=0.2)
    with pytest.raises(SnapRefreshError, match='stays stopped'):
        make_flow(snapd=gone, workload=SnapWorkload(gone, SNAP)).refresh(
            SNAP, 'x2', Recorder(fake)
        )
    assert fake.service_state(SNAP) == STOPPED  # unknown: not started

    fake.wait_idle(timeout=5.0)
    recorder = Recorder(fake)
    assert make_flow(snapd=snapd).converge(recorder) is Outcome.FINISHED
    assert recorder.revisions == ['x2']
    assert fake.service_state(SNAP) == RUNNING


# Finishing from the record --------------------------------------------------------------------


def dead_hook_record(flow: RefreshFlow, target: str = 'x2') -> RefreshRecord:
    """What a hook killed after its stop leaves: the record, the services down."""
    record = flow._new_record(SNAP, flow.snapd.snap(SNAP), target)
    hold_and_stop(record)
    return record


def test_converge_finishes_a_refresh_whose_hook_died_after_the_change(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    ran: list[str | None] = []
    migrations = Migrations(
        [Migration('0001-format', 'format', kind='refresh', up=lambda c: ran.append(c.new))]
    )
    flow = make_flow(migrations=migrations)
    dead_hook_record(flow)
    flow.snapd.wait_done(flow.snapd.refresh(SNAP, 'x2'))  # then it died

    recorder = Recorder(fake)
    assert make_flow(migrations=migrations).converge(recorder) is Outcome.FINISHED
    assert recorder.revisions == ['x2']
    assert ran == ['x2']
    assert fake.service_state(SNAP) == RUNNING
    # A second event has nothing left to do, and runs nothing again.
    assert make_flow(migrations=migrations).converge(recorder) is Outcome.NOTHING
    assert ran == ['x2']


def test_converge_brings_back_a_refresh_that_died_before_the_change(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    # A rollback came meanwhile: charm-refresh will not call refresh_snap again.
    dead_hook_record(make_flow())

    assert make_flow().converge(Recorder(fake)) is Outcome.FINISHED
    assert fake.service_state(SNAP) == RUNNING
    assert record_file(state_dir)['outcome'] == 'unchanged'


def test_converge_waits_for_a_change_in_flight_before_it_starts_anything(
    fake: FakeSnapd, fake_systemd: FakeSystemd
):
    flow = make_flow()
    dead_hook_record(flow)
    fake.set_change_duration(0.3)
    flow.snapd.refresh(SNAP, 'x2')  # submitted, then the hook died

    recorder = Recorder(fake, fake_systemd)
    assert make_flow().converge(recorder) is Outcome.FINISHED

    (refresh_change,) = [c for c in fake.changes() if c['kind'] == 'refresh-snap']
    assert refresh_change['status'] == 'Done'
    assert recorder.revisions == ['x2']
    # Recorded once the change was done, the units still held and down; started after.
    assert recorder.units == [dict.fromkeys(UNITS, ('inactive', True))]
    assert fake.service_state(SNAP) == RUNNING


def test_converge_leaves_the_workload_to_a_series_upgrade_that_holds_it(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    flow = make_flow()
    dead_hook_record(flow)
    flow.snapd.wait_done(flow.snapd.refresh(SNAP, 'x2'))
    series = state_dir / SeriesRecord.NAME
    _records.save(series, SeriesRecord(phase='prepared', services={}))

    recorder = Recorder(fake)
    assert make_flow().converge(recorder) is Outcome.HELD
    assert recorder.revisions == ['x2']  # recorded all the same
    assert fake.service_state(SNAP) == STOPPED

    _records.save(series, SeriesRecord(phase='completed', services={}))
    assert make_flow().converge(recorder) is Outcome.FINISHED
    assert fake.service_state(SNAP) == RUNNING


def test_converge_migrates_while_a_series_upgrade_holds_the_workload_and_starts_after(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    # The workload is down for the series upgrade: the best time for the refresh
    # migrations. Its complete brings the services back; the refresh migrations must not
    # wait for that and then run beside the running workload.
    ran: list[tuple[str | None, dict[str, tuple[bool, bool]]]] = []
    migrations = Migrations(
        [
            Migration(
                '0001-format',
                'format',
                kind='refresh',
                up=lambda ctx: ran.append((ctx.new, fake.service_state(SNAP))),
            )
        ]
    )
    flow = make_flow(migrations=migrations)
    dead_hook_record(flow)
    flow.snapd.wait_done(flow.snapd.refresh(SNAP, 'x2'))
    series = state_dir / SeriesRecord.NAME
    _records.save(series, SeriesRecord(phase='prepared', services={}))

    recorder = Recorder(fake)
    assert make_flow(migrations=migrations).converge(recorder) is Outcome.HELD
    assert ran == [('x2', STOPPED)]
    assert fake.service_state(SNAP) == STOPPED  # held; the series upgrade starts it
    assert record_file(state_dir)['phase'] == 'refreshed'

    _records.save(series, SeriesRecord(phase='completed', services={}))
    assert make_flow(migrations=migrations).converge(recorder) is Outcome.FINISHED
    assert len(ran) == 1  # once
    assert fake.service_state(SNAP) == RUNNING


@pytest.mark.parametrize(
    'content', ['null', '[]', '{"snap": 1}', '{"phase": "bogus"}', '\xff\xfe'.encode('latin-1')]
)
def test_a_damaged_record_is_a_state_file_error_naming_it(
    fake: FakeSnapd, state_dir: pathlib.Path, content: str | bytes
):
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / RECORD_NAME
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(StateFileError, match=RECORD_NAME):
        make_flow().converge(Recorder(fake))


# Migrations -----------------------------------------------------------------------------------


def test_a_failing_migration_holds_the_workload_down_and_converge_retries_it(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    attempts: list[bool] = []

    def up(ctx: MigrationContext) -> None:
        attempts.append(ctx.interrupted)
        if len(attempts) == 1:
            raise RuntimeError('disk full')

    migrations = Migrations([Migration('0001-format', 'format', kind='refresh', up=up)])
    flow = make_flow(migrations=migrations)
    recorder = Recorder(fake)
    flow.refresh(SNAP, 'x2', recorder)  # the refresh worked; the migration did not

    assert recorder.revisions == ['x2']
    assert flow.intent is not None
    assert flow.intent.level == 'blocked'
    assert '0001-format' in flow.intent.message
    assert fake.service_state(SNAP) == STOPPED

    assert make_flow(migrations=migrations).converge(recorder) is Outcome.FINISHED
    assert len(attempts) == 2
    assert fake.service_state(SNAP) == RUNNING


def test_applied_migrations_the_code_does_not_know_refuse_before_the_stop(fake: FakeSnapd):
    migrations = Migrations([])
    migrations.mark_installed(revision='x1')
    state = json.loads(migrations.path.read_text())
    state['applied']['20990101-future'] = {'kind': 'refresh', 'how': 'ran', 'new': 'x1'}
    migrations.path.write_text(json.dumps(state))
    flow = make_flow(migrations=migrations)

    flow.refresh(SNAP, 'x2', Recorder(fake))

    assert not [r for r in fake.requests if r.method == 'POST']
    assert flow.intent is not None
    assert '20990101-future' in flow.intent.message


def test_a_refresh_back_to_an_older_revision_runs_down(fake: FakeSnapd):
    calls: list[str] = []
    migrations = Migrations(
        [
            Migration(
                '0001-format',
                'format',
                kind='refresh',
                up=lambda c: calls.append(f'up {c.old}->{c.new}'),
                down=lambda c: calls.append(f'down {c.old}->{c.new}'),
            )
        ]
    )
    migrations.mark_installed(revision='x1')
    make_flow().refresh(SNAP, 'x2', Recorder(fake))
    state = json.loads(migrations.path.read_text())
    state['applied']['0001-format']['new'] = 'x2'  # as if it had run at x2
    state['revision'] = 'x2'
    migrations.path.write_text(json.dumps(state))

    make_flow(migrations=migrations).refresh(SNAP, 'x1', Recorder(fake))

    assert calls == ['down x2->x1']
    assert fake.revision(SNAP) == 'x1'


def test_a_rollback_that_would_undo_a_migration_without_down_is_refused_not_failed(
    fake: FakeSnapd,
):
    migrations = Migrations(
        [Migration('0001-format', 'format', kind='refresh', up=lambda c: None)]
    )
    migrations.mark_installed(revision='x1')
    state = json.loads(migrations.path.read_text())
    state['applied']['0001-format'] = {'kind': 'refresh', 'how': 'ran', 'new': 'x2'}
    migrations.path.write_text(json.dumps(state))
    fake.add_snap(SNAP, revision='x2', services=('daemon', 'worker'), revisions=('x1',))
    flow = make_flow(migrations=migrations)

    flow.refresh(SNAP, 'x1', Recorder(fake))

    assert not [r for r in fake.requests if r.method == 'POST']
    assert flow.intent is not None
    assert flow.intent.level == 'blocked'
    # Nothing failed: the status says why the rollback is refused.
    assert 'failed' not in flow.intent.message
    assert 'cannot be undone (it has no down)' in flow.intent.message


# The default snap workload --------------------------------------------------------------------


def test_the_restore_rule_brings_each_service_back_exactly(fake: FakeSnapd):
    fake.add_snap(SNAP, revision='x1', services=('a', 'b', 'c', 'd'), revisions=('x2',))
    fake.set_service_state(SNAP, 'b', enabled=True, active=False)  # enabled, stopped
    fake.set_service_state(SNAP, 'c', enabled=False, active=True)  # runs, not enabled
    fake.set_service_state(SNAP, 'd', enabled=False, active=False)  # kept off

    make_flow().refresh(SNAP, 'x2', Recorder(fake))

    assert fake.service_state(SNAP) == {
        'a': (True, True),
        'b': (True, False),
        'c': (False, True),
        'd': (False, False),
    }


def test_services_the_before_state_does_not_know_are_left_as_snapd_left_them(fake: FakeSnapd):
    record = RefreshRecord(
        snap=SNAP,
        revision='x1',
        target='x2',
        channel='',
        base=None,
        services={f'{SNAP}.daemon': {'enabled': True, 'active': True}},
        phase='refreshed',
        recorded_at='',
    )
    snapd = client()
    workload = SnapWorkload(snapd, SNAP)
    workload.stop(record)
    # 'worker' is new in x2, declared install-mode: disable: snapd leaves it off.
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)

    workload.start(record)

    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (False, False)}
    assert workload.healthy(record)  # the new one is not expected to run


# The health gate ------------------------------------------------------------------------------


class Gate:
    def __init__(self):
        self.allowed = False

    def allow(self) -> None:
        self.allowed = True


def test_an_unhealthy_unit_holds_the_next_one_with_a_status(fake: FakeSnapd):
    make_flow().refresh(SNAP, 'x2', Recorder(fake))
    fake.set_service_state(SNAP, 'worker', enabled=True, active=False)
    flow = make_flow()
    gate = Gate()

    assert not flow.gate(
        in_progress=True, allowed=False, allow=gate.allow, before_next_unit=lambda: None
    )

    assert not gate.allowed
    assert flow.intent is not None
    assert flow.intent.message == (
        f'{STATUS_PREFIX}{SNAP} services not active: {SNAP}.worker; next unit waits'
    )
    assert [r['event'] for r in journal('health')][-2:] == ['start', 'failed']


def test_the_health_wait_polls_until_healthy(fake: FakeSnapd):
    make_flow().refresh(SNAP, 'x2', Recorder(fake))
    checks: list[bool] = []

    class Slow(SnapWorkload):
        def healthy(self, record: RefreshRecord | None) -> bool:
            checks.append(True)
            return len(checks) >= 3

    snapd = client()
    now = [0.0]
    flow = RefreshFlow(
        snapd=snapd,
        workload=Slow(snapd, SNAP),
        journal=Journal(),
        clock=lambda: now[0],
        sleep=lambda seconds: now.__setitem__(0, now[0] + seconds),
    )
    gate = Gate()
    assert flow.gate(
        in_progress=True,
        allowed=False,
        allow=gate.allow,
        before_next_unit=lambda: None,
        health_wait=10.0,
        health_poll=1.0,
    )
    assert gate.allowed
    assert len(checks) == 3
    assert now[0] == 2.0


def test_the_charms_step_before_the_next_unit_can_hold_it(fake: FakeSnapd):
    flow = make_flow()
    gate = Gate()
    assert not flow.gate(
        in_progress=False,
        allowed=False,
        allow=gate.allow,
        before_next_unit=lambda: 'replication catching up',
    )
    assert not gate.allowed
    assert flow.intent is not None
    assert flow.intent.message == f'{STATUS_PREFIX}replication catching up; next unit waits'

    assert flow.gate(
        in_progress=False, allowed=False, allow=gate.allow, before_next_unit=lambda: None
    )
    assert gate.allowed
    assert flow.intent is None


def test_the_gate_does_nothing_while_a_refresh_is_unfinished(fake: FakeSnapd):
    flow = make_flow()
    dead_hook_record(flow)
    gate = Gate()
    assert not make_flow().gate(
        in_progress=True, allowed=False, allow=gate.allow, before_next_unit=lambda: None
    )
    assert not gate.allowed


# The take-down: held with the library's drop-in, not stopped through snapd ------------------


def test_a_charms_graceful_stop_runs_before_the_library_stops_anything(
    fake: FakeSnapd, fake_systemd: FakeSystemd
):
    seen: list[tuple[list[str], dict[str, tuple[str, bool]]]] = []

    class Draining(SnapWorkload):
        def stop(self, record: RefreshRecord | None = None) -> None:
            # What the charm's drain finds: the drop-in loaded, every unit still running.
            seen.append((fake_systemd.commands(), unit_states(fake_systemd)))
            super().stop(record)

    snapd = client()
    fake_systemd.calls.clear()
    make_flow(snapd=snapd, workload=Draining(snapd, SNAP)).refresh(SNAP, 'x2', Recorder(fake))

    assert seen == [(['daemon-reload'], dict.fromkeys(UNITS, ('active', True)))]
    assert fake_systemd.commands()[:2] == ['daemon-reload', 'stop']  # the stop, after the drain
    assert fake.service_state(SNAP) == RUNNING


def test_a_refresh_snapd_undoes_keeps_the_units_held_until_the_library_starts_them(
    fake: FakeSnapd, fake_systemd: FakeSystemd
):
    fake.fail_next_refresh(undo=True, duration=0.3)
    recorder = Recorder(fake, fake_systemd)

    with pytest.raises(SnapRefreshError):
        make_flow().refresh(SNAP, 'x2', recorder)

    # snapd's undo "started" what it had stopped: the drop-in kept the units down
    # until the library released them, once the change was ready.
    assert recorder.units == [dict.fromkeys(UNITS, ('inactive', True))]
    assert fake.service_state(SNAP) == RUNNING
    assert not any(_systemd.is_held(unit) for unit in UNITS)


def test_snapds_enabled_state_is_never_touched(fake: FakeSnapd, fake_systemd: FakeSystemd):
    # The operator disabled the worker but it runs: after the refresh it runs, disabled.
    fake.set_service_state(SNAP, 'worker', enabled=False, active=True)

    make_flow().refresh(SNAP, 'x2', Recorder(fake))

    assert [r.body['action'] for r in fake.requests if r.method == 'POST'] == ['refresh']
    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (False, True)}
    assert 'enable' not in fake_systemd.commands()
    assert 'disable' not in fake_systemd.commands()


def test_the_start_asks_snapd_nothing_and_costs_one_systemctl(
    fake: FakeSnapd, fake_systemd: FakeSystemd
):
    recorder = Recorder(fake)

    def recorded() -> None:
        recorder()
        fake.clear_requests()
        fake_systemd.clear_calls()

    make_flow().refresh(SNAP, 'x2', recorded)

    assert fake_systemd.commands() == ['start', 'daemon-reload']  # the drop-ins go after
    assert [(r.method, r.path) for r in fake.requests if 'apps' in r.path] == []
    assert fake.service_state(SNAP) == RUNNING


def test_a_service_the_target_revision_dropped_is_skipped_by_the_start(
    fake: FakeSnapd, fake_systemd: FakeSystemd
):
    recorder = Recorder(fake)

    def recorded() -> None:
        recorder()
        # The new revision has no worker: snapd removed its unit in the refresh.
        fake.add_snap(SNAP, revision='x2', services=('daemon',), revisions=('x1',), active=False)
        fake_systemd.remove_unit(UNITS[1])

    make_flow().refresh(SNAP, 'x2', recorded)

    assert fake.service_state(SNAP) == {'daemon': (True, True)}


def test_a_service_that_fails_to_start_blocks_with_systemds_error_and_no_second_try(
    fake: FakeSnapd, fake_systemd: FakeSystemd
):
    fake_systemd.fail_next('start', 'Job for snap.charmed-app.daemon.service failed', count=2)
    flow = make_flow()

    flow.refresh(SNAP, 'x2', Recorder(fake))

    assert fake.revision(SNAP) == 'x2'
    assert flow.intent is not None
    assert flow.intent.level == 'blocked'
    assert flow.intent.message.startswith(f'Snap refresh: Cannot start {SNAP}: ')
    assert 'daemon.service failed' in flow.intent.message
    assert fake_systemd.commands().count('start') == 1  # refused once, not tried again


def test_a_hold_only_a_release_opens_is_released_before_the_start(
    fake: FakeSnapd, fake_systemd: FakeSystemd
):
    flow = make_flow()
    record = dead_hook_record(flow)
    _systemd.hold(record.held_units)  # rewritten, always false (by hand, or a series upgrade's)
    fake.wait_idle()

    assert make_flow().converge(Recorder(fake)) is Outcome.FINISHED

    assert fake.service_state(SNAP) == RUNNING
    assert not any(_systemd.is_held(unit) for unit in UNITS)


def test_a_hook_killed_between_opening_the_hold_and_removing_it_converges(
    fake: FakeSnapd, fake_systemd: FakeSystemd
):
    flow = make_flow()
    record = dead_hook_record(flow)
    _systemd.let_start(record.held_units)  # ... and killed there: drop-ins and flags stay
    _systemd.systemctl('start', '--', *record.held_units)

    assert make_flow().converge(Recorder(fake)) is Outcome.FINISHED

    assert fake.service_state(SNAP) == RUNNING
    assert not any((fake_systemd.config_dir / f'{unit}.d').exists() for unit in UNITS)


def test_a_record_of_a_refresh_that_stopped_through_snapd_is_brought_back_through_snapd(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    # An earlier version of the library stopped the services with snapd's disable, and
    # its hook died after the refresh: the record holds no unit.
    flow = make_flow()
    snapd = flow.snapd
    before = {
        s.full_name: {'enabled': s.enabled, 'active': s.active} for s in snapd.services(SNAP)
    }
    snapd.wait_done(snapd.stop([SNAP], disable=True))
    snapd.wait_done(snapd.refresh(SNAP, 'x2'))
    record = {
        'v': 1,
        'snap': SNAP,
        'phase': 'started',
        'recorded_at': '2026-11-01T00:00:00.000000Z',
        'base': None,
        'revision': 'x1',
        'channel': '',
        'target': 'x2',
        'services': before,
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / RECORD_NAME).write_text(json.dumps(record))

    assert make_flow().converge(Recorder(fake)) is Outcome.FINISHED

    assert fake.service_state(SNAP) == RUNNING  # enabled and started again, through snapd
