# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""CharmSpecificMachines.refresh_snap and the post-refresh gate, against FakeSnapd.

The library's snapd client talks to the fake over a unix socket. charm-refresh's
``Machines`` is replaced by :class:`RecordingRefresh`, which has the public
API the library may use (decision 12) with the real guard semantics, and
records when ``update_snap_revision`` ran relative to the fake's request log.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from typing import TYPE_CHECKING, Any, cast

import ops
import pytest

from charm_upgrade import (
    Journal,
    Migration,
    MigrationContext,
    Migrations,
    SnapdError,
    SnapRefreshError,
)
from charm_upgrade._migrations import REFRESH, SERIES
from charm_upgrade._refresh import JOURNAL_STAGE, STATUS_PREFIX, CharmSpecificMachines
from charm_upgrade.snapd import ServiceInfo, Snapd
from charm_upgrade.testing import FakeSnapd, RecordedRequest

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

    import charm_refresh

SNAP = 'charmed-app'
TOML = f"""\
charm_major = 1
workload = "1.0"
charm = "1/1.0.0"
[snap]
name = "{SNAP}"
[snap.revisions]
{platform.machine()} = "x2"
"""


# Stand-ins ------------------------------------------------------------------


@dataclasses.dataclass
class UpdateCall:
    """One call of update_snap_revision: when, and how far the request log was."""

    time: float
    wall: datetime.datetime
    requests_before: int
    revision: str


class RecordingRefresh:
    """charm_refresh.Machines' public API, with its guards, over FakeSnapd's state."""

    def __init__(self, fake: FakeSnapd, *, in_progress: bool = True, allowed: bool = True):
        self._fake = fake
        self.in_progress = in_progress
        self.recorded: str | None = fake.revision(SNAP)  # "installed_snap_revision"
        self._allowed = allowed
        self.updates: list[UpdateCall] = []
        self.unit_status_higher_priority: ops.StatusBase | None = None

    def _installed(self) -> str | None:
        # Read the fake's state directly (charm-refresh asks snapd over httpx):
        # the request log then holds only the library's requests.
        try:
            return self._fake.revision(SNAP)
        except KeyError:
            return None

    def update_snap_revision(self) -> None:
        installed = self._installed()
        self.updates.append(
            UpdateCall(
                time.monotonic(),
                datetime.datetime.now(datetime.timezone.utc),
                len(self._fake.requests),
                str(installed),
            )
        )
        if installed is None:
            raise ValueError(f"`update_snap_revision()` called but '{SNAP}' snap is not installed")
        self.sync()

    def sync(self) -> None:
        """What charm-refresh's constructor does in every event."""
        installed = self._installed()
        if installed != self.recorded:
            self._allowed = False
            self.recorded = installed

    @property
    def next_unit_allowed_to_refresh(self) -> bool:
        return self._allowed

    @next_unit_allowed_to_refresh.setter
    def next_unit_allowed_to_refresh(self, value: bool) -> None:
        if value is not True:
            raise ValueError('`next_unit_allowed_to_refresh` can only be set to `True`')
        if self.recorded != self._installed():
            raise Exception(
                'Must call `update_snap_revision()` before setting '
                '`next_unit_allowed_to_refresh = True`'
            )
        self._allowed = True

    def as_machines(self) -> charm_refresh.Machines:
        return cast('charm_refresh.Machines', self)


@dataclasses.dataclass(eq=False)
class AppRefresh(CharmSpecificMachines):
    """What a charm writes: the two methods charm-refresh requires."""

    @classmethod
    def is_compatible(
        cls,
        *,
        old_charm_version: charm_refresh.CharmVersion,
        new_charm_version: charm_refresh.CharmVersion,
        old_workload_version: str,
        new_workload_version: str,
    ) -> bool:
        return super().is_compatible(
            old_charm_version=old_charm_version,
            new_charm_version=new_charm_version,
            old_workload_version=old_workload_version,
            new_workload_version=new_workload_version,
        )

    @staticmethod
    def run_pre_refresh_checks_after_1_unit_refreshed() -> None:
        pass


@dataclasses.dataclass(eq=False)
class HookedRefresh(AppRefresh):
    """Runs a test's callback once the workload is stopped, to inject a fault there."""

    after_stop: Any = None

    def stop_workload(self, *, snap_name: str) -> None:
        super().stop_workload(snap_name=snap_name)
        if self.after_stop is not None:
            self.after_stop()


class HookTools:
    """status-get and status-set on PATH, keeping the unit status in a file."""

    def __init__(self, directory: pathlib.Path):
        self.state = directory / 'status.json'
        self.log = directory / 'status-set.log'
        self.state.write_text(json.dumps({'status': 'unknown', 'message': ''}))
        self.log.write_text('')
        common = f'#!{sys.executable}\nimport json, sys\nSTATE = {str(self.state)!r}\n'
        tools = {
            'status-get': 'print(open(STATE).read())\n',
            'status-set': (
                'status = {"status": sys.argv[1], "message": sys.argv[2]}\n'
                'open(STATE, "w").write(json.dumps(status))\n'
                f'open({str(self.log)!r}, "a").write(json.dumps(status) + "\\n")\n'
            ),
        }
        for name, body in tools.items():
            path = directory / name
            path.write_text(common + body)
            path.chmod(0o755)

    def set(self, status: str, message: str) -> None:
        self.state.write_text(json.dumps({'status': status, 'message': message}))

    @property
    def current(self) -> tuple[str, str]:
        data = json.loads(self.state.read_text())
        return data['status'], data['message']

    @property
    def sets(self) -> list[tuple[str, str]]:
        lines = self.log.read_text().splitlines()
        return [(d['status'], d['message']) for d in map(json.loads, lines)]


# Fixtures -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def charm_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """The hook's working directory: the charm root with refresh_versions.toml."""
    path = tmp_path / 'charm'
    path.mkdir()
    (path / 'refresh_versions.toml').write_text(TOML)
    monkeypatch.chdir(path)
    return path


