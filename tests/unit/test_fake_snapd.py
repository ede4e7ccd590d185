# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""FakeSnapd, driven over its unix socket by a bare HTTP client (tests/raw_snapd.py).

What the fake shares with the real snapd is held by the contract test
(tests/snapd_contract.py); this file covers the rest: its faults, its store,
its life cycle and its request log.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from raw_snapd import raw, result, wait_ready

from charm_upgrade.testing import FakeSnapd, RecordedRequest

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def snapd() -> Iterator[FakeSnapd]:
    with FakeSnapd() as fake:
        yield fake


def post(fake: FakeSnapd, target: str, body: Any, method: str = 'POST') -> tuple[int, Any]:
    status, envelope = raw(fake.socket_path, method, target, body=body)
    return status, envelope


def change_of(fake: FakeSnapd, target: str, body: Any, method: str = 'POST') -> str:
    status, envelope = post(fake, target, body, method)
    assert (status, envelope['type'], envelope['status']) == (202, 'async', 'Accepted'), envelope
    assert envelope['result'] is None
    return envelope['change']


def error_of(fake: FakeSnapd, target: str, body: Any, method: str = 'POST') -> dict[str, Any]:
    status, envelope = post(fake, target, body, method)
    assert status >= 400, envelope
    assert envelope['type'] == 'error'
    assert envelope['status-code'] == status
    return envelope


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


# Envelopes and reads ---------------------------------------------------------------------


def test_list_snaps_sync_envelope_and_filter(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='7', version='2.1', channel='latest/stable')
    snapd.add_snap('bar', services=['a', 'b'], active=False)

    status, envelope = raw(snapd.socket_path, 'GET', '/v2/snaps', query={'snaps': 'foo,absent'})

    assert (status, envelope['type'], envelope['status-code'], envelope['status']) == (
        200,
        'sync',
        200,
        'OK',
    )
    assert envelope['sources'] == ['local']
    [foo] = envelope['result']
    assert (foo['name'], foo['revision'], foo['version']) == ('foo', '7', '2.1')
    assert foo['channel'] == foo['tracking-channel'] == 'latest/stable'
    assert result(snapd.socket_path, '/v2/snaps', snaps='absent') == []
    assert [s['name'] for s in result(snapd.socket_path, '/v2/snaps')] == ['bar', 'foo']


def test_get_one_snap_and_snap_not_found(snapd: FakeSnapd):
    snapd.add_snap('foo', services=['web'], enabled=True, active=False)

    info = result(snapd.socket_path, '/v2/snaps/foo')

    assert (info['revision'], info['channel'], info['id']) == ('x1', '', '')
    assert 'tracking-channel' not in info
    assert info['apps'] == [
        {
            'snap': 'foo',
            'name': 'web',
            'daemon': 'simple',
            'daemon-scope': 'system',
            'enabled': True,
        }
    ]
    assert raw(snapd.socket_path, 'GET', '/v2/snaps/nope') == (
        404,
        {
            'type': 'error',
            'status-code': 404,
            'status': 'Not Found',
            'result': {'message': 'snap not installed', 'kind': 'snap-not-found', 'value': 'nope'},
        },
    )


def test_absolute_and_origin_form_targets(snapd: FakeSnapd):
    snapd.add_snap('foo')

    status, response, data = raw_request(snapd.socket_path, '/v2/snaps?snaps=foo')
    status2, _, data2 = raw_request(snapd.socket_path, 'http://localhost/v2/snaps?snaps=foo')

    assert status == status2 == 200
    assert response.getheader('Content-Type') == 'application/json'
    assert response.getheader('Connection') == 'close'
    assert json.loads(data) == json.loads(data2)
    assert [(r.path, r.query) for r in snapd.requests] == [('/v2/snaps', {'snaps': 'foo'})] * 2


def test_unknown_endpoint_and_method(snapd: FakeSnapd):
    status, _, data = raw_request(snapd.socket_path, '/v2/nothing')
    assert status == 404
    assert json.loads(data)['result'] == {'message': 'not found'}
    status, _, data = raw_request(snapd.socket_path, '/v2/changes/1', method='POST', body=b'{}')
    assert status == 405
    assert json.loads(data)['status'] == 'Method Not Allowed'


def test_system_info_names_the_version():
    for version in ('2.68', '2.57.6'):
        with FakeSnapd(version=version) as fake:
            assert result(fake.socket_path, '/v2/system-info')['version'] == version


