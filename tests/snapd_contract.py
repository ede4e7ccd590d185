# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The contract between FakeSnapd and the real snapd: one set of checks for both.

:class:`SnapdContract` holds the tests. The unit tier runs them against
FakeSnapd as snapd 2.68 and 2.57 (tests/unit/test_snapd_contract.py); the
integration tier runs the same tests against the real snapd of Debian trixie
(2.68) and bookworm (2.57) in the container (tests/integration/test_snapd_contract.py).
Each test compares snapd's answers, seen with a bare HTTP client, field by
field with what is written here: the fields that charm-upgrade and
charm-refresh read (envelopes, revisions, services, changes, holds,
configuration, connections) and the error envelopes (not installed, conflicts,
bad revisions). Then it does the same through :class:`charm_upgrade.snapd.Snapd`.
So a fake that drifts from snapd, or a snapd release that answers otherwise,
fails here.

The snap is ``cu-probe``: revisions x1 (version 1.0) and x2 on disk, services
``web`` and ``worker``, a plug ``network-observe`` that snapd does not connect
by itself. Sideloads use a second snap, ``cu-side``.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Protocol

import pytest
from raw_snapd import raw, result, wait_ready

from charm_upgrade import (
    ChangeConflict,
    InterfacesUnchanged,
    SnapdAPIError,
    SnapNotInstalled,
)
from charm_upgrade.snapd import Snapd

PROBE = 'cu-probe'
SIDE = 'cu-side'
PLUG = 'network-observe'

SNAP_FIELDS = ('name', 'revision', 'version', 'channel', 'confinement')
APP_FIELDS = ('snap', 'name', 'daemon', 'daemon-scope', 'enabled', 'active')
CHANGE_FIELDS = ('kind', 'summary', 'status', 'ready')
_TIME = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z')


class Backend(Protocol):
    """A snapd to hold to the contract, and how to bring it to the starting point."""

    socket: str
    version: tuple[int, int]

    def reset(self) -> None:
        """cu-probe at x1 (x2 on disk), both services enabled and active, not held,
        no configuration, its network-observe plug disconnected; cu-side not installed."""
        ...

    def side_file(self, version: str) -> str:
        """A file of the cu-side snap at ``version`` to sideload (a host path)."""
        ...