@pytest.fixture(autouse=True)
def hook_tools(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> HookTools:
    directory = tmp_path / 'hook-tools'
    directory.mkdir()
    monkeypatch.setenv('PATH', f'{directory}{os.pathsep}{os.environ["PATH"]}')
    return HookTools(directory)


@pytest.fixture
def fake() -> Iterator[FakeSnapd]:
    with FakeSnapd(change_duration=0.05) as snapd:
        snapd.add_snap(SNAP, revision='x1', services=('daemon', 'worker'), revisions=('x2',))
        yield snapd


def client(
    *,
    request_timeout: float = 2.0,
    change_timeout: float = 5.0,
    restart_grace: float = 1.0,
) -> Snapd:
    return Snapd(
        request_timeout=request_timeout,
        change_timeout=change_timeout,
        restart_grace=restart_grace,
    )


def make(cls: type[AppRefresh] = AppRefresh, **kwargs: Any) -> AppRefresh:
    kwargs.setdefault('snapd', client())
    return cls(workload_name='App', charm_name='app', **kwargs)


# Request log helpers --------------------------------------------------------


def label(r: RecordedRequest) -> str:
    """A short name for a request, for order assertions."""
    if r.method == 'GET' and r.path == '/v2/changes':
        return f'changes?for={r.query.get("for")}'
    if r.method == 'GET' and r.path.startswith('/v2/changes/'):
        return 'poll'
    if r.method == 'GET' and r.path.startswith('/v2/snaps'):
        return 'snap'
    if r.method == 'GET' and r.path == '/v2/apps':
        return 'services'
    if r.method == 'POST' and r.path == '/v2/apps':
        return cast('str', r.body['action'])
    if r.method == 'POST' and r.path.startswith('/v2/snaps/'):
        return cast('str', r.body['action'])
    return f'{r.method} {r.path}'


def labels(fake: FakeSnapd, *, collapse: bool = True) -> list[str]:
    out: list[str] = []
    for r in fake.requests:
        name = label(r)
        if collapse and out and out[-1] == name == 'poll':
            continue
        out.append(name)
    return out


def refresh_posts(fake: FakeSnapd) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == 'POST' and r.path == f'/v2/snaps/{SNAP}']


def change(fake: FakeSnapd, kind: str) -> dict[str, Any]:
    (found,) = [c for c in fake.changes() if c['kind'] == kind]
    return found


def journal_records() -> list[dict[str, Any]]:
    return [r for r in Journal().read() if r['stage'] == JOURNAL_STAGE]


RUNNING = {'daemon': (True, True), 'worker': (True, True)}
STOPPED = {'daemon': (False, False), 'worker': (False, False)}


# refresh_snap: success ------------------------------------------------------


def test_success_stops_refreshes_records_then_starts(fake: FakeSnapd, hook_tools: HookTools):
    refresh = RecordingRefresh(fake)
    make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())

    assert fake.revision(SNAP) == 'x2'
    assert fake.service_state(SNAP) == RUNNING
    assert labels(fake) == [
        f'changes?for={SNAP}',  # in-flight changes of this snap only
        'snap',
        'services',  # the before-state, before anything is touched
        'stop',
        'poll',
        'refresh',
        'poll',
        'start',
        'poll',
        'services',  # post_snap_refresh: running?
        'services',  # post_snap_refresh: healthy?
    ]
    requests = fake.requests
    stop = next(r for r in requests if label(r) == 'stop')
    assert stop.body == {'action': 'stop', 'names': [SNAP], 'disable': True}
    (post,) = refresh_posts(fake)  # no second refresh, ever
    assert post.body == {'action': 'refresh', 'revision': 'x2'}
    start = next(r for r in requests if label(r) == 'start')
    assert start.body == {'action': 'start', 'names': [SNAP], 'enable': True}

    # The stop change was done before the refresh was asked for.
    stop_change = next(c for c in fake.changes() if c['kind'] == 'service-control')
    assert _ready_wall(stop_change) < _wall_of(fake, post)

    # update_snap_revision ran exactly once, after the refresh change was ready,
    # right after the poll that saw it ready and before any further request.
    (update,) = refresh.updates
    refresh_change = change(fake, 'refresh-snap')
    assert refresh_change['status'] == 'Done'
    assert _ready_wall(refresh_change) < update.wall
    assert update.revision == 'x2'
    last = requests[update.requests_before - 1]
    assert last.path == f'/v2/changes/{refresh_change["id"]}'
    following = requests[update.requests_before]
    assert label(following) == 'start'
    assert following.time > update.time
    assert all(r.time < update.time for r in requests[: update.requests_before])

    # post_snap_refresh let the next unit refresh; no status was set.
    assert refresh.next_unit_allowed_to_refresh
    assert hook_tools.sets == []

    start_record, end_record = journal_records()
    assert start_record['event'] == 'start'
    assert end_record['event'] == 'ended'
    details = end_record['details']
    assert details['revision_before'] == 'x1'
    assert details['revision_requested'] == 'x2'
    assert details['revision_after'] == 'x2'
    assert details['change_id'] == refresh_change['id']
    for key in ('stop', 'refresh', 'start', 'downtime'):
        assert details[key] > 0
    assert details['downtime'] >= details['stop'] + details['refresh'] + details['start']


def test_snap_not_installed_raises_before_anything_is_touched(fake: FakeSnapd):
    fake.add_snap('other')
    refresh = RecordingRefresh(fake)
    fake.clear_requests()
    with pytest.raises(SnapRefreshError) as caught:
        make().refresh_snap(snap_name='absent', snap_revision='x2', refresh=refresh.as_machines())
    assert isinstance(caught.value.__cause__, SnapdError)
    assert caught.value.__cause__.kind == 'snap-not-found'
    assert caught.value.snap == 'absent'
    assert caught.value.revision_before is None
    assert 'not installed' in str(caught.value)
    assert [label(r) for r in fake.requests] == ['changes?for=absent', 'snap']
    assert refresh.updates == []
    assert journal_records()[-1]['event'] == 'failed'


@pytest.mark.parametrize('bad', [2, '', None, '0', 'abc', 'x', 'x0', '02', ' 2', '2.0'])
def test_bad_revisions_raise_value_error_before_anything(fake: FakeSnapd, bad: Any):
    refresh = RecordingRefresh(fake)
    with pytest.raises(ValueError, match='invalid snap revision'):
        make().refresh_snap(snap_name=SNAP, snap_revision=bad, refresh=refresh.as_machines())
    assert fake.requests == []
    assert journal_records() == []
    assert refresh.updates == []


# refresh_snap: failures -----------------------------------------------------