def test_get_apps_omits_false_flags_and_filters_names(snapd: FakeSnapd):
    snapd.add_snap('one', services=['a', 'b'])
    snapd.add_snap('two', services=['c', 'd'])
    snapd.set_service_state('one', 'b', enabled=False, active=False)
    snapd.set_service_state('two', 'd', enabled=False, active=True)

    apps = result(snapd.socket_path, '/v2/apps', select='service', names='one,two.d')

    common = {'daemon': 'simple', 'daemon-scope': 'system'}
    assert apps == [
        {'snap': 'one', 'name': 'a', **common, 'enabled': True, 'active': True},
        {'snap': 'one', 'name': 'b', **common},
        {'snap': 'two', 'name': 'd', **common, 'active': True},
    ]
    assert snapd.requests[-1].query == {'select': 'service', 'names': 'one,two.d'}


def test_changes_endpoints(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    snapd.add_snap('bar')
    first = change_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '2'})
    second = change_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['bar']})

    def ids(select: str, snap: str = '') -> list[str]:
        query = {'select': select, **({'for': snap} if snap else {})}
        return [c['id'] for c in result(snapd.socket_path, '/v2/changes', **query)]

    assert int(second) > int(first)
    assert ids('in-progress') == [first, second]
    assert ids('in-progress', 'bar') == [second]
    assert ids('ready') == []
    snapd.wait_idle()
    assert ids('ready') == ids('all') == [first, second]
    assert ids('in-progress') == []
    assert error_of(snapd, '/v2/changes/999', None, 'GET')['result'] == {
        'message': 'cannot find change with id "999"'
    }


# Refresh ------------------------------------------------------------------------------


def test_refresh_change_progresses_and_new_revision_shows_before_ready():
    with FakeSnapd(change_duration=0.3) as snapd:
        snapd.add_snap('foo', revision='1', revisions=['2'], services=['a', 'b'])
        change_id = change_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '2'})
        seen: list[tuple[str, bool, str, bool]] = []
        while True:
            change: dict[str, Any] = result(snapd.socket_path, f'/v2/changes/{change_id}')
            [info] = result(snapd.socket_path, '/v2/snaps', snaps='foo')
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


def test_refresh_starts_every_enabled_service_and_takes_revisions_as_numbers(
    snapd: FakeSnapd,
):
    snapd.add_snap('foo', revision='1', revisions=['2'], services=['on', 'stopped', 'off'])
    snapd.set_service_state('foo', 'stopped', enabled=True, active=False)
    snapd.set_service_state('foo', 'off', enabled=False, active=False)

    change = wait_ready(
        snapd.socket_path, change_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': 2})
    )

    assert change['status'] == 'Done'
    assert result(snapd.socket_path, '/v2/snaps', snaps='foo')[0]['revision'] == '2'
    assert snapd.service_state('foo') == {
        'off': (False, False),
        'on': (True, True),
        'stopped': (True, True),
    }


def test_refresh_to_the_installed_revision_still_restarts_services():
    with FakeSnapd(change_duration=0.2) as snapd:
        snapd.add_snap('foo', revision='5')
        change_id = change_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '5'})
        time.sleep(0.1)
        during = snapd.service_state('foo')
        snapd.wait_idle()
    assert during == {'daemon': (True, False)}
    assert snapd.service_state('foo') == {'daemon': (True, True)}
    [change] = [c for c in snapd.changes() if c['id'] == change_id]
    assert (change['kind'], change['status']) == ('refresh-snap', 'Done')


def test_refresh_errors_of_a_store_snap(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])

    unknown = error_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '3'})
    malformed = error_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': 'abc'})

    assert (unknown['status-code'], unknown['status']) == (404, 'Not Found')
    assert unknown['result']['kind'] == 'snap-revision-not-available'
    assert malformed['status-code'] == 400
    assert 'invalid snap revision' in malformed['result']['message']
    assert 'kind' not in malformed['result']
    assert snapd.changes() == []
    assert snapd.revision('foo') == '1'


def test_refresh_without_revision_goes_to_the_latest(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['3', '12'])
    wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', {'action': 'refresh'}))
    assert snapd.revision('foo') == '12'
    assert error_of(snapd, '/v2/snaps/foo', {'action': 'refresh'})['result']['kind'] == (
        'snap-no-update-available'
    )