def pick(item: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The ``fields`` of ``item`` that it has."""
    return {k: item[k] for k in fields if k in item}


def error(status: int, phrase: str, result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """snapd's error answer, as it must be to the letter."""
    return status, {'type': 'error', 'status-code': status, 'status': phrase, 'result': result}


def accepted(answer: tuple[int, dict[str, Any]]) -> str:
    """The change id of an async answer, checked to be snapd's envelope."""
    status, envelope = answer
    assert (status, {k: v for k, v in envelope.items() if k != 'change'}) == (
        202,
        {'type': 'async', 'status-code': 202, 'status': 'Accepted', 'result': None},
    ), envelope
    assert isinstance(envelope['change'], str)
    assert envelope['change'].isdigit()
    return envelope['change']


def done(socket: str, change_id: str, kind: str, summary: str) -> dict[str, Any]:
    """Wait for the change; check it is Done with snapd's fields."""
    change = wait_ready(socket, change_id)
    assert pick(change, (*CHANGE_FIELDS, 'id')) == {
        'id': change_id,
        'kind': kind,
        'summary': summary,
        'status': 'Done',
        'ready': True,
    }
    assert 'err' not in change
    assert _TIME.fullmatch(change['spawn-time']), change
    assert _TIME.fullmatch(change['ready-time']), change
    return change


def client(backend: Backend) -> Snapd:
    return Snapd(socket=backend.socket, change_timeout=120, restart_grace=5)


def established(backend: Backend) -> list[dict[str, Any]]:
    connections = result(backend.socket, '/v2/connections', snap=PROBE)['established']
    return [c for c in connections if c['plug']['plug'] == PLUG]


class SnapdContract:
    """The checks both snapds pass; a test module subclasses it with a ``backend`` fixture."""

    def test_snaps_and_their_services(self, backend: Backend) -> None:
        backend.reset()
        socket = backend.socket
        status, envelope = raw(socket, 'GET', '/v2/snaps', query={'snaps': PROBE})
        assert (status, pick(envelope, ('type', 'status-code', 'status'))) == (
            200,
            {'type': 'sync', 'status-code': 200, 'status': 'OK'},
        )
        [listed] = envelope['result']
        one = result(socket, f'/v2/snaps/{PROBE}')
        for info in (listed, one):
            assert pick(info, SNAP_FIELDS) == {
                'name': PROBE,
                'revision': 'x1',
                'version': '1.0',
                'channel': '',
                'confinement': 'strict',
            }
            assert 'tracking-channel' not in info
            assert 'hold' not in info
            daemons = [pick(a, APP_FIELDS) for a in info['apps'] if 'daemon' in a]
            assert daemons == [
                {**_app(name), 'enabled': True, 'active': True} for name in ('web', 'worker')
            ]
        assert result(socket, '/v2/snaps', snaps='absent') == []
        assert raw(socket, 'GET', '/v2/snaps/absent') == error(
            404,
            'Not Found',
            {'message': 'snap not installed', 'kind': 'snap-not-found', 'value': 'absent'},
        )
        apps = result(socket, '/v2/apps', select='service', names=PROBE)
        assert [pick(a, APP_FIELDS) for a in apps] == [
            {**_app(name), 'enabled': True, 'active': True} for name in ('web', 'worker')
        ]
        assert raw(socket, 'GET', '/v2/apps', query={'names': f'{PROBE}.nope'}) == error(
            404,
            'Not Found',
            {'message': f'snap "{PROBE}" has no app "nope"', 'kind': 'app-not-found'},
        )
        assert raw(socket, 'GET', '/v2/apps', query={'select': 'service', 'names': 'absent'}) == (
            error(
                404,
                'Not Found',
                {
                    'message': 'snap "absent" not found',
                    'kind': 'snap-not-found',
                    'value': 'absent',
                },
            )
        )
        version = result(socket, '/v2/system-info')['version']
        assert version.startswith('.'.join(map(str, backend.version)))

        snapd = client(backend)
        info = snapd.snap(PROBE)
        assert (info.revision, info.version, info.channel, info.confinement, info.held) == (
            'x1',
            '1.0',
            '',
            'strict',
            False,
        )
        services = [(s.full_name, s.enabled, s.active) for s in snapd.services(PROBE)]
        assert services == [(f'{PROBE}.web', True, True), (f'{PROBE}.worker', True, True)]
        assert snapd.find_snap('absent') is None
        with pytest.raises(SnapNotInstalled):
            snapd.services('absent')

    def test_a_refresh_and_its_change(self, backend: Backend) -> None:
        backend.reset()
        socket = backend.socket
        body = {'action': 'refresh', 'revision': 'x2'}
        change_id = accepted(raw(socket, 'POST', f'/v2/snaps/{PROBE}', body=body))
        in_progress = result(socket, '/v2/changes', **{'for': PROBE, 'select': 'in-progress'})
        assert [(c['id'], c['kind'], c['ready']) for c in in_progress] == [
            (change_id, 'refresh-snap', False)
        ]
        done(socket, change_id, 'refresh-snap', f'Refresh "{PROBE}" snap')
        assert result(socket, '/v2/changes', **{'for': PROBE, 'select': 'in-progress'}) == []
        every = result(socket, '/v2/changes', **{'for': PROBE, 'select': 'all'})
        assert change_id in [c['id'] for c in every]
        assert result(socket, f'/v2/snaps/{PROBE}')['revision'] == 'x2'
        apps = result(socket, '/v2/apps', select='service', names=PROBE)
        assert [(a['enabled'], a['active']) for a in apps] == [(True, True)] * 2

        snapd = client(backend)
        change = snapd.wait_done(snapd.refresh(PROBE, 'x1'))
        assert (change.kind, change.status, change.ready) == ('refresh-snap', 'Done', True)
        assert snapd.snap(PROBE).revision == 'x1'

    def test_refusals_before_any_change(self, backend: Backend) -> None:
        backend.reset()
        socket = backend.socket
        snap = f'/v2/snaps/{PROBE}'
        bad = raw(socket, 'POST', snap, body={'action': 'refresh', 'revision': 'abc'})
        assert bad == error(
            400,
            'Bad Request',
            {
                'message': 'cannot decode request body into snap instruction: '
                'invalid snap revision: "\\"abc\\""'
            },
        )
        install = raw(
            socket, 'POST', '/v2/snaps/other', body={'action': 'install', 'revision': 'abc'}
        )
        assert install == bad
        # A local snap has no store: only revisions on disk.
        assert raw(socket, 'POST', snap, body={'action': 'refresh', 'revision': 'x77'}) == error(
            400,
            'Bad Request',
            {
                'message': 'cannot perform operation on local snap',
                'kind': 'snap-local',
                'value': '',
            },
        )
        assert raw(socket, 'POST', snap, body={'action': 'frobnicate'}) == error(
            400, 'Bad Request', {'message': 'unknown action frobnicate'}
        )
        assert raw(socket, 'POST', snap, body={'action': 'install'}) == error(
            400,
            'Bad Request',
            {
                'message': f'snap "{PROBE}" is already installed',
                'kind': 'snap-already-installed',
                'value': PROBE,
            },
        )
        absent = raw(socket, 'POST', '/v2/snaps/absent', body={'action': 'refresh'})
        if backend.version >= (2, 58):
            assert absent == error(
                400,
                'Bad Request',
                {'message': 'cannot refresh "absent": snap "absent" is not installed'},
            )
        else:
            assert absent == error(
                400,
                'Bad Request',
                {
                    'message': 'snap "absent" is not installed',
                    'kind': 'snap-not-installed',
                    'value': 'absent',
                },
            )
        assert raw(socket, 'GET', '/v2/changes/999999') == error(
            404, 'Not Found', {'message': 'cannot find change with id "999999"'}
        )
        stop = {'action': 'stop', 'names': [f'{PROBE}.nope']}
        assert raw(socket, 'POST', '/v2/apps', body=stop) == error(
            404,
            'Not Found',
            {'message': f'snap "{PROBE}" has no service "nope"', 'kind': 'app-not-found'},
        )
        assert raw(socket, 'POST', '/v2/apps', body={'action': 'stop', 'names': []}) == error(
            400,
            'Bad Request',
            {'message': 'cannot perform operation on services without a list of services '
             'to operate on'},
        )  # fmt: skip
        assert result(socket, '/v2/changes', **{'for': PROBE, 'select': 'in-progress'}) == []

        snapd = client(backend)
        with pytest.raises(SnapNotInstalled) as not_installed:
            snapd.refresh('absent', 'x1')
        assert not_installed.value.value == 'absent'
        with pytest.raises(SnapdAPIError) as local:
            snapd.refresh(PROBE, 'x77')
        assert (local.value.kind, local.value.status_code) == ('snap-local', 400)
        with pytest.raises(SnapdAPIError) as installed:
            snapd.install(PROBE)
        assert installed.value.kind == 'snap-already-installed'

    def test_conflicts_with_a_change_in_flight(self, backend: Backend) -> None:
        backend.reset()
        socket = backend.socket
        body = {'action': 'refresh', 'revision': 'x2'}
        change_id = accepted(raw(socket, 'POST', f'/v2/snaps/{PROBE}', body=body))
        text = f'snap "{PROBE}" has "refresh-snap" change in progress'
        conflict = {
            'message': text,
            'kind': 'snap-change-conflict',
            'value': {'change-kind': 'refresh-snap', 'snap-name': PROBE},
        }
        # A start or stop gets a plain 400 with the text only; other writes 409.
        stop = raw(socket, 'POST', '/v2/apps', body={'action': 'stop', 'names': [PROBE]})
        conf = raw(socket, 'PUT', f'/v2/snaps/{PROBE}/conf', body={'a': 1})
        connect = raw(socket, 'POST', '/v2/interfaces', body=_interfaces('connect'))
        assert result(socket, f'/v2/snaps/{PROBE}')  # reads never conflict
        ready = wait_ready(socket, change_id)
        assert ready['status'] == 'Done', ready
        assert stop == error(400, 'Bad Request', {'message': text})
        assert conf == error(409, 'Conflict', conflict)
        assert connect == error(409, 'Conflict', conflict)

        snapd = client(backend)
        change_id = snapd.refresh(PROBE, 'x1')
        # The library waits out both kinds of conflict, then asks again.
        stopped = snapd.wait_done(snapd.stop([PROBE], disable=False))
        assert stopped.kind == 'service-control'
        assert snapd.wait_change(change_id).status == 'Done'
        change_id = snapd.refresh(PROBE, 'x2')
        configured = snapd.wait_done(snapd.set_conf(PROBE, {'a': 1}))
        assert configured.kind == 'configure-snap'
        assert snapd.wait_change(change_id).status == 'Done'
        snapd.refresh(PROBE, 'x1')
        with pytest.raises(ChangeConflict) as caught:
            Snapd(socket=backend.socket, change_timeout=0).connect(PROBE, PLUG)
        assert (caught.value.snap, caught.value.change_kind) == (PROBE, 'refresh-snap')

    def test_holds(self, backend: Backend) -> None:
        backend.reset()
        socket = backend.socket
        snap = f'/v2/snaps/{PROBE}'
        forever = {'action': 'hold', 'time': 'forever', 'hold-level': 'general'}
        snapd = client(backend)
        if backend.version < (2, 58):
            assert raw(socket, 'POST', snap, body=forever) == error(
                400, 'Bad Request', {'message': 'unknown action hold'}
            )
            assert raw(socket, 'POST', snap, body={'action': 'unhold'}) == error(
                400, 'Bad Request', {'message': 'unknown action unhold'}
            )
            with pytest.raises(SnapdAPIError, match='unknown action hold') as caught:
                snapd.hold(PROBE)
            assert type(caught.value) is SnapdAPIError
            return
        change_id = accepted(raw(socket, 'POST', snap, body=forever))
        done(socket, change_id, 'hold-snap', f'Hold general refreshes for "{PROBE}"')
        held = result(socket, snap)['hold']
        assert _TIME.fullmatch(held)
        assert held > '2300'  # "forever": Go's longest duration from now
        until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)
        stamp = until.strftime('%Y-%m-%dT%H:%M:%SZ')
        body = {'action': 'hold', 'time': stamp, 'hold-level': 'auto-refresh'}
        change_id = accepted(raw(socket, 'POST', snap, body=body))
        done(socket, change_id, 'hold-snap', f'Hold auto-refreshes for "{PROBE}"')
        assert result(socket, snap)['hold'][:19] == stamp[:19]
        change_id = accepted(raw(socket, 'POST', snap, body={'action': 'unhold'}))
        done(socket, change_id, 'unhold-snap', f'Remove refresh hold on "{PROBE}"')
        assert 'hold' not in result(socket, snap)
        assert raw(socket, 'POST', snap, body={'action': 'hold', 'hold-level': 'general'}) == (
            error(400, 'Bad Request', {'message': 'hold action requires a non-empty time value'})
        )
        bad_level = {'action': 'hold', 'time': 'forever', 'hold-level': 'x'}
        assert raw(socket, 'POST', snap, body=bad_level) == error(
            400,
            'Bad Request',
            {
                'message': 'hold action requires hold-level to be either "auto-refresh" or '
                '"general"'
            },
        )
        status, envelope = raw(socket, 'POST', snap, body={**forever, 'time': 'soon'})
        assert status == 400
        assert envelope['result']['message'].startswith(
            'hold action requires time to be "forever" or in RFC3339 format: parsing time "soon"'
        )
        assert raw(socket, 'POST', '/v2/snaps/absent', body=forever) == error(
            400, 'Bad Request', {'message': 'cannot hold "absent": snap "absent" is not installed'}
        )

        assert snapd.wait_done(snapd.hold(PROBE)).kind == 'hold-snap'
        assert snapd.snap(PROBE).held
        # A refresh asked by name still goes through a general hold.
        assert snapd.wait_done(snapd.refresh(PROBE, 'x2')).status == 'Done'
        duration = datetime.timedelta(hours=5)
        snapd.wait_done(snapd.hold(PROBE, duration=duration, level='auto-refresh'))
        assert snapd.snap(PROBE).hold[:10] >= datetime.date.today().isoformat()
        assert snapd.wait_done(snapd.unhold(PROBE)).kind == 'unhold-snap'
        assert not snapd.snap(PROBE).held
        with pytest.raises(SnapNotInstalled):
            snapd.hold('absent')

    def test_configuration(self, backend: Backend) -> None:
        backend.reset()
        socket = backend.socket
        conf = f'/v2/snaps/{PROBE}/conf'
        assert result(socket, conf) == {}
        change_id = accepted(raw(socket, 'PUT', conf, body={'a': 1, 'b.c': 'x', 'd': {'e': True}}))
        done(socket, change_id, 'configure-snap', f'Change configuration of "{PROBE}" snap')
        assert result(socket, conf) == {'a': 1, 'b': {'c': 'x'}, 'd': {'e': True}}
        assert result(socket, conf, keys='a,b.c,b') == {'a': 1, 'b': {'c': 'x'}, 'b.c': 'x'}
        wait_ready(socket, accepted(raw(socket, 'PUT', conf, body={'a': None})))
        assert raw(socket, 'GET', conf, query={'keys': 'a'}) == error(
            400,
            'Bad Request',
            {
                'message': f'snap "{PROBE}" has no "a" configuration option',
                'kind': 'option-not-found',
                'value': {'SnapName': PROBE, 'Key': 'a'},
            },
        )
        assert result(socket, '/v2/snaps/absent/conf') == {}
        assert raw(socket, 'PUT', '/v2/snaps/absent/conf', body={'a': 1}) == error(
            404,
            'Not Found',
            {
                'message': 'snap "absent" is not installed',
                'kind': 'snap-not-found',
                'value': 'absent',
            },
        )

        snapd = client(backend)
        snapd.wait_done(snapd.set_conf(PROBE, {'port': 8080, 'tls.mode': 'on', 'b': None}))
        assert snapd.get_conf(PROBE) == {'d': {'e': True}, 'port': 8080, 'tls': {'mode': 'on'}}
        assert snapd.get_conf(PROBE, 'tls.mode') == {'tls.mode': 'on'}
        with pytest.raises(SnapdAPIError) as caught:
            snapd.get_conf(PROBE, 'nope')
        assert caught.value.kind == 'option-not-found'
        with pytest.raises(SnapNotInstalled):
            snapd.set_conf('absent', {'a': 1})

    def test_interface_connections(self, backend: Backend) -> None:
        backend.reset()
        socket = backend.socket
        assert established(backend) == []
        change_id = accepted(raw(socket, 'POST', '/v2/interfaces', body=_interfaces('connect')))
        summary = f'Connect {PROBE}:{PLUG} to snapd:{PLUG}'
        done(socket, change_id, 'connect-snap', summary)
        assert established(backend) == [
            {
                'slot': {'snap': 'snapd', 'slot': PLUG},
                'plug': {'snap': PROBE, 'plug': PLUG},
                'interface': PLUG,
                'manual': True,
            }
        ]
        change_id = accepted(raw(socket, 'POST', '/v2/interfaces', body=_interfaces('connect')))
        done(socket, change_id, 'connect-snap', summary)  # again: nothing to do, and Done
        change_id = accepted(raw(socket, 'POST', '/v2/interfaces', body=_interfaces('disconnect')))
        done(socket, change_id, 'disconnect-snap', f'Disconnect {PROBE}:{PLUG} from :')
        assert established(backend) == []
        assert raw(socket, 'POST', '/v2/interfaces', body=_interfaces('disconnect')) == error(
            400, 'Bad Request', {'message': 'nothing to do', 'kind': 'interfaces-unchanged'}
        )
        assert raw(socket, 'POST', '/v2/interfaces', body=_interfaces('connect', 'nope')) == (
            error(400, 'Bad Request', {'message': f'snap "{PROBE}" has no plug named "nope"'})
        )
        absent = _interfaces('connect', snap='absent')
        assert raw(socket, 'POST', '/v2/interfaces', body=absent) == error(
            400, 'Bad Request', {'message': 'snap "absent" is not installed'}
        )
        slot = {**_interfaces('connect'), 'slots': [{'snap': 'snapd', 'slot': 'nope'}]}
        assert raw(socket, 'POST', '/v2/interfaces', body=slot) == error(
            400, 'Bad Request', {'message': 'snap "snapd" has no slot named "nope"'}
        )

        snapd = client(backend)
        assert snapd.wait_done(snapd.connect(PROBE, PLUG)).kind == 'connect-snap'
        [connection] = [c for c in snapd.connections(PROBE) if c.plug == PLUG]
        assert (connection.slot_snap, connection.slot, connection.manual) == ('snapd', PLUG, True)
        assert snapd.wait_done(snapd.disconnect(PROBE, PLUG)).kind == 'disconnect-snap'
        assert [c for c in snapd.connections(PROBE) if c.plug == PLUG] == []
        with pytest.raises(InterfacesUnchanged):
            snapd.disconnect(PROBE, PLUG)
        with pytest.raises(SnapNotInstalled):
            snapd.connect('absent', PLUG)

    def test_sideload(self, backend: Backend) -> None:
        backend.reset()
        socket = backend.socket
        first = backend.side_file('1.0')
        name = first.rsplit('/', 1)[1]
        with open(first, 'rb') as f:
            content = f.read()
        status, envelope = raw(socket, 'POST', '/v2/snaps', file=(name, content))
        assert status == 400
        assert 'kind' not in envelope['result']
        assert envelope['result']['message'].startswith(
            'cannot find signatures with metadata for snap'
        )
        status, envelope = raw(socket, 'POST', '/v2/snaps', form={'dangerous': 'true'})
        assert (status, envelope['result']) == (
            400,
            {'message': 'cannot find "snap" file field in provided multipart/form-data payload'},
        )
        answer = raw(socket, 'POST', '/v2/snaps', form={'dangerous': 'true'}, file=(name, content))
        change_id = accepted(answer)
        done(socket, change_id, 'install-snap', f'Install "{SIDE}" snap from file "{name}"')
        info = result(socket, f'/v2/snaps/{SIDE}')
        assert pick(info, SNAP_FIELDS) == {
            'name': SIDE,
            'revision': 'x1',
            'version': '1.0',
            'channel': '',
            'confinement': 'strict',
        }
        junk = ('junk.snap', b'not a snap at all')
        status, envelope = raw(socket, 'POST', '/v2/snaps', form={'dangerous': 'true'}, file=junk)
        assert status == 400
        assert envelope['result']['message'].startswith('cannot read snap file')

        snapd = client(backend)
        change = snapd.wait_done(snapd.sideload(SIDE, backend.side_file('2.0'), dangerous=True))
        assert change.kind == 'install-snap'
        info = snapd.snap(SIDE)
        assert (info.revision, info.version) == ('x2', '2.0')
        services = [(s.name, s.enabled, s.active) for s in snapd.services(SIDE)]
        assert services == [('worker', True, True)]
        with pytest.raises(SnapdAPIError, match='cannot find signatures'):
            snapd.sideload(SIDE, first)


def _app(name: str) -> dict[str, Any]:
    return {'snap': PROBE, 'name': name, 'daemon': 'simple', 'daemon-scope': 'system'}


def _interfaces(action: str, plug: str = PLUG, snap: str = PROBE) -> dict[str, Any]:
    return {
        'action': action,
        'plugs': [{'snap': snap, 'plug': plug}],
        'slots': [{'snap': '', 'slot': ''}],
    }