def test_failure_undone_by_snapd_starts_the_workload_and_raises(fake: FakeSnapd):
    fake.fail_next_refresh(undo=True)
    refresh = RecordingRefresh(fake)
    with pytest.raises(SnapRefreshError) as caught:
        make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())

    error = caught.value
    failed = change(fake, 'refresh-snap')
    assert failed['status'] == 'Error'
    assert (error.snap, error.revision_before, error.revision_requested) == (SNAP, 'x1', 'x2')
    assert error.revision_after == 'x1'
    assert error.change_id == failed['id']
    assert error.change_status == 'Error'
    assert error.change_error is not None
    assert 'post-refresh' in error.change_error
    cause = error.__cause__
    assert isinstance(cause, SnapdError)
    assert (cause.kind, cause.change_id) == ('change-failed', failed['id'])
    assert 'started again' in error.message

    assert fake.revision(SNAP) == 'x1'
    assert fake.service_state(SNAP) == RUNNING  # enabled and active again
    assert len(refresh_posts(fake)) == 1  # never retried
    assert refresh.updates == []  # nothing to record
    assert labels(fake) == [
        f'changes?for={SNAP}',
        'snap',
        'services',  # the before-state, before anything is touched
        'stop',
        'poll',
        'refresh',
        'poll',
        'snap',  # the revision, read again
        'start',
        'poll',
    ]
    record = journal_records()[-1]
    assert record['event'] == 'failed'
    assert record['details']['change_status'] == 'Error'
    assert record['details']['downtime'] > 0


def test_failure_after_the_revision_changed_records_it_and_raises(fake: FakeSnapd):
    fake.fail_next_refresh(undo=False)
    refresh = RecordingRefresh(fake)
    with pytest.raises(SnapRefreshError) as caught:
        make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())

    assert caught.value.revision_after == 'x2'
    assert caught.value.change_status == 'Error'
    assert 'recorded revision x2' in caught.value.message
    assert fake.revision(SNAP) == 'x2'
    (update,) = refresh.updates
    assert update.revision == 'x2'
    assert refresh.recorded == 'x2'
    assert not refresh.next_unit_allowed_to_refresh
    assert len(refresh_posts(fake)) == 1
    # The workload is not started on the changed revision: post_snap_refresh
    # does that in the next event.
    assert 'start' not in labels(fake)
    assert fake.service_state(SNAP) == STOPPED


def test_a_refresh_snapd_rejects_before_any_change_is_a_snap_refresh_error(fake: FakeSnapd):
    refresh = RecordingRefresh(fake)
    with pytest.raises(SnapRefreshError) as caught:
        make().refresh_snap(snap_name=SNAP, snap_revision='77', refresh=refresh.as_machines())
    cause = caught.value.__cause__
    assert isinstance(cause, SnapdError)
    # A local snap (x1) has no store to ask for revision 77: snapd says snap-local.
    assert (cause.kind, cause.status_code) == ('snap-local', 400)
    assert caught.value.change_id is None
    assert caught.value.revision_after == 'x1'
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.updates == []
    assert len(refresh_posts(fake)) == 1


def test_garbage_before_anything_raises_without_touching_the_workload(fake: FakeSnapd):
    fake.garbage_next(1)
    refresh = RecordingRefresh(fake)
    with pytest.raises(SnapRefreshError) as caught:
        make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    assert isinstance(caught.value.__cause__, SnapdError)
    assert caught.value.__cause__.kind == 'bad-response'
    assert labels(fake) == [f'changes?for={SNAP}']
    assert fake.service_state(SNAP) == RUNNING


def test_garbage_answer_to_the_refresh_starts_the_workload_again(fake: FakeSnapd):
    refresh = RecordingRefresh(fake)
    cs = make(HookedRefresh, after_stop=lambda: fake.garbage_next(1))
    with pytest.raises(SnapRefreshError) as caught:
        cs.refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    assert isinstance(caught.value.__cause__, SnapdError)
    assert caught.value.__cause__.kind == 'bad-response'
    assert caught.value.revision_after == 'x1'
    assert fake.service_state(SNAP) == RUNNING
    assert len(refresh_posts(fake)) == 1
    assert refresh.updates == []


def test_a_stop_that_fails_starts_the_workload_again(fake: FakeSnapd):
    @dataclasses.dataclass(eq=False)
    class HalfStop(AppRefresh):
        def stop_workload(self, *, snap_name: str) -> None:
            fake.set_service_state(SNAP, 'worker', enabled=False, active=False)
            raise SnapdError('snapd could not stop', kind='change-failed', change_id='99')

    refresh = RecordingRefresh(fake)
    with pytest.raises(SnapRefreshError) as caught:
        make(HalfStop).refresh_snap(
            snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
        )
    assert caught.value.revision_after == 'x1'
    assert caught.value.change_id == '99'
    assert 'could not be stopped' in caught.value.message
    assert refresh_posts(fake) == []
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.updates == []


def test_a_stop_whose_restart_fails_says_so(fake: FakeSnapd):
    @dataclasses.dataclass(eq=False)
    class Broken(AppRefresh):
        def stop_workload(self, *, snap_name: str) -> None:
            raise SnapdError('snapd could not stop', kind='change-failed')

        def start_workload(self, *, snap_name: str) -> None:
            raise SnapdError('snapd could not start', kind='change-failed')

    refresh = RecordingRefresh(fake)
    with pytest.raises(SnapRefreshError, match='starting it again failed too') as caught:
        make(Broken).refresh_snap(
            snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
        )
    assert journal_records()[-1]['details']['start_error'] == ('SnapdError: snapd could not start')
    assert isinstance(caught.value.__cause__, SnapdError)
    assert caught.value.__cause__.message == 'snapd could not stop'


def test_snapd_unreachable_raises_before_anything(tmp_path: pathlib.Path):
    with FakeSnapd(change_duration=0.05) as fake:
        fake.add_snap(SNAP, revision='x1', revisions=('x2',))
        refresh = RecordingRefresh(fake)
    # The fake is stopped: its socket is gone.
    began = time.monotonic()
    with pytest.raises(SnapRefreshError) as caught:
        make(snapd=client(restart_grace=0.3)).refresh_snap(
            snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
        )
    assert time.monotonic() - began < 2
    cause = caught.value.__cause__
    assert isinstance(cause, SnapdError)
    assert cause.kind == 'connection-error'
    assert 'is snapd installed and running?' in cause.message
    assert caught.value.revision_before is None
    assert refresh.updates == []