def test_a_refresh_to_a_channel_follows_it():
    with FakeSnapd(change_duration=0.01) as snapd:
        snapd.add_store_snap('foo', revisions=['1', '2'], channels={'stable': '1', 'edge': '2'})
        wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', {'action': 'install'}))
        assert (snapd.revision('foo'), result(snapd.socket_path, '/v2/snaps/foo')['channel']) == (
            '1',
            'latest/stable',
        )
        body = {'action': 'refresh', 'channel': 'edge'}
        wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', body))
        info = result(snapd.socket_path, '/v2/snaps/foo')
    assert (info['revision'], info['tracking-channel']) == ('2', 'latest/edge')


def test_fail_next_refresh_undoes(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'], services=['a', 'b'])
    snapd.set_service_state('foo', 'b', enabled=False, active=True)
    snapd.fail_next_refresh()
    refresh = {'action': 'refresh', 'revision': '2'}

    change = wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', refresh))

    assert (change['status'], change['ready']) == ('Error', True)
    assert change['err'] == (
        'cannot perform the following tasks:\n'
        '- Run post-refresh hook of "foo" snap if present (run hook "post-refresh": exit status 1)'
    )
    assert snapd.revision('foo') == '1'
    assert snapd.service_state('foo') == {'a': (True, True), 'b': (False, True)}
    # Only the next refresh fails.
    again = wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', refresh))
    assert again['status'] == 'Done'
    assert snapd.revision('foo') == '2'


def test_fail_next_refresh_without_undo_keeps_the_new_revision(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    snapd.fail_next_refresh(undo=False, error='boom', duration=0.1)
    refresh = {'action': 'refresh', 'revision': '2'}

    change = wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', refresh))

    assert change['status'] == 'Error'
    assert change['err'].endswith('(boom)')
    assert snapd.revision('foo') == '2'
    assert snapd.service_state('foo') == {'daemon': (True, False)}
    [duration] = snapd.change_durations()
    assert 0.09 <= duration < 0.5


def test_revert_goes_back_to_the_previous_revision(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    assert error_of(snapd, '/v2/snaps/foo', {'action': 'revert'})['status-code'] == 400
    refresh = {'action': 'refresh', 'revision': '2'}
    wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', refresh))

    change = wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', {'action': 'revert'}))

    assert (change['kind'], change['status']) == ('revert-snap', 'Done')
    assert snapd.revision('foo') == '1'


# Store, holds, configuration, interfaces, files -------------------------------------------


def test_a_store_snap_installs_at_the_revision_asked():
    with FakeSnapd(change_duration=0.02) as fake:
        fake.add_store_snap('shop', revisions=['10', '11'], services=['api'])
        assert result(fake.socket_path, '/v2/snaps', snaps='shop') == []
        body = {'action': 'install', 'revision': '10'}
        change = wait_ready(fake.socket_path, change_of(fake, '/v2/snaps/shop', body))
        assert change['kind'] == 'install-snap'
        assert fake.revision('shop') == '10'
        assert fake.service_state('shop') == {'api': (True, True)}
        missing = error_of(fake, '/v2/snaps/nowhere', {'action': 'install'})
    assert (missing['status-code'], missing['result']['kind']) == (404, 'snap-not-found')


def test_hold_until_a_time_then_unhold(snapd: FakeSnapd):
    snapd.add_snap('foo')
    body = {'action': 'hold', 'time': '2030-01-01T00:00:00Z', 'hold-level': 'auto-refresh'}
    hold = wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', body))
    assert (hold['kind'], hold['summary']) == ('hold-snap', 'Hold auto-refreshes for "foo"')
    assert snapd.hold('foo') == '2030-01-01T00:00:00Z'
    unhold = wait_ready(snapd.socket_path, change_of(snapd, '/v2/snaps/foo', {'action': 'unhold'}))
    assert unhold['kind'] == 'unhold-snap'
    assert snapd.hold('foo') == ''
    assert 'hold' not in result(snapd.socket_path, '/v2/snaps/foo')


def test_snapd_2_57_knows_no_hold():
    with FakeSnapd(version='2.57') as fake:
        fake.add_snap('foo')
        for action in ('hold', 'unhold'):
            body = {'action': action, 'time': 'forever', 'hold-level': 'general'}
            assert error_of(fake, '/v2/snaps/foo', body)['result'] == {
                'message': f'unknown action {action}'
            }
        absent = error_of(fake, '/v2/snaps/absent', {'action': 'refresh'})
    assert absent['result']['kind'] == 'snap-not-installed'  # 2.68 sends no kind


def test_configuration_is_kept_per_snap(snapd: FakeSnapd):
    snapd.add_snap('foo')
    conf = '/v2/snaps/foo/conf'
    wait_ready(snapd.socket_path, change_of(snapd, conf, {'a.b': 1, 'c': [1, 2]}, 'PUT'))
    assert snapd.conf('foo') == {'a': {'b': 1}, 'c': [1, 2]}
    wait_ready(snapd.socket_path, change_of(snapd, conf, {'a.b': None, 'x.y': None}, 'PUT'))
    assert snapd.conf('foo') == {'a': {}, 'c': [1, 2]}
    assert result(snapd.socket_path, conf, keys='c') == {'c': [1, 2]}


def test_connections_list_only_the_snaps_asked(snapd: FakeSnapd):
    snapd.add_snap('foo', plugs=['network-observe', 'log-observe'])
    snapd.add_snap('bar', plugs=['network-observe'])
    for snap, plug in (('foo', 'log-observe'), ('bar', 'network-observe')):
        body = {'action': 'connect', 'plugs': [{'snap': snap, 'plug': plug}], 'slots': [{}]}
        wait_ready(snapd.socket_path, change_of(snapd, '/v2/interfaces', body))
    assert snapd.connections() == [
        ('bar:network-observe', 'snapd:network-observe'),
        ('foo:log-observe', 'snapd:log-observe'),
    ]
    established = result(snapd.socket_path, '/v2/connections', snap='foo')['established']
    assert [c['plug'] for c in established] == [{'snap': 'foo', 'plug': 'log-observe'}]


def test_sideload_installs_a_new_snap_from_a_fake_file(snapd: FakeSnapd, tmp_path: pathlib.Path):
    path = tmp_path / 'new.snap'
    FakeSnapd.write_snap_file(path, 'new', version='0.1', services=['api'], plugs=['home'])
    status, envelope = raw(
        snapd.socket_path,
        'POST',
        '/v2/snaps',
        form={'dangerous': 'true'},
        file=('new.snap', path.read_bytes()),
    )
    assert status == 202, envelope
    change = wait_ready(snapd.socket_path, envelope['change'])
    assert (change['kind'], change['summary']) == (
        'install-snap',
        'Install "new" snap from file "new.snap"',
    )
    info = result(snapd.socket_path, '/v2/snaps/new')
    assert (info['revision'], info['version']) == ('x1', '0.1')
    assert snapd.service_state('new') == {'api': (True, True)}
    assert snapd.requests[0].body == {'dangerous': 'true', 'snap': 'new.snap'}


def test_sideload_refuses_what_snapd_would(snapd: FakeSnapd, tmp_path: pathlib.Path):
    path = tmp_path / 'tool.snap'
    FakeSnapd.write_snap_file(path, 'tool', confinement='classic')
    socket_path = snapd.socket_path
    status, envelope = raw(socket_path, 'POST', '/v2/snaps', form={'dangerous': 'true'})
    assert (status, envelope['result']['message']) == (
        400,
        'cannot find "snap" file field in provided multipart/form-data payload',
    )
    file = ('tool.snap', path.read_bytes())
    status, envelope = raw(socket_path, 'POST', '/v2/snaps', form={'dangerous': 'true'}, file=file)
    assert (status, envelope['result']['kind']) == (400, 'snap-needs-classic')
    form = {'dangerous': 'true', 'classic': 'true'}
    status, envelope = raw(socket_path, 'POST', '/v2/snaps', form=form, file=file)
    assert status == 202
    status, envelope = raw(
        socket_path, 'POST', '/v2/snaps', form={'dangerous': 'true'}, file=('x.snap', b'hsqs...')
    )
    assert status == 400
    assert envelope['result']['message'].startswith('cannot read snap file')


# Services -------------------------------------------------------------------------------


def test_service_control_changes(snapd: FakeSnapd):
    snapd.add_snap('foo', services=['a', 'b'])
    path = snapd.socket_path

    stop = wait_ready(
        path, change_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['foo'], 'disable': True})
    )
    stopped = snapd.service_state('foo')
    start = wait_ready(
        path, change_of(snapd, '/v2/apps', {'action': 'start', 'names': ['foo.a'], 'enable': True})
    )

    assert (stop['kind'], stop['status']) == ('service-control', 'Done')
    assert stopped == {'a': (False, False), 'b': (False, False)}
    assert start['status'] == 'Done'
    assert snapd.service_state('foo') == {'a': (True, True), 'b': (False, False)}
    wait_ready(path, change_of(snapd, '/v2/apps', {'action': 'restart', 'names': ['foo.b']}))
    assert snapd.service_state('foo') == {'a': (True, True), 'b': (False, True)}


def test_service_control_is_asynchronous_and_validates_names():
    with FakeSnapd(change_duration=0.2) as snapd:
        snapd.add_snap('foo')
        change_id = change_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['foo']})
        assert snapd.service_state('foo') == {'daemon': (True, True)}
        assert wait_ready(snapd.socket_path, change_id)['status'] == 'Done'
        assert snapd.service_state('foo') == {'daemon': (True, False)}

        empty = error_of(snapd, '/v2/apps', {'action': 'stop', 'names': []})
        unknown = error_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['foo.nope']})

    assert empty['status-code'] == 400
    assert unknown['result']['kind'] == 'app-not-found'


