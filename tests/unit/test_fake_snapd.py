# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""FakeSnapd, driven through snap-http's real code over its unix socket."""

from __future__ import annotations

import gc
import http.client
import json
import os
import socket
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import pytest
import snap_http
import snap_http.http

from charm_upgrade.testing import FakeSnapd, RecordedRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def snapd() -> Iterator[FakeSnapd]:
    with FakeSnapd() as fake:
        yield fake


def api_error(call: Callable[[], object]) -> dict[str, Any]:
    """The JSON body of the SnapdHttpException that ``call`` raises."""
    with pytest.raises(snap_http.SnapdHttpException) as excinfo:
        call()
    body = excinfo.value.json
    assert body is not None
    return body


def call_muted(call: Callable[[], object]) -> object:
    """Return what ``call`` returns, or the type of the exception it raises.

    snap-http leaks its socket when a request fails: mute that ResourceWarning.
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        try:
            return call()
        except Exception as e:
            return type(e)
        finally:
            gc.collect()


def raw_request(
    path: str, target: str, method: str = 'GET', body: bytes = b''
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """Send one request with exactly ``target`` in the request line."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        head = f'{method} {target} HTTP/1.1\r\nHost: localhost\r\n'
        if body:
            head += f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n'
        sock.sendall(head.encode() + b'\r\n' + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        data = response.read()
        response.close()
        return response.status, response, data


def wait_change(change_id: str, timeout: float = 2.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        result: dict[str, Any] = snap_http.check_change(change_id).result
        if result['ready'] or time.monotonic() > deadline:
            return result
        time.sleep(0.005)


def change_of(response: snap_http.SnapdResponse) -> str:
    assert response.type == 'async'
    assert response.status_code == 202
    assert response.status == 'Accepted'
    assert response.result is None
    assert response.change is not None
    return response.change


# Envelopes and reads ---------------------------------------------------------------------


def test_list_snaps_sync_envelope_and_filter(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='7', version='2.1', channel='latest/stable')
    snapd.add_snap('bar', services=['a', 'b'], active=False)

    response = snap_http.list(snaps=['foo', 'absent'])

    assert (response.type, response.status_code, response.status) == ('sync', 200, 'OK')
    [foo] = response.result
    assert foo['name'] == 'foo'
    assert foo['revision'] == '7'
    assert foo['version'] == '2.1'
    assert foo['tracking-channel'] == 'latest/stable'
    assert snap_http.list(snaps=['absent']).result == []
    assert [s['name'] for s in snap_http.list().result] == ['bar', 'foo']
    assert [s['name'] for s in snap_http.list_all().result] == ['bar', 'foo']


def test_get_one_snap_and_snap_not_found(snapd: FakeSnapd):
    snapd.add_snap('foo', services=['web'], enabled=True, active=False)

    info = snap_http.http.get('/snaps/foo').result

    assert isinstance(info, dict)
    assert info['revision'] == 'x1'
    assert 'tracking-channel' not in info
    assert info['apps'] == [{'snap': 'foo', 'name': 'web', 'daemon': 'simple', 'enabled': True}]
    assert api_error(lambda: snap_http.http.get('/snaps/nope')) == {
        'type': 'error',
        'status-code': 404,
        'status': 'Not Found',
        'result': {'message': 'snap not installed', 'kind': 'snap-not-found', 'value': 'nope'},
    }


def test_absolute_and_origin_form_targets(snapd: FakeSnapd):
    snapd.add_snap('foo')

    status, response, data = raw_request(snapd.socket_path, '/v2/snaps?snaps=foo')
    status2, _, data2 = raw_request(snapd.socket_path, 'http://localhost/v2/snaps?snaps=foo')

    assert status == status2 == 200
    assert response.getheader('Content-Type') == 'application/json'
    assert response.getheader('Connection') == 'close'
    assert json.loads(data) == json.loads(data2)
    assert json.loads(data)['result'][0]['name'] == 'foo'
    assert [(r.path, r.query) for r in snapd.requests] == [('/v2/snaps', {'snaps': 'foo'})] * 2


def test_unknown_endpoint_and_method(snapd: FakeSnapd):
    status, _, data = raw_request(snapd.socket_path, '/v2/nothing')
    assert status == 404
    assert json.loads(data)['result'] == {'message': 'not found'}
    status, _, data = raw_request(snapd.socket_path, '/v2/changes/1', method='POST', body=b'{}')
    assert status == 405
    assert json.loads(data)['status'] == 'Method Not Allowed'


def test_get_apps_omits_false_flags_and_filters_names(snapd: FakeSnapd):
    snapd.add_snap('one', services=['a', 'b'])
    snapd.add_snap('two', services=['c', 'd'])
    snapd.set_service_state('one', 'b', enabled=False, active=False)
    snapd.set_service_state('two', 'd', enabled=False, active=True)

    apps = snap_http.get_apps(['one', 'two.d'], services_only=True).result

    assert apps == [
        {'snap': 'one', 'name': 'a', 'daemon': 'simple', 'enabled': True, 'active': True},
        {'snap': 'one', 'name': 'b', 'daemon': 'simple'},
        {'snap': 'two', 'name': 'd', 'daemon': 'simple', 'active': True},
    ]
    assert snapd.requests[-1].query == {'select': 'service', 'names': 'one,two.d'}


def test_get_apps_errors(snapd: FakeSnapd):
    snapd.add_snap('foo')

    missing_snap = api_error(lambda: snap_http.get_apps(['nope'], services_only=True))
    missing_app = api_error(lambda: snap_http.get_apps(['foo.svc'], services_only=True))

    assert missing_snap['status-code'] == 404
    assert missing_snap['result']['kind'] == 'snap-not-found'
    assert missing_app == {
        'type': 'error',
        'status-code': 404,
        'status': 'Not Found',
        'result': {'message': 'snap "foo" has no service "svc"', 'kind': 'app-not-found'},
    }


def test_changes_endpoints(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    snapd.add_snap('bar')
    first = change_of(snap_http.refresh('foo', revision='2'))
    second = change_of(snap_http.stop_all(['bar']))

    def ids(select: str, snap: str = '') -> list[str]:
        params = {'select': select, **({'for': snap} if snap else {})}
        result = snap_http.http.get('/changes', query_params=params).result
        return [c['id'] for c in result]

    assert int(second) > int(first)
    assert ids('in-progress') == [first, second]
    assert ids('in-progress', 'bar') == [second]
    assert ids('ready') == []
    snapd.wait_idle()
    assert ids('ready') == ids('all') == [first, second]
    assert ids('in-progress') == []
    assert [c['id'] for c in snap_http.check_changes().result] == [first, second]
    assert api_error(lambda: snap_http.check_change('999')) == {
        'type': 'error',
        'status-code': 404,
        'status': 'Not Found',
        'result': {'message': 'cannot find change with id "999"'},
    }


# Refresh ------------------------------------------------------------------------------


def test_refresh_change_progresses_and_new_revision_shows_before_ready():
    with FakeSnapd(change_duration=0.3) as snapd:
        snapd.add_snap('foo', revision='1', revisions=['2'], services=['a', 'b'])
        change_id = change_of(snap_http.refresh('foo', revision='2'))
        seen: list[tuple[str, bool, str, bool]] = []
        while True:
            change: dict[str, Any] = snap_http.check_change(change_id).result
            [info] = snap_http.list(snaps=['foo']).result
            running = any(active for _, active in snapd.service_state('foo').values())
            seen.append((change['status'], change['ready'], info['revision'], running))
            if change['ready']:
                break
            time.sleep(0.01)

    statuses = [s[0] for s in seen]
    assert statuses[0] in ('Do', 'Doing')
    assert statuses[-1] == 'Done'
    assert set(statuses[:-1]) <= {'Do', 'Doing'}
    assert [s[1] for s in seen[:-1]] == [False] * (len(seen) - 1)
    assert ('Doing', False, '2', False) in seen  # new revision, services down, not ready
    assert seen[-1] == ('Done', True, '2', True)
    assert 'err' not in change
    assert 'ready-time' in change
    assert change['spawn-time'].endswith('Z')
    assert [t['status'] for t in change['tasks']] == ['Done'] * 4


def test_refresh_starts_every_enabled_service_and_reports_revisions_as_strings(
    snapd: FakeSnapd,
):
    snapd.add_snap('foo', revision='1', revisions=['2'], services=['on', 'stopped', 'off'])
    snapd.set_service_state('foo', 'stopped', enabled=True, active=False)
    snapd.set_service_state('foo', 'off', enabled=False, active=False)

    result = wait_change(change_of(snap_http.refresh('foo', revision=2)))

    assert result['status'] == 'Done'
    assert snapd.revision('foo') == '2'
    assert snap_http.list(snaps=['foo']).result[0]['revision'] == '2'
    assert snapd.service_state('foo') == {
        'off': (False, False),
        'on': (True, True),
        'stopped': (True, True),
    }


def test_refresh_to_the_installed_revision_still_restarts_services():
    with FakeSnapd(change_duration=0.2) as snapd:
        snapd.add_snap('foo', revision='5')
        change_id = change_of(snap_http.refresh('foo', revision='5'))
        time.sleep(0.1)
        during = snapd.service_state('foo')
        snapd.wait_idle()
    assert during == {'daemon': (True, False)}
    assert snapd.service_state('foo') == {'daemon': (True, True)}
    [change] = [c for c in snapd.changes() if c['id'] == change_id]
    assert (change['kind'], change['status']) == ('refresh-snap', 'Done')


def test_refresh_errors(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])

    absent = api_error(lambda: snap_http.refresh('nope', revision='2'))
    unknown = api_error(lambda: snap_http.refresh('foo', revision='3'))
    malformed = api_error(lambda: snap_http.refresh('foo', revision='abc'))

    assert absent['status-code'] == 400
    assert absent['result'] == {
        'message': 'snap "nope" is not installed',
        'kind': 'snap-not-installed',
        'value': 'nope',
    }
    assert (unknown['status-code'], unknown['status']) == (404, 'Not Found')
    assert unknown['result']['kind'] == 'snap-revision-not-available'
    assert malformed['status-code'] == 400
    assert 'invalid snap revision' in malformed['result']['message']
    assert 'kind' not in malformed['result']
    assert snapd.changes() == []
    assert snapd.revision('foo') == '1'


def test_refresh_without_revision_goes_to_the_latest(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['3', '12'])
    wait_change(change_of(snap_http.refresh('foo')))
    assert snapd.revision('foo') == '12'
    assert api_error(lambda: snap_http.refresh('foo'))['result']['kind'] == (
        'snap-no-update-available'
    )


def test_fail_next_refresh_undoes(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'], services=['a', 'b'])
    snapd.set_service_state('foo', 'b', enabled=False, active=True)
    snapd.fail_next_refresh()

    result = wait_change(change_of(snap_http.refresh('foo', revision='2')))

    assert (result['status'], result['ready']) == ('Error', True)
    assert result['err'] == (
        'cannot perform the following tasks:\n'
        '- Run post-refresh hook of "foo" snap if present (run hook "post-refresh": exit status 1)'
    )
    assert snapd.revision('foo') == '1'
    assert snapd.service_state('foo') == {'a': (True, True), 'b': (False, True)}
    # Only the next refresh fails.
    assert wait_change(change_of(snap_http.refresh('foo', revision='2')))['status'] == 'Done'
    assert snapd.revision('foo') == '2'


def test_fail_next_refresh_without_undo_keeps_the_new_revision(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    snapd.fail_next_refresh(undo=False, error='boom', duration=0.1)

    result = wait_change(change_of(snap_http.refresh('foo', revision='2')))

    assert result['status'] == 'Error'
    assert result['err'].endswith('(boom)')
    assert snapd.revision('foo') == '2'
    assert snapd.service_state('foo') == {'daemon': (True, False)}
    [duration] = snapd.change_durations()
    assert 0.09 <= duration < 0.5


def test_revert_goes_back_to_the_previous_revision(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    assert api_error(lambda: snap_http.revert('foo'))['status-code'] == 400
    wait_change(change_of(snap_http.refresh('foo', revision='2')))

    result = wait_change(change_of(snap_http.revert('foo')))

    assert (result['kind'], result['status']) == ('revert-snap', 'Done')
    assert snapd.revision('foo') == '1'


def test_hold_and_unhold_are_recorded(snapd: FakeSnapd):
    snapd.add_snap('foo')

    hold = wait_change(change_of(snap_http.hold('foo')))
    held = snap_http.list(snaps=['foo']).result[0]
    unhold = wait_change(change_of(snap_http.unhold('foo')))

    assert (hold['kind'], hold['status'], unhold['kind']) == ('hold-snap', 'Done', 'unhold-snap')
    assert 'hold' in held
    assert 'hold' not in snap_http.list(snaps=['foo']).result[0]
    assert [r.body['action'] for r in snapd.requests if r.method == 'POST'] == ['hold', 'unhold']


# Services -------------------------------------------------------------------------------


def test_service_control_changes(snapd: FakeSnapd):
    snapd.add_snap('foo', services=['a', 'b'])

    stop = wait_change(change_of(snap_http.stop_all(['foo'], disable=True)))
    stopped = snapd.service_state('foo')
    start = wait_change(change_of(snap_http.start('foo.a', enable=True)))

    assert (stop['kind'], stop['status']) == ('service-control', 'Done')
    assert stopped == {'a': (False, False), 'b': (False, False)}
    assert start['status'] == 'Done'
    assert snapd.service_state('foo') == {'a': (True, True), 'b': (False, False)}
    wait_change(change_of(snap_http.restart_all(['foo.b'])))
    assert snapd.service_state('foo') == {'a': (True, True), 'b': (False, True)}


def test_service_control_is_asynchronous_and_validates_names():
    with FakeSnapd(change_duration=0.2) as snapd:
        snapd.add_snap('foo')
        change_id = change_of(snap_http.stop('foo'))
        assert snapd.service_state('foo') == {'daemon': (True, True)}
        assert wait_change(change_id)['status'] == 'Done'
        assert snapd.service_state('foo') == {'daemon': (True, False)}

        empty = api_error(lambda: snap_http.stop_all([]))
        unknown = api_error(lambda: snap_http.stop_all(['foo.nope']))

    assert empty['status-code'] == 400
    assert unknown['result']['kind'] == 'app-not-found'


# Conflicts ------------------------------------------------------------------------------

_CONFLICT_REFRESH = {
    'type': 'error',
    'status-code': 409,
    'status': 'Conflict',
    'result': {
        'message': 'snap "foo" has "refresh-snap" change in progress',
        'kind': 'snap-change-conflict',
        'value': {'snap-name': 'foo', 'change-kind': 'refresh-snap'},
    },
}


def test_writes_conflict_with_a_change_in_flight(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    snapd.add_snap('bar')
    change_id = change_of(snap_http.refresh('foo', revision='2'))

    assert api_error(lambda: snap_http.refresh('foo', revision='1')) == _CONFLICT_REFRESH
    assert api_error(lambda: snap_http.stop_all(['foo.daemon'])) == _CONFLICT_REFRESH
    other = change_of(snap_http.stop('bar'))  # another snap is free
    assert snap_http.list(snaps=['foo']).result  # reads never conflict

    wait_change(change_id)
    wait_change(other)
    wait_change(change_of(snap_http.stop('foo')))


def test_start_change_holds_the_snap(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])

    change_id = snapd.start_change('foo', kind='auto-refresh', duration=0.15)
    body = api_error(lambda: snap_http.refresh('foo', revision='2'))
    in_progress = snap_http.http.get('/changes', query_params={'for': 'foo'}).result

    assert body['status-code'] == 409
    assert body['result']['value'] == {'snap-name': 'foo', 'change-kind': 'auto-refresh'}
    assert body['result']['message'] == 'snap "foo" has "auto-refresh" change in progress'
    assert [c['id'] for c in in_progress] == [change_id]
    assert wait_change(change_id)['status'] == 'Done'
    assert wait_change(change_of(snap_http.refresh('foo', revision='2')))['status'] == 'Done'


def test_conflict_next_answers_409_without_a_change(snapd: FakeSnapd):
    snapd.add_snap('foo')
    snapd.conflict_next(2, change_kind='install')

    first = api_error(lambda: snap_http.stop('foo'))
    second = api_error(lambda: snap_http.hold('foo'))
    third = snap_http.stop('foo')

    assert first['result']['kind'] == second['result']['kind'] == 'snap-change-conflict'
    assert first['result']['value'] == {'snap-name': 'foo', 'change-kind': 'install'}
    assert [c['id'] for c in snapd.changes()] == [change_of(third)]


def test_wait_idle_times_out(snapd: FakeSnapd):
    snapd.start_change('foo', duration=0.3)
    with pytest.raises(TimeoutError, match='auto-refresh'):
        snapd.wait_idle(timeout=0.05)
    snapd.wait_idle()
    assert snapd.changes()[0]['status'] == 'Done'


# Transport faults -----------------------------------------------------------------------


def test_refuse_connections_then_recover(snapd: FakeSnapd):
    snapd.add_snap('foo')
    change_id = change_of(snap_http.stop('foo'))

    snapd.refuse_connections(0.2)
    refused_at = time.monotonic()
    assert os.path.exists(snapd.socket_path)
    assert call_muted(snap_http.list) is ConnectionRefusedError
    while (response := call_muted(lambda: snap_http.check_change(change_id))) is (
        ConnectionRefusedError
    ):
        assert time.monotonic() - refused_at < 2
        time.sleep(0.02)

    assert time.monotonic() - refused_at >= 0.19
    assert isinstance(response, snap_http.SnapdResponse)
    assert response.result['status'] == 'Done'  # changes went on meanwhile
    assert snap_http.list().result


def test_garbage_next_makes_snap_http_raise_json_error(snapd: FakeSnapd):
    snapd.add_snap('foo')
    snapd.garbage_next(2)

    with pytest.raises(json.JSONDecodeError):
        snap_http.list()
    with pytest.raises(json.JSONDecodeError):
        snap_http.stop('foo')

    assert snap_http.list().result
    assert snapd.changes() == []  # the garbled write was not acted upon
    assert [r.method for r in snapd.requests] == ['GET', 'POST', 'GET']


def test_delay_next_delays_the_answer(snapd: FakeSnapd):
    snapd.add_snap('foo')
    snapd.delay_next(0.15)
    start = time.monotonic()
    assert snap_http.list().result
    assert time.monotonic() - start >= 0.15

    snapd.delay_next(1.0)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.05)
    try:
        assert call_muted(snap_http.list) is TimeoutError
    finally:
        socket.setdefaulttimeout(previous)
    start = time.monotonic()
    assert snap_http.list().result
    assert time.monotonic() - start < 0.5


# Request log, life cycle ---------------------------------------------------------------


def test_request_log_records_in_order(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    before = time.monotonic()

    snap_http.list(snaps=['foo'])
    snap_http.refresh('foo', revision='2')
    snap_http.get_apps(['foo'], services_only=True)

    requests = snapd.requests
    assert [(r.method, r.path, r.query, r.body) for r in requests] == [
        ('GET', '/v2/snaps', {'snaps': 'foo'}, None),
        ('POST', '/v2/snaps/foo', {}, {'action': 'refresh', 'revision': '2'}),
        ('GET', '/v2/apps', {'select': 'service', 'names': 'foo'}, None),
    ]
    assert all(isinstance(r, RecordedRequest) for r in requests)
    assert before <= requests[0].time <= requests[1].time <= requests[2].time
    requests.clear()  # a copy
    assert len(snapd.requests) == 3
    snapd.clear_requests()
    assert snapd.requests == []


def test_concurrent_clients(snapd: FakeSnapd):
    snapd.add_snap('foo')
    results: list[object] = []

    def read() -> None:
        results.append(snap_http.list(snaps=['foo']).result[0]['name'])

    threads = [threading.Thread(target=read) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ['foo'] * 20


def test_context_manager_points_clients_at_the_fake_and_restores(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv('CHARM_UPGRADE_SNAPD_SOCKET', '/previous.socket')
    original = snap_http.http.SNAPD_SOCKET
    fake = FakeSnapd()

    with fake as entered:
        assert entered is fake
        assert fake.socket_path == snap_http.http.SNAPD_SOCKET
        assert os.environ['CHARM_UPGRADE_SNAPD_SOCKET'] == fake.socket_path
        assert snap_http.list().result == []

    assert original == snap_http.http.SNAPD_SOCKET
    assert os.environ['CHARM_UPGRADE_SNAPD_SOCKET'] == '/previous.socket'
    monkeypatch.delenv('CHARM_UPGRADE_SNAPD_SOCKET')
    with FakeSnapd():
        pass
    assert 'CHARM_UPGRADE_SNAPD_SOCKET' not in os.environ


def slow_request(path: str) -> object:
    try:
        return raw_request(path, '/v2/snaps')[0]
    except (OSError, http.client.HTTPException) as e:
        return type(e)


def _fake_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith('fake-snapd')]


def test_stop_is_idempotent_and_leaves_no_thread():
    fake = FakeSnapd(change_duration=5.0)
    fake.start()
    fake.start()
    fake.add_snap('foo')
    snap_http.http.SNAPD_SOCKET, original = fake.socket_path, snap_http.http.SNAPD_SOCKET
    try:
        change_of(snap_http.stop('foo'))  # in flight for 5 s
        fake.delay_next(5.0)
        outcome: list[object] = []
        slow = threading.Thread(target=lambda: outcome.append(slow_request(fake.socket_path)))
        slow.start()
        time.sleep(0.05)
        assert _fake_threads()

        start = time.monotonic()
        fake.stop()
        fake.stop()
        slow.join(timeout=2)
    finally:
        snap_http.http.SNAPD_SOCKET = original

    assert time.monotonic() - start < 1
    assert not slow.is_alive()
    assert outcome and outcome[0] != 200  # the delayed answer was never sent
    assert _fake_threads() == []
    assert not os.path.exists(fake.socket_path)
    assert not os.path.exists(os.path.dirname(fake.socket_path))
    # Started again, it serves the same state.
    with fake:
        assert snap_http.list().result[0]['name'] == 'foo'
    assert _fake_threads() == []


def test_socket_path_argument_and_length_check():
    short = FakeSnapd(f'/tmp/fsd-{os.getpid()}.socket')
    with short:
        assert os.path.exists(short.socket_path)
        assert snap_http.list().result == []
    assert not os.path.exists(short.socket_path)
    with pytest.raises(ValueError, match='too long'):
        FakeSnapd('/tmp/' + 'x' * 120)


def test_a_store_snap_installs_at_the_revision_asked() -> None:
    from charm_upgrade.snapd import Snapd

    with FakeSnapd(change_duration=0.02) as fake:
        fake.add_store_snap('shop', revisions=['10', '11'], services=['api'])
        client = Snapd()
        assert client.find_snap('shop') is None
        change = client.run(lambda: client.install('shop', revision='10'), what='install')
        assert change.kind == 'install-snap'
        assert fake.revision('shop') == '10'
        assert fake.service_state('shop') == {'api': (True, True)}