def test_snapd_restarting_during_the_refresh_request_is_not_retried(fake: FakeSnapd):
    # The write is refused (not retried); reading the revision again outlasts
    # the restart, so the workload is started again on the unchanged revision.
    refresh = RecordingRefresh(fake)
    cs = make(
        HookedRefresh,
        snapd=client(restart_grace=3.0),
        after_stop=lambda: fake.refuse_connections(0.4),
    )
    with pytest.raises(SnapRefreshError) as caught:
        cs.refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    cause = caught.value.__cause__
    assert isinstance(cause, SnapdError)
    assert cause.kind == 'connection-error'
    assert caught.value.revision_after == 'x1'
    assert refresh_posts(fake) == []  # the refused request never reached snapd
    assert fake.service_state(SNAP) == RUNNING
    assert fake.revision(SNAP) == 'x1'


def test_snapd_gone_for_longer_than_the_grace_leaves_the_revision_unknown(fake: FakeSnapd):
    refresh = RecordingRefresh(fake)
    cs = make(
        HookedRefresh,
        snapd=client(restart_grace=0.2),
        after_stop=lambda: fake.refuse_connections(1.0),
    )
    with pytest.raises(SnapRefreshError) as caught:
        cs.refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    error = caught.value
    assert error.revision_before == 'x1'
    assert error.revision_after is None
    assert 'revision now unknown' in error.message
    assert 'could not be started again' in error.message
    assert refresh.updates == []
    assert refresh_posts(fake) == []

    # snapd is back. The revision did not change, so charm-refresh calls
    # refresh_snap again in the next event, and it goes through.
    time.sleep(1.0)
    assert fake.service_state(SNAP) == STOPPED
    make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    assert fake.revision(SNAP) == 'x2'
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.next_unit_allowed_to_refresh


def test_a_start_failing_after_the_refresh_is_left_to_post_snap_refresh(fake: FakeSnapd):
    starts: list[str] = []

    @dataclasses.dataclass(eq=False)
    class FirstStartFails(AppRefresh):
        def start_workload(self, *, snap_name: str) -> None:
            starts.append(snap_name)
            if len(starts) == 1:
                raise SnapdError('snapd could not start', kind='change-failed')
            super().start_workload(snap_name=snap_name)

    refresh = RecordingRefresh(fake)
    make(FirstStartFails).refresh_snap(
        snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
    )
    assert len(starts) == 2  # refresh_snap's start, then post_snap_refresh's
    assert len(refresh.updates) == 1
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.next_unit_allowed_to_refresh
    record = journal_records()[-1]
    assert record['event'] == 'ended'
    assert record['details']['start_error'] == 'snapd could not start'
    assert 'downtime' not in record['details']


def test_a_failing_record_after_a_changed_revision_is_reported(fake: FakeSnapd):
    class Unrecordable(RecordingRefresh):
        def update_snap_revision(self) -> None:
            raise RuntimeError('relation-set failed')

    fake.fail_next_refresh(undo=False)
    refresh = Unrecordable(fake)
    with pytest.raises(SnapRefreshError, match='recording revision x2 failed too') as caught:
        make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    assert caught.value.revision_after == 'x2'
    assert isinstance(caught.value.__cause__, SnapdError)


def test_a_request_that_times_out_before_anything_raises(fake: FakeSnapd):
    fake.delay_next(1.5)
    refresh = RecordingRefresh(fake)
    began = time.monotonic()
    with pytest.raises(SnapRefreshError) as caught:
        make(snapd=client(request_timeout=0.2)).refresh_snap(
            snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
        )
    assert time.monotonic() - began < 1.0
    cause = caught.value.__cause__
    assert isinstance(cause, SnapdError)
    assert cause.kind == 'timeout'
    assert labels(fake) == [f'changes?for={SNAP}']
    assert fake.service_state(SNAP) == RUNNING


def test_a_refresh_change_that_times_out_is_left_to_snapd_and_recovered_later(
    fake: FakeSnapd, hook_tools: HookTools
):
    refresh = RecordingRefresh(fake)
    cs = make(
        HookedRefresh,
        snapd=client(change_timeout=0.3),
        after_stop=lambda: fake.set_change_duration(1.5),
    )
    with pytest.raises(SnapRefreshError) as caught:
        cs.refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    error = caught.value
    assert isinstance(error.__cause__, SnapdError)
    assert error.__cause__.kind == 'timeout'
    assert error.change_id == change(fake, 'refresh-snap')['id']
    assert error.revision_after == 'x1'
    # Starting the workload conflicts with the refresh still in flight and
    # gives up within the same bound; nothing is retried.
    assert 'could not be started again' in error.message
    assert len(refresh_posts(fake)) == 1
    assert refresh.updates == []

    # snapd finishes the refresh; the services stay disabled, so stopped.
    fake.wait_idle()
    assert fake.revision(SNAP) == 'x2'
    assert fake.service_state(SNAP) == STOPPED
    fake.set_change_duration(0.05)

    # Next event: charm-refresh syncs the revision (the unit is now pinned, so
    # refresh_snap is not called again) and the charm reconciles.
    refresh.sync()
    cs.reconcile(refresh.as_machines())
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.next_unit_allowed_to_refresh
    assert len(refresh_posts(fake)) == 1


# refresh_snap: in-flight changes, 409, already at target --------------------


def test_a_change_in_flight_for_the_snap_is_waited_for_first(fake: FakeSnapd):
    in_flight = fake.start_change(SNAP, kind='auto-refresh', duration=0.3)
    refresh = RecordingRefresh(fake)
    make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())

    waited = next(c for c in fake.changes() if c['id'] == in_flight)
    first_write = next(r for r in fake.requests if r.method == 'POST')
    assert label(first_write) == 'stop'
    assert _ready_wall(waited) < _wall_of(fake, first_write)
    assert fake.revision(SNAP) == 'x2'
    assert len(refresh_posts(fake)) == 1
    assert journal_records()[-1]['details']['waited_changes'] == [f'{in_flight} auto-refresh Done']


def test_changes_of_other_snaps_are_not_waited_for(fake: FakeSnapd):
    fake.add_snap('other')
    fake.start_change('other', kind='become-operational', duration=30)
    refresh = RecordingRefresh(fake)
    began = time.monotonic()
    make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    assert time.monotonic() - began < 5
    assert fake.revision(SNAP) == 'x2'
    assert fake.requests[0].query == {'for': SNAP, 'select': 'in-progress'}