# Conflicts ------------------------------------------------------------------------------

_CONFLICT_REFRESH = {
    'message': 'snap "foo" has "refresh-snap" change in progress',
    'kind': 'snap-change-conflict',
    'value': {'snap-name': 'foo', 'change-kind': 'refresh-snap'},
}


def test_writes_conflict_with_a_change_in_flight(snapd: FakeSnapd):
    # The change must outlast three requests, also on a loaded machine (the default is 0.05 s).
    snapd.set_change_duration(2.0)
    snapd.add_snap('foo', revision='1', revisions=['2'])
    snapd.add_snap('bar')
    change_id = change_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '2'})

    refresh = error_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '1'})
    stop = error_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['foo.daemon']})
    other = change_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['bar']})  # free
    assert result(snapd.socket_path, '/v2/snaps', snaps='foo')  # reads never conflict

    assert (refresh['status-code'], refresh['result']) == (409, _CONFLICT_REFRESH)
    # A service command gets snapd's plain 400 with the text only.
    assert (stop['status-code'], stop['result']) == (
        400,
        {'message': _CONFLICT_REFRESH['message']},
    )
    wait_ready(snapd.socket_path, change_id)
    wait_ready(snapd.socket_path, other)
    wait_ready(
        snapd.socket_path, change_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['foo']})
    )


