# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The Snapd client against FakeSnapd, with snap-http's real code.

Tests run with warnings as errors: a socket that snap-http leaves open after a
refused connection or a timeout would fail them (ResourceWarning).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from charm_upgrade import SnapdError
from charm_upgrade.snapd import SOCKET_ENV, Snapd, socket_path, validate_revision
from charm_upgrade.testing import FakeSnapd

if TYPE_CHECKING:
    from collections.abc import Iterator

    from charm_upgrade.testing import RecordedRequest

SNAP = 'foo'


@pytest.fixture
def fake() -> Iterator[FakeSnapd]:
    with FakeSnapd(change_duration=0.05) as snapd:
        snapd.add_snap(SNAP, revision='1', services=('daemon', 'worker'), revisions=('2',))
        yield snapd


def client(
    *,
    request_timeout: float = 2.0,
    change_timeout: float = 5.0,
    restart_grace: float = 1.0,
    poll_interval: float = 0.02,
) -> Snapd:
    return Snapd(
        request_timeout=request_timeout,
        change_timeout=change_timeout,
        restart_grace=restart_grace,
        poll_interval=poll_interval,
    )


def posts(fake: FakeSnapd) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == 'POST']


# Reads ----------------------------------------------------------------------


def test_find_snap_and_services(fake: FakeSnapd):
    snapd = client()
    info = snapd.find_snap(SNAP)
    assert info is not None
    assert (info.name, info.revision, info.version) == (SNAP, '1', '1.0')
    assert snapd.find_snap('absent') is None
    fake.set_service_state(SNAP, 'worker', enabled=False, active=False)
    services = {s.full_name: (s.enabled, s.active) for s in snapd.services(SNAP)}
    # snapd omits enabled/active when false: they read as False, not missing.
    assert services == {f'{SNAP}.daemon': (True, True), f'{SNAP}.worker': (False, False)}


def test_changes_in_progress_are_this_snaps_only(fake: FakeSnapd):
    fake.add_snap('other')
    fake.start_change('other', kind='become-operational', duration=30)
    mine = fake.start_change(SNAP, kind='auto-refresh', duration=30)
    changes = client().changes_in_progress(SNAP)
    assert [c.id for c in changes] == [mine]
    assert fake.requests[-1].query == {'for': SNAP, 'select': 'in-progress'}


def test_the_socket_comes_from_the_environment(fake: FakeSnapd, monkeypatch: pytest.MonkeyPatch):
    assert socket_path() == fake.socket_path
    monkeypatch.delenv(SOCKET_ENV)
    assert socket_path() == '/run/snapd.socket'
    # An explicit socket wins over the environment.
    assert Snapd(socket=fake.socket_path).find_snap(SNAP) is not None


@pytest.mark.parametrize('good', ['1', '182', 'x1', 'x20'])
def test_valid_revisions(good: str):
    assert validate_revision(good) == good


@pytest.mark.parametrize('bad', [1, '', None, '0', 'abc', 'x', 'x0', '01', '1 ', '-1'])
def test_invalid_revisions(bad: object):
    with pytest.raises(ValueError, match='invalid snap revision'):
        validate_revision(bad)


# Time limits ----------------------------------------------------------------


def test_every_request_is_bounded_in_time(fake: FakeSnapd):
    fake.delay_next(1.5)
    began = time.monotonic()
    with pytest.raises(SnapdError) as caught:
        client(request_timeout=0.2).find_snap(SNAP)
    assert time.monotonic() - began < 1.0
    error = caught.value
    assert error.kind == 'timeout'
    assert error.status_code is None
    assert f"snap '{SNAP}'" in error.message
    assert 'systemctl status snapd' in error.message


def test_a_timed_out_read_is_not_retried(fake: FakeSnapd):
    fake.delay_next(1.0)
    with pytest.raises(SnapdError, match='did not answer'):
        client(request_timeout=0.2, restart_grace=3.0).find_snap(SNAP)
    assert len(fake.requests) == 1


def test_wait_change_is_bounded_and_names_the_change(fake: FakeSnapd):
    fake.set_change_duration(2.0)
    snapd = client()
    change_id = snapd.stop([SNAP], disable=False)
    began = time.monotonic()
    with pytest.raises(SnapdError) as caught:
        snapd.wait_change(change_id, timeout=0.2)
    assert time.monotonic() - began < 1.0
    assert caught.value.kind == 'timeout'
    assert caught.value.change_id == change_id
    assert f'snap tasks {change_id}' in caught.value.message


# 409 snap-change-conflict -----------------------------------------------------


def test_a_409_waits_for_the_snaps_change_then_asks_again(fake: FakeSnapd):
    blocking = fake.start_change(SNAP, kind='auto-refresh', duration=0.3)
    snapd = client()
    began = time.monotonic()
    change_id = snapd.stop([SNAP], disable=True)
    assert time.monotonic() - began >= 0.25
    first, second = posts(fake)
    assert first.body == second.body == {'action': 'stop', 'names': [SNAP], 'disable': True}
    between = fake.requests[fake.requests.index(first) + 1 : fake.requests.index(second)]
    assert between[0].path == '/v2/changes'  # this snap's changes in progress
    assert any(r.path == f'/v2/changes/{blocking}' for r in between)
    assert snapd.wait_change(change_id).status == 'Done'
    assert fake.service_state(SNAP) == {'daemon': (False, False), 'worker': (False, False)}