def test_a_409_on_the_refresh_is_waited_out_and_asked_once_more(fake: FakeSnapd):
    refresh = RecordingRefresh(fake)
    cs = make(
        HookedRefresh,
        after_stop=lambda: fake.start_change(SNAP, kind='auto-refresh', duration=0.3),
    )
    cs.refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    assert fake.revision(SNAP) == 'x2'
    assert fake.service_state(SNAP) == RUNNING
    # The first request was refused with 409 (no change); the second made the
    # one and only refresh change.
    first, second = refresh_posts(fake)
    conflicting = change(fake, 'auto-refresh')
    assert _wall_of(fake, first) < _ready_wall(conflicting) < _wall_of(fake, second)
    assert len([c for c in fake.changes() if c['kind'] == 'refresh-snap']) == 1
    assert len(refresh.updates) == 1


def test_a_bare_409_is_retried_once_the_snap_is_idle(fake: FakeSnapd):
    refresh = RecordingRefresh(fake)
    cs = make(HookedRefresh, after_stop=lambda: fake.conflict_next(1))
    cs.refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    assert len(refresh_posts(fake)) == 2
    assert len([c for c in fake.changes() if c['kind'] == 'refresh-snap']) == 1
    assert fake.revision(SNAP) == 'x2'


@pytest.mark.parametrize('running', [True, False])
def test_already_at_the_target_records_it_without_a_refresh(
    fake: FakeSnapd, hook_tools: HookTools, running: bool
):
    # An earlier hook died after the refresh and before update_snap_revision:
    # snapd has x2, charm-refresh's record still says x1.
    refresh = RecordingRefresh(fake)
    fake.add_snap(
        SNAP,
        revision='x2',
        services=('daemon', 'worker'),
        revisions=('x1',),
        enabled=running,
        active=running,
    )
    make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())

    assert refresh_posts(fake) == []  # a refresh to x2 would restart the services
    assert 'stop' not in labels(fake)
    (update,) = refresh.updates
    assert update.revision == 'x2'
    assert refresh.recorded == 'x2'
    # It ends like a success: post_snap_refresh started what was down.
    assert fake.service_state(SNAP) == RUNNING
    assert ('start' in labels(fake)) is not running
    assert refresh.next_unit_allowed_to_refresh
    record = journal_records()[-1]
    assert record['event'] == 'ended'
    assert record['details']['already_at_target'] is True


def test_a_refresh_in_flight_to_the_target_is_waited_for_then_recorded(fake: FakeSnapd):
    # A hook killed right after asking for the refresh: the change is still
    # going. snapd shows x2 before it is ready; the library waits for it.
    fake.set_change_duration(0.4)
    client().refresh(SNAP, 'x2')
    fake.set_change_duration(0.05)
    refresh = RecordingRefresh(fake)
    make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())
    assert len(refresh_posts(fake)) == 1  # only the killed hook's
    assert change(fake, 'refresh-snap')['status'] == 'Done'
    (update,) = refresh.updates
    assert _ready_wall(change(fake, 'refresh-snap')) < update.wall
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.next_unit_allowed_to_refresh


# post_snap_refresh and reconcile --------------------------------------------


def test_post_snap_refresh_unhealthy_sets_a_status_and_does_not_allow(
    fake: FakeSnapd, hook_tools: HookTools
):
    @dataclasses.dataclass(eq=False)
    class Sick(AppRefresh):
        def workload_healthy(self) -> bool:
            return False

    refresh = RecordingRefresh(fake, allowed=False)
    cs = make(Sick)
    cs.post_snap_refresh(refresh.as_machines())
    assert not refresh.next_unit_allowed_to_refresh
    ((status, message),) = hook_tools.sets
    assert status == 'waiting'
    assert message.startswith(STATUS_PREFIX)
    assert 'App not healthy' in message
    assert isinstance(cs.unhealthy_status, ops.WaitingStatus)
    assert cs.unhealthy_status.message == message


def test_post_snap_refresh_names_the_services_that_do_not_run(
    fake: FakeSnapd, hook_tools: HookTools
):
    @dataclasses.dataclass(eq=False)
    class NoStart(AppRefresh):
        def start_workload(self, *, snap_name: str) -> None:
            pass  # a start that does nothing

    fake.set_service_state(SNAP, 'worker', enabled=True, active=False)
    refresh = RecordingRefresh(fake, allowed=False)
    make(NoStart).post_snap_refresh(refresh.as_machines())
    assert not refresh.next_unit_allowed_to_refresh
    assert hook_tools.current == (
        'waiting',
        f'{STATUS_PREFIX}{SNAP} services not active: {SNAP}.worker; next unit waits',
    )


def test_post_snap_refresh_start_failure_is_blocked_not_raised(
    fake: FakeSnapd, hook_tools: HookTools
):
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)
    refresh = RecordingRefresh(fake, allowed=False)
    cs = make()
    read_services = cs.snapd.services

    def read_then_refuse(snap: str) -> list[ServiceInfo]:
        services = read_services(snap)
        fake.refuse_connections(0.5)  # snapd restarts: the start (a write) fails
        return services

    cs.snapd.services = read_then_refuse
    cs.post_snap_refresh(refresh.as_machines())
    assert not refresh.next_unit_allowed_to_refresh
    status, message = hook_tools.current
    assert status == 'blocked'
    assert message == f'{STATUS_PREFIX}cannot start {SNAP}: connection-error'
    assert isinstance(cs.unhealthy_status, ops.BlockedStatus)


def test_post_snap_refresh_health_read_failure_is_unhealthy(
    fake: FakeSnapd, hook_tools: HookTools
):
    @dataclasses.dataclass(eq=False)
    class Running(AppRefresh):
        def workload_running(self) -> bool:
            return True

    fake.garbage_next(2)  # the health read, then the read for the message
    refresh = RecordingRefresh(fake, allowed=False)
    make(Running).post_snap_refresh(refresh.as_machines())
    assert not refresh.next_unit_allowed_to_refresh
    assert hook_tools.current == (
        'waiting',
        f'{STATUS_PREFIX}cannot read the services of {SNAP}: bad-response; next unit waits',
    )


def test_post_snap_refresh_truncates_long_messages(fake: FakeSnapd, hook_tools: HookTools):
    @dataclasses.dataclass(eq=False)
    class Verbose(AppRefresh):
        def workload_healthy(self) -> bool:
            return False

        def unhealthy_message(self) -> str:
            return 'replica lag ' * 20

    refresh = RecordingRefresh(fake, allowed=False)
    make(Verbose).post_snap_refresh(refresh.as_machines())
    _, message = hook_tools.current
    assert len(message) == 120
    assert message.startswith(STATUS_PREFIX + 'replica lag')
    assert message.endswith('...')