def test_start_change_holds_the_snap(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])

    change_id = snapd.start_change('foo', kind='auto-refresh', duration=0.15)
    body = error_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '2'})
    in_progress = result(snapd.socket_path, '/v2/changes', **{'for': 'foo'})

    assert body['status-code'] == 409
    assert body['result']['value'] == {'snap-name': 'foo', 'change-kind': 'auto-refresh'}
    assert body['result']['message'] == 'snap "foo" has "auto-refresh" change in progress'
    assert [c['id'] for c in in_progress] == [change_id]
    assert wait_ready(snapd.socket_path, change_id)['status'] == 'Done'
    refresh = change_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '2'})
    assert wait_ready(snapd.socket_path, refresh)['status'] == 'Done'


def test_conflict_next_answers_without_a_change(snapd: FakeSnapd):
    snapd.add_snap('foo', plugs=['home'])
    snapd.conflict_next(3, change_kind='install')

    first = error_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['foo']})
    second = error_of(snapd, '/v2/snaps/foo/conf', {'a': 1}, 'PUT')
    third = error_of(
        snapd,
        '/v2/interfaces',
        {'action': 'connect', 'plugs': [{'snap': 'foo', 'plug': 'home'}], 'slots': [{}]},
    )
    fourth = change_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['foo']})

    assert first['result'] == {'message': 'snap "foo" has "install" change in progress'}
    assert second['result']['kind'] == third['result']['kind'] == 'snap-change-conflict'
    assert second['result']['value'] == {'snap-name': 'foo', 'change-kind': 'install'}
    assert [c['id'] for c in snapd.changes()] == [fourth]


def test_wait_idle_times_out(snapd: FakeSnapd):
    snapd.start_change('foo', duration=0.3)
    with pytest.raises(TimeoutError, match='auto-refresh'):
        snapd.wait_idle(timeout=0.05)
    snapd.wait_idle()
    assert snapd.changes()[0]['status'] == 'Done'


# Transport faults -----------------------------------------------------------------------