def test_a_bare_409_is_asked_again(fake: FakeSnapd):
    fake.conflict_next(1)
    snapd = client()
    snapd.wait_change(snapd.refresh(SNAP, '2'))
    assert len(posts(fake)) == 2
    assert fake.revision(SNAP) == '2'


def test_a_409_that_outlasts_the_bound_is_raised(fake: FakeSnapd):
    blocking = fake.start_change(SNAP, kind='auto-refresh', duration=30)
    began = time.monotonic()
    with pytest.raises(SnapdError) as caught:
        client(change_timeout=0.3).refresh(SNAP, '2')
    assert time.monotonic() - began < 2.0
    # The wait for the conflicting change ran out: it names that change.
    assert caught.value.kind == 'timeout'
    assert caught.value.change_id == blocking
    assert fake.revision(SNAP) == '1'


# snapd restarting -------------------------------------------------------------


def test_reads_survive_a_refusal_window(fake: FakeSnapd):
    fake.refuse_connections(0.5)
    began = time.monotonic()
    info = client(restart_grace=3.0).find_snap(SNAP)
    assert info is not None
    assert info.revision == '1'
    assert time.monotonic() - began >= 0.3


def test_reads_give_up_after_the_grace(fake: FakeSnapd):
    fake.refuse_connections(3.0)
    began = time.monotonic()
    with pytest.raises(SnapdError) as caught:
        client(restart_grace=0.3).find_snap(SNAP)
    assert time.monotonic() - began < 2.0
    assert caught.value.kind == 'connection-error'


def test_writes_are_not_retried_on_connection_errors(fake: FakeSnapd):
    fake.refuse_connections(0.4)
    with pytest.raises(SnapdError) as caught:
        client(restart_grace=3.0).stop([SNAP], disable=True)
    error = caught.value
    assert error.kind == 'connection-error'
    assert f'stop of {SNAP}' in error.message
    assert 'check that snapd is installed and running' in error.message
    time.sleep(0.6)  # snapd is back: still nothing was sent again
    assert client().find_snap(SNAP) is not None
    assert posts(fake) == []
    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (True, True)}


def test_no_socket_at_all_is_a_connection_error():
    snapd = Snapd(socket='/tmp/charm-upgrade-no-such-dir/snapd.socket', restart_grace=0.2)
    with pytest.raises(SnapdError) as caught:
        snapd.find_snap(SNAP)
    assert caught.value.kind == 'connection-error'
    assert '/tmp/charm-upgrade-no-such-dir/snapd.socket' in caught.value.message


# Error mapping ----------------------------------------------------------------


def test_snap_not_installed_names_the_snap_and_what_to_do(fake: FakeSnapd):
    with pytest.raises(SnapdError) as caught:
        client().snap('absent')
    error = caught.value
    assert (error.kind, error.status_code, error.value) == ('snap-not-found', 404, 'absent')
    assert "'absent'" in error.message
    assert 'install it' in error.message


def test_api_errors_carry_kind_status_and_the_request(fake: FakeSnapd):
    snapd = client()
    with pytest.raises(SnapdError) as caught:
        snapd.refresh(SNAP, '77')
    error = caught.value
    assert (error.kind, error.status_code) == ('snap-revision-not-available', 404)
    assert f"refresh of snap '{SNAP}' to revision 77" in error.message
    assert error.change_id is None

    with pytest.raises(SnapdError) as caught:
        snapd.refresh('absent', '2')
    assert (caught.value.kind, caught.value.status_code) == ('snap-not-installed', 400)
    assert "'absent'" in caught.value.message

    with pytest.raises(SnapdError) as caught:
        snapd.change('999')
    assert (caught.value.kind, caught.value.status_code) == ('error', 404)
    assert 'change 999' in caught.value.message


def test_a_409_that_is_not_waited_for_keeps_its_kind(fake: FakeSnapd):
    # Reads are never 409; a write whose wait runs out reports the conflict.
    fake.conflict_next(50)
    with pytest.raises(SnapdError) as caught:
        client(change_timeout=0.2).stop([SNAP], disable=False)
    assert (caught.value.kind, caught.value.status_code) == ('snap-change-conflict', 409)
    assert SNAP in caught.value.message


def test_a_failed_change_carries_its_id(fake: FakeSnapd):
    fake.fail_next_refresh(undo=True)
    snapd = client()
    with pytest.raises(SnapdError) as caught:
        snapd.run(lambda: snapd.refresh(SNAP, '2'), what=f'refresh of {SNAP}')
    error = caught.value
    (failed,) = [c for c in fake.changes() if c['kind'] == 'refresh-snap']
    assert (error.kind, error.change_id) == ('change-failed', failed['id'])
    assert 'ended Error' in error.message
    assert 'post-refresh' in error.message


def test_garbage_is_a_bad_response(fake: FakeSnapd):
    fake.garbage_next(1)
    with pytest.raises(SnapdError) as caught:
        client().find_snap(SNAP)
    assert caught.value.kind == 'bad-response'
    assert f"snap '{SNAP}'" in caught.value.message
    fake.garbage_next(1)
    with pytest.raises(SnapdError) as caught:
        client().stop([SNAP], disable=True)
    assert caught.value.kind == 'bad-response'
    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (True, True)}


def test_names_of_two_snaps_are_refused_before_any_request(fake: FakeSnapd):
    with pytest.raises(ValueError, match='more than one snap'):
        client().stop([f'{SNAP}.daemon', 'other.daemon'], disable=True)
    with pytest.raises(ValueError, match='no snap services'):
        client().start([], enable=True)
    assert fake.requests == []