def test_post_snap_refresh_without_hook_tools_does_not_raise(
    fake: FakeSnapd, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv('PATH', '/nonexistent')

    @dataclasses.dataclass(eq=False)
    class Sick(AppRefresh):
        def workload_healthy(self) -> bool:
            return False

    refresh = RecordingRefresh(fake, allowed=False)
    make(Sick).post_snap_refresh(refresh.as_machines())
    make().post_snap_refresh(refresh.as_machines())
    assert refresh.next_unit_allowed_to_refresh
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert any('Could not set the unit status' in w for w in warnings)
    assert any('Could not read the unit status' in w for w in warnings)


def test_post_snap_refresh_leaves_charm_refresh_higher_priority_status(
    fake: FakeSnapd, hook_tools: HookTools
):
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)

    @dataclasses.dataclass(eq=False)
    class NoStart(AppRefresh):
        def start_workload(self, *, snap_name: str) -> None:
            pass

    refresh = RecordingRefresh(fake, allowed=False)
    refresh.unit_status_higher_priority = ops.MaintenanceStatus(
        'Waiting for Juju upgrade-charm or config-changed event. See `juju debug-log`'
    )
    cs = make(NoStart)
    cs.post_snap_refresh(refresh.as_machines())
    assert hook_tools.sets == []
    assert cs.unhealthy_status is not None  # still there for collect-status


def test_post_snap_refresh_healthy_allows_and_clears_its_own_status(
    fake: FakeSnapd, hook_tools: HookTools
):
    hook_tools.set('waiting', f'{STATUS_PREFIX}{SNAP} services not active: x; next unit waits')
    refresh = RecordingRefresh(fake, allowed=False)
    make().post_snap_refresh(refresh.as_machines())
    assert refresh.next_unit_allowed_to_refresh
    assert hook_tools.current == ('active', '')


def test_post_snap_refresh_healthy_keeps_the_charms_status(fake: FakeSnapd, hook_tools: HookTools):
    hook_tools.set('blocked', 'needs a relation')
    refresh = RecordingRefresh(fake, allowed=False)
    make().post_snap_refresh(refresh.as_machines())
    assert refresh.next_unit_allowed_to_refresh
    assert hook_tools.sets == []


def test_reconcile_retries_post_snap_refresh_every_event_until_healthy(
    fake: FakeSnapd, hook_tools: HookTools
):
    # The refresh happened, but a service stayed down (a slow start, say).
    refresh = RecordingRefresh(fake, allowed=False)
    fake.set_service_state(SNAP, 'worker', enabled=True, active=False)
    healthy = False

    @dataclasses.dataclass(eq=False)
    class Slow(AppRefresh):
        def workload_healthy(self) -> bool:
            return healthy and super().workload_healthy()

    cs = make(Slow)
    cs.reconcile(refresh.as_machines())
    assert not refresh.next_unit_allowed_to_refresh
    assert hook_tools.current[0] == 'waiting'
    assert fake.service_state(SNAP) == RUNNING  # started by post_snap_refresh

    healthy = True
    cs.reconcile(refresh.as_machines())
    assert refresh.next_unit_allowed_to_refresh
    assert hook_tools.current == ('active', '')
    assert cs.unhealthy_status is None

    fake.clear_requests()
    cs.reconcile(refresh.as_machines())  # allowed: nothing to do, not even a read
    assert fake.requests == []


def test_reconcile_outside_a_refresh_just_allows(fake: FakeSnapd, hook_tools: HookTools):
    refresh = RecordingRefresh(fake, in_progress=False, allowed=False)
    make().reconcile(refresh.as_machines())
    assert refresh.next_unit_allowed_to_refresh
    assert fake.requests == []
    assert hook_tools.sets == []


def test_reconcile_refuses_to_allow_before_the_revision_is_recorded(fake: FakeSnapd):
    # The real guard of charm-refresh: the library never hides it.
    refresh = RecordingRefresh(fake, in_progress=False, allowed=False)
    fake.add_snap(SNAP, revision='x2', services=('daemon', 'worker'))
    with pytest.raises(Exception, match='Must call `update_snap_revision'):
        make().reconcile(refresh.as_machines())


def test_the_class_adds_no_required_fields():
    @dataclasses.dataclass(eq=False)
    class WithCharm(AppRefresh):
        _charm: object = None

    required = [
        f.name
        for f in dataclasses.fields(WithCharm)
        if f.init
        and not f.kw_only
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    assert required == ['workload_name', 'charm_name']

    @dataclasses.dataclass(eq=False)
    class Required(AppRefresh):
        _charm: object

    made = Required('App', 'app', object())
    assert isinstance(made.snapd, Snapd)


# Helpers --------------------------------------------------------------------


def _parse(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))


def _ready_wall(change_json: dict[str, Any]) -> datetime.datetime:
    return _parse(change_json['ready-time'])


def _wall_of(fake: FakeSnapd, request: RecordedRequest) -> datetime.datetime:
    # Requests carry monotonic times; translate with the current offset.
    offset = time.time() - time.monotonic()
    return datetime.datetime.fromtimestamp(request.time + offset, datetime.timezone.utc)


# Migrations, before-state, preview, health ------------------------------------


def migrations_of(*migrations: Migration) -> Migrations:
    return Migrations(list(migrations))


def watching(fake: FakeSnapd, log: list[str], name: str, *, fail: list[bool] | None = None):
    """A migration step that logs its context and what the fake shows at that moment."""

    def run(ctx: MigrationContext) -> None:
        state = 'running' if fake.service_state(SNAP) == RUNNING else 'stopped'
        log.append(
            f'{name} {ctx.direction} {ctx.old}->{ctx.new} at {fake.revision(SNAP)} {state}'
            + (' interrupted' if ctx.interrupted else '')
        )
        if fail and fail[0]:
            raise RuntimeError('schema locked')

    return run