def test_refuse_connections_then_recover(snapd: FakeSnapd):
    snapd.add_snap('foo')
    change_id = change_of(snapd, '/v2/apps', {'action': 'stop', 'names': ['foo']})

    snapd.refuse_connections(0.2)
    refused_at = time.monotonic()
    assert os.path.exists(snapd.socket_path)
    with pytest.raises(ConnectionRefusedError):
        raw(snapd.socket_path, 'GET', '/v2/snaps')
    while True:
        try:
            change = result(snapd.socket_path, f'/v2/changes/{change_id}')
            break
        except ConnectionRefusedError:
            assert time.monotonic() - refused_at < 2
            time.sleep(0.02)

    assert time.monotonic() - refused_at >= 0.19
    assert change['status'] == 'Done'  # changes went on meanwhile
    assert result(snapd.socket_path, '/v2/snaps')


def test_garbage_next_is_not_json(snapd: FakeSnapd):
    snapd.add_snap('foo')
    snapd.garbage_next(2)

    with pytest.raises(json.JSONDecodeError):
        raw(snapd.socket_path, 'GET', '/v2/snaps')
    with pytest.raises(json.JSONDecodeError):
        raw(snapd.socket_path, 'POST', '/v2/apps', body={'action': 'stop', 'names': ['foo']})

    assert result(snapd.socket_path, '/v2/snaps')
    assert snapd.changes() == []  # the garbled write was not acted upon
    assert [r.method for r in snapd.requests] == ['GET', 'POST', 'GET']


def test_delay_next_delays_the_answer(snapd: FakeSnapd):
    snapd.add_snap('foo')
    snapd.delay_next(0.15)
    start = time.monotonic()
    assert result(snapd.socket_path, '/v2/snaps')
    assert time.monotonic() - start >= 0.15

    snapd.delay_next(1.0)
    with pytest.raises(TimeoutError):
        raw(snapd.socket_path, 'GET', '/v2/snaps', timeout=0.05)
    start = time.monotonic()
    assert result(snapd.socket_path, '/v2/snaps')
    assert time.monotonic() - start < 0.5


def test_drop_next_acts_and_hangs_up(snapd: FakeSnapd):
    snapd.add_snap('foo')
    snapd.drop_next()
    with pytest.raises(http.client.RemoteDisconnected):
        raw(snapd.socket_path, 'POST', '/v2/apps', body={'action': 'stop', 'names': ['foo']})
    [change] = snapd.changes()
    assert change['kind'] == 'service-control'
    assert result(snapd.socket_path, '/v2/snaps')  # only the next one


# Request log, life cycle ---------------------------------------------------------------


def test_request_log_records_in_order(snapd: FakeSnapd):
    snapd.add_snap('foo', revision='1', revisions=['2'])
    before = time.monotonic()

    result(snapd.socket_path, '/v2/snaps', snaps='foo')
    change_of(snapd, '/v2/snaps/foo', {'action': 'refresh', 'revision': '2'})
    result(snapd.socket_path, '/v2/apps', select='service', names='foo')

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
        results.append(result(snapd.socket_path, '/v2/snaps', snaps='foo')[0]['name'])

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
    fake = FakeSnapd()

    with fake as entered:
        assert entered is fake
        assert os.environ['CHARM_UPGRADE_SNAPD_SOCKET'] == fake.socket_path
        assert result(fake.socket_path, '/v2/snaps') == []

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
    change_of(fake, '/v2/apps', {'action': 'stop', 'names': ['foo']})  # in flight for 5 s
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

    assert time.monotonic() - start < 1
    assert not slow.is_alive()
    assert outcome and outcome[0] != 200  # the delayed answer was never sent
    assert _fake_threads() == []
    assert not os.path.exists(fake.socket_path)
    assert not os.path.exists(os.path.dirname(fake.socket_path))
    # Started again, it serves the same state.
    with fake:
        assert result(fake.socket_path, '/v2/snaps')[0]['name'] == 'foo'
    assert _fake_threads() == []


def test_socket_path_argument_and_length_check():
    short = FakeSnapd(f'/tmp/fsd-{os.getpid()}.socket')
    with short:
        assert os.path.exists(short.socket_path)
        assert result(short.socket_path, '/v2/snaps') == []
    assert not os.path.exists(short.socket_path)
    with pytest.raises(ValueError, match='too long'):
        FakeSnapd('/tmp/' + 'x' * 120)