def test_refresh_migrations_run_after_the_record_and_before_the_start(
    fake: FakeSnapd, hook_tools: HookTools
):
    log: list[str] = []
    refresh = RecordingRefresh(fake)
    migrations = migrations_of(
        Migration('1-db', 'db format 2', kind=REFRESH, up=watching(fake, log, '1-db')),
        Migration('2-series', 'series only', kind=SERIES, up=watching(fake, log, 'no')),
    )
    make(migrations=migrations).refresh_snap(
        snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
    )

    assert log == ['1-db up x1->x2 at x2 stopped']
    assert len(refresh.updates) == 1
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.next_unit_allowed_to_refresh
    assert migrations.applied() == ['1-db']
    assert migrations.data_revision == 'x2'
    stages = [f'{r["stage"]} {r["event"]}' for r in Journal().read()]
    assert stages == [
        'snap-refresh start',
        'migrations start',
        'migration:1-db start',
        'migration:1-db ended',
        'migrations ended',
        'snap-refresh ended',
        'health start',
        'health ended',
    ]
    ended = journal_records()[-1]['details']
    assert ended['migrations'] == ['1-db']
    assert ended['downtime'] >= ended['migrate'] > 0


def test_a_failed_refresh_migration_blocks_keeps_the_workload_down_and_is_retried(
    fake: FakeSnapd, hook_tools: HookTools
):
    log: list[str] = []
    fail = [True]
    migrations = migrations_of(
        Migration('1-db', 'db format 2', kind=REFRESH, up=watching(fake, log, '1-db', fail=fail))
    )
    refresh = RecordingRefresh(fake)

    make(migrations=migrations).refresh_snap(  # no exception: the status says it
        snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
    )

    assert fake.revision(SNAP) == 'x2'
    assert refresh.recorded == 'x2'
    assert fake.service_state(SNAP) == STOPPED  # not on data it cannot read
    assert not refresh.next_unit_allowed_to_refresh
    status, message = hook_tools.current
    assert status == 'blocked'
    assert message.startswith(f'{STATUS_PREFIX}Migration 1-db failed (RuntimeError: schema')
    assert journal_records()[-1]['event'] == 'failed'

    # Next event, same failure: still blocked, still stopped.
    refresh.in_progress = True
    make(migrations=migrations).reconcile(refresh.as_machines())
    assert fake.service_state(SNAP) == STOPPED
    assert hook_tools.current[0] == 'blocked'

    # Fixed: the next event's reconcile runs it (told it was interrupted), then starts.
    fail[0] = False
    make(migrations=migrations).reconcile(refresh.as_machines())
    assert log[-1] == '1-db up x1->x2 at x2 stopped interrupted'
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.next_unit_allowed_to_refresh
    assert hook_tools.current == ('active', '')
    assert migrations.applied() == ['1-db']


def test_applied_migrations_unknown_to_the_code_refuse_the_refresh_before_any_stop(
    fake: FakeSnapd, hook_tools: HookTools
):
    newer = migrations_of(Migration('5-new', 'newer', kind=REFRESH, up=lambda c: None))
    newer.run(REFRESH, old='x0', new='x1')
    older_code = migrations_of()
    refresh = RecordingRefresh(fake, allowed=False)

    make(migrations=older_code).refresh_snap(
        snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
    )

    assert 'stop' not in labels(fake)
    assert refresh_posts(fake) == []
    assert fake.revision(SNAP) == 'x1'
    assert fake.service_state(SNAP) == RUNNING
    status, message = hook_tools.current
    assert status == 'blocked'
    assert message.startswith(f'{STATUS_PREFIX}Migration 5-new applied here is unknown to this')
    assert not refresh.next_unit_allowed_to_refresh


def test_a_refresh_back_to_an_older_revision_runs_down_newest_first(
    fake: FakeSnapd, hook_tools: HookTools
):
    log: list[str] = []
    fake.add_snap(SNAP, revision='x2', services=('daemon', 'worker'), revisions=('x1',))
    migrations = migrations_of(
        *(
            Migration(n, n, kind=REFRESH, up=watching(fake, log, n), down=watching(fake, log, n))
            for n in ('1', '2')
        )
    )
    migrations.run(REFRESH, old='x1', new='x2')
    log.clear()
    refresh = RecordingRefresh(fake)

    make(migrations=migrations).refresh_snap(
        snap_name=SNAP, snap_revision='x1', refresh=refresh.as_machines()
    )

    assert log == ['2 down x2->x1 at x1 stopped', '1 down x2->x1 at x1 stopped']
    assert migrations.applied() == []
    assert fake.service_state(SNAP) == RUNNING


def test_a_rollback_across_a_migration_without_down_is_refused_untouched(
    fake: FakeSnapd, hook_tools: HookTools
):
    fake.add_snap(SNAP, revision='x2', services=('daemon', 'worker'), revisions=('x1',))
    migrations = migrations_of(Migration('1', 'one way', kind=REFRESH, up=lambda c: None))
    migrations.run(REFRESH, old='x1', new='x2')

    make(migrations=migrations).refresh_snap(
        snap_name=SNAP, snap_revision='x1', refresh=RecordingRefresh(fake).as_machines()
    )

    assert fake.revision(SNAP) == 'x2'
    assert 'stop' not in labels(fake)
    assert hook_tools.current[0] == 'blocked'
    assert 'cannot be undone' in journal_records()[-1]['error']


def test_already_at_the_target_runs_the_migrations_the_dead_hook_did_not(
    fake: FakeSnapd, hook_tools: HookTools
):
    # The hook died after the refresh, before its migrations: snapd has x2,
    # the migrations' record still says the data is at x1.
    log: list[str] = []
    migrations = migrations_of(
        Migration('1', 'one', kind=REFRESH, up=watching(fake, log, '1')),
    )
    migrations.mark_installed(revision='x1')
    migrations.add(Migration('2', 'two', kind=REFRESH, up=watching(fake, log, '2')))
    fake.add_snap(SNAP, revision='x2', services=('daemon', 'worker'), revisions=('x1',))
    refresh = RecordingRefresh(fake)

    make(migrations=migrations).refresh_snap(
        snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines()
    )

    assert log == ['2 up x1->x2 at x2 stopped']  # stopped first: it was running
    assert refresh_posts(fake) == []
    assert fake.service_state(SNAP) == RUNNING
    assert refresh.next_unit_allowed_to_refresh


def test_the_before_state_is_recorded_before_the_stop_and_kept_by_a_retry(
    fake: FakeSnapd, hook_tools: HookTools, state_dir: pathlib.Path
):
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)
    fake.fail_next_refresh()
    cs = make()
    with pytest.raises(SnapRefreshError):
        cs.refresh_snap(
            snap_name=SNAP, snap_revision='x2', refresh=RecordingRefresh(fake).as_machines()
        )
    first = json.loads((state_dir / 'snap-refresh.json').read_text())
    assert {k: first[k] for k in ('snap', 'revision', 'target', 'phase')} == {
        'snap': SNAP,
        'revision': 'x1',
        'target': 'x2',
        'phase': 'started',
    }
    assert first['services'] == {
        f'{SNAP}.daemon': {'enabled': True, 'active': True},
        f'{SNAP}.worker': {'enabled': False, 'active': False},
    }
    assert journal_records()[-1]['details']['before'] == first

    cs.refresh_snap(
        snap_name=SNAP, snap_revision='x2', refresh=RecordingRefresh(fake).as_machines()
    )

    done = json.loads((state_dir / 'snap-refresh.json').read_text())
    assert done['recorded_at'] == first['recorded_at']  # the retry kept the first
    assert done['phase'] == 'completed'
    assert cs.read_before_state() == done


def test_a_service_disabled_before_the_refresh_stays_disabled_and_is_not_awaited(
    fake: FakeSnapd, hook_tools: HookTools
):
    # The charm keeps an optional daemon off; the refresh must not turn it on.
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)
    refresh = RecordingRefresh(fake)

    make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())

    assert fake.revision(SNAP) == 'x2'
    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (False, False)}
    starts = [r.body for r in fake.requests if label(r) == 'start']
    assert starts == [{'action': 'start', 'names': [f'{SNAP}.daemon'], 'enable': True}]
    # Healthy: the worker is not expected to run.
    assert refresh.next_unit_allowed_to_refresh
    assert hook_tools.sets == []


def test_a_service_running_but_not_enabled_is_started_without_enabling(fake: FakeSnapd):
    fake.set_service_state(SNAP, 'worker', enabled=False, active=True)
    refresh = RecordingRefresh(fake)

    make().refresh_snap(snap_name=SNAP, snap_revision='x2', refresh=refresh.as_machines())

    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (False, True)}
    starts = [r.body for r in fake.requests if label(r) == 'start']
    assert starts == [
        {'action': 'start', 'names': [f'{SNAP}.daemon'], 'enable': True},
        {'action': 'start', 'names': [f'{SNAP}.worker'], 'enable': False},
    ]
    assert refresh.next_unit_allowed_to_refresh


def test_a_failed_refresh_restores_the_recorded_state_exactly(fake: FakeSnapd):
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)
    fake.fail_next_refresh(undo=True)

    with pytest.raises(SnapRefreshError):
        make().refresh_snap(
            snap_name=SNAP, snap_revision='x2', refresh=RecordingRefresh(fake).as_machines()
        )

    assert fake.revision(SNAP) == 'x1'
    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (False, False)}


def test_without_a_before_state_every_service_is_enabled_and_started(
    fake: FakeSnapd, state_dir: pathlib.Path
):
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)
    fake.set_service_state(SNAP, 'daemon', enabled=False, active=False)
    assert not (state_dir / 'snap-refresh.json').exists()

    make().start_workload(snap_name=SNAP)

    assert fake.service_state(SNAP) == RUNNING
    assert [r.body['names'] for r in fake.requests if label(r) == 'start'] == [[SNAP]]


def test_preview_says_what_a_refresh_would_do_and_changes_nothing(
    fake: FakeSnapd, hook_tools: HookTools, state_dir: pathlib.Path
):
    migrations = migrations_of(
        Migration('1', 'db format 2', kind=REFRESH, up=lambda c: None, down=lambda c: None)
    )
    migrations.mark_installed(revision='x0')
    migrations.add(Migration('2', 'index', kind=REFRESH, up=lambda c: None))
    cs = make(migrations=migrations)
    before = sorted(p.name for p in state_dir.iterdir())

    preview = cs.preview(revision_to='x2')

    assert preview.step == 'snap-refresh'
    assert (preview.revision_from, preview.revision_to) == ('x1', 'x2')
    assert preview.pending_migrations == ('2 (up): index',)
    assert (
        preview.summary == f'stop {SNAP}, refresh it to revision x2, run the migrations, start it'
    )
    assert preview.disruption.startswith(f'every service of {SNAP} is down')
    assert [s.name for s in preview.services] == [f'{SNAP}.daemon', f'{SNAP}.worker']
    assert 'snap revision: x1 -> x2' in preview.format()
    assert all(r.method == 'GET' for r in fake.requests)
    assert sorted(p.name for p in state_dir.iterdir()) == before  # no journal, no record

    # After a refresh: its before-state and its downtime show.
    cs.refresh_snap(
        snap_name=SNAP, snap_revision='x2', refresh=RecordingRefresh(fake).as_machines()
    )
    again = cs.preview(revision_to='x2')
    assert again.disruption == 'none'
    assert again.before_state is not None and again.before_state['revision'] == 'x1'
    assert (
        again.format()
        .splitlines()[-1]
        .endswith(f'revision x1 (no channel), active: {SNAP}.daemon, {SNAP}.worker')
    )
    back = cs.preview(revision_to='x1')
    # '1' was installed at x0, so x1 reads its data; '2' ran for x2 and has no down.
    assert back.pending_migrations == ('2 (down: none, refused): index',)
    assert back.summary.startswith('refused: migration 2 (index) cannot be undone')
    assert 'the last refresh here was down' in back.disruption


def test_the_health_gate_is_journaled(fake: FakeSnapd, hook_tools: HookTools):
    @dataclasses.dataclass(eq=False)
    class Sick(AppRefresh):
        def workload_healthy(self) -> bool:
            return False

    make(Sick).post_snap_refresh(RecordingRefresh(fake, allowed=False).as_machines())

    (entry,) = Journal().timeline()
    assert (entry.stage, entry.result) == ('health', 'failed')
    assert entry.error == 'unhealthy: App not healthy'


def test_a_journal_that_cannot_be_read_does_not_break_the_preview(
    fake: FakeSnapd, state_dir: pathlib.Path, caplog: pytest.LogCaptureFixture
):
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / 'journal.jsonl').mkdir()  # the preview reads the last downtime from it

    preview = make().preview(revision_to='x2')

    assert preview.step == 'snap-refresh'
    assert preview.disruption == f'every service of {SNAP} is down from the stop until the start'
    assert 'Is a directory' in caplog.text
