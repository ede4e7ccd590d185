# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The snapd client against FakeSnapd, and against raw sockets that misbehave.

Tests run with warnings as errors: a socket the client leaves open after a
refused connection, a timeout or a broken answer would fail them
(ResourceWarning); one test also counts the process's file descriptors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import json
import os
import pathlib
import resource
import socket
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from raw_snapd import UnixServer, read_request

from charm_upgrade import (
    ChangeConflict,
    ChangeFailed,
    InterfacesUnchanged,
    RevisionNotAvailable,
    SnapdAPIError,
    SnapdBadResponse,
    SnapdError,
    SnapdTimeout,
    SnapdUnreachable,
    SnapNotInstalled,
)
from charm_upgrade import _snapd_http as transport
from charm_upgrade.snapd import SOCKET_ENV, Change, Snapd, socket_path, validate_revision
from charm_upgrade.testing import FakeSnapd

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from charm_upgrade.testing import RecordedRequest

SNAP = 'foo'


@pytest.fixture
def fake() -> Iterator[FakeSnapd]:
    with FakeSnapd(change_duration=0.05) as snapd:
        snapd.add_snap(
            SNAP,
            revision='1',
            services=('daemon', 'worker'),
            revisions=('2',),
            plugs=('network-observe',),
        )
        yield snapd


def client(
    *,
    request_timeout: float = 2.0,
    write_timeout: float = 2.0,
    change_timeout: float = 5.0,
    restart_grace: float = 1.0,
    poll_interval: float = 0.02,
    **kwargs: Any,
) -> Snapd:
    return Snapd(
        request_timeout=request_timeout,
        write_timeout=write_timeout,
        change_timeout=change_timeout,
        restart_grace=restart_grace,
        poll_interval=poll_interval,
        **kwargs,
    )


def posts(fake: FakeSnapd) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method in ('POST', 'PUT')]


# A snapd that misbehaves ------------------------------------------------------------


class CannedSnapd(UnixServer):
    """A server that reads one request per connection and sends canned bytes.

    ``answer`` is sent ``chunk`` bytes at a time with ``pause`` seconds between
    chunks, then the connection is closed. ``hung_up`` is set when the client
    closed its end before the whole answer was sent.
    """

    def __init__(self, answer: bytes, *, chunk: int = 0, pause: float = 0.0):
        self.answer = answer
        self.chunk = chunk or len(answer) or 1
        self.pause = pause
        self.requests: list[bytes] = []
        self.hung_up = threading.Event()
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        self.requests.append(read_request(conn))
        try:
            for start in range(0, len(self.answer), self.chunk):
                if self.stopping(self.pause if start else 0):
                    return
                conn.sendall(self.answer[start : start + self.chunk])
        except OSError:
            self.hung_up.set()


@contextlib.contextmanager
def canned(answer: bytes, **kwargs: Any) -> Iterator[CannedSnapd]:
    server = CannedSnapd(answer, **kwargs)
    try:
        yield server
    finally:
        server.close()


def http_answer(status: int, body: bytes, *, length: int | None = None) -> bytes:
    reason = {200: 'OK', 202: 'Accepted', 400: 'Bad Request', 404: 'Not Found'}.get(status, 'X')
    size = len(body) if length is None else length
    head = f'HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n'
    return f'{head}Content-Length: {size}\r\nConnection: close\r\n\r\n'.encode() + body


def envelope(status: int, result: Any, **extra: Any) -> bytes:
    type_ = 'error' if status >= 400 else ('async' if status == 202 else 'sync')
    body = {'type': type_, 'status-code': status, 'status': 'X', 'result': result, **extra}
    return http_answer(status, json.dumps(body).encode())


def in_child(work: Callable[[], dict[str, Any]], *, uid: int | None = None) -> dict[str, Any]:
    """Run ``work`` in a forked process (as ``uid`` if given); return what it returned."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read_end)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            result = work()
        except BaseException as e:
            result = {'crashed': repr(e)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def snapd_error(call: Callable[[], object]) -> dict[str, Any]:
    """Call ``call`` in the child: the SnapdError it raised, as a dict."""
    try:
        call()
    except SnapdError as e:
        cause = e.__cause__
        return {
            'type': type(e).__name__,
            'kind': e.kind,
            'message': e.message,
            'errno': getattr(cause, 'errno', None),
        }
    return {'type': None}


# Reads ------------------------------------------------------------------------------


def test_find_snap_and_services(fake: FakeSnapd):
    snapd = client()
    info = snapd.find_snap(SNAP)
    assert info is not None
    assert (info.name, info.revision, info.version, info.confinement) == (
        SNAP,
        '1',
        '1.0',
        'strict',
    )
    assert (info.channel, info.tracking_channel, info.hold, info.held) == ('', '', '', False)
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
    assert Snapd().socket_path == fake.socket_path
    monkeypatch.delenv(SOCKET_ENV)
    assert socket_path() == '/run/snapd.socket'
    # An explicit socket wins over the environment.
    assert Snapd(socket=fake.socket_path).find_snap(SNAP) is not None


@pytest.mark.parametrize('good', ['1', '182', 'x1', 'x20'])
def test_valid_revisions(good: str):
    assert validate_revision(good) == good


@pytest.mark.parametrize('bad', [1, '', None, '0', 'abc', 'x', 'x0', '01', '1 ', '-1'])
def test_invalid_revisions(bad: object, fake: FakeSnapd):
    with pytest.raises(ValueError, match='invalid snap revision'):
        validate_revision(bad)
    if bad is not None:  # None: no revision, the channel's
        with pytest.raises(ValueError, match='invalid snap revision'):
            client().refresh(SNAP, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match='invalid snap revision'):
            client().install('bar', revision=bad)  # type: ignore[arg-type]
    assert posts(fake) == []


def test_request_sends_anything_and_returns_the_envelope(fake: FakeSnapd):
    snapd = client()
    info = snapd.request('GET', '/v2/system-info')
    assert (info.type, info.status_code, info.status) == ('sync', 200, 'OK')
    assert info.result['version'] == '2.68'
    assert info.change is None
    written = snapd.request(
        'POST', f'/v2/snaps/{SNAP}', body={'action': 'refresh', 'revision': '2'}
    )
    assert (written.type, written.status_code, written.result) == ('async', 202, None)
    assert written.change is not None
    assert snapd.wait_done(written.change).kind == 'refresh-snap'
    listed = snapd.request('get', '/v2/snaps', query={'snaps': SNAP}).result
    assert [s['revision'] for s in listed] == ['2']
    with pytest.raises(ValueError, match='must start with'):
        snapd.request('GET', 'v2/snaps')
    with pytest.raises(SnapdAPIError) as caught:
        snapd.request('DELETE', '/v2/changes/1')
    assert (caught.value.status_code, caught.value.kind) == (405, 'error')


def test_requests_from_threads_share_one_client(fake: FakeSnapd):
    snapd = client()
    results: list[str] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(10):
                info = snapd.snap(SNAP)
                results.append(info.revision)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert results == ['1'] * 80
    # No process-wide setting was touched.
    assert socket.getdefaulttimeout() is None


# Writes -----------------------------------------------------------------------------


def test_hold_forever_for_a_while_and_unhold(fake: FakeSnapd):
    snapd = client()
    assert snapd.wait_done(snapd.hold(SNAP)).kind == 'hold-snap'
    assert fake.hold(SNAP) > '2300'  # snapd's "forever": some 292 years away
    assert snapd.snap(SNAP).held
    before = datetime.datetime.now(datetime.timezone.utc)
    snapd.wait_done(snapd.hold(SNAP, duration=datetime.timedelta(days=2), level='auto-refresh'))
    until = datetime.datetime.strptime(snapd.snap(SNAP).hold, '%Y-%m-%dT%H:%M:%S%z')
    assert datetime.timedelta(days=2) - (until - before) < datetime.timedelta(minutes=5)
    first, second = [r.body for r in posts(fake)]
    assert first == {'action': 'hold', 'time': 'forever', 'hold-level': 'general'}
    assert second['hold-level'] == 'auto-refresh'
    assert snapd.wait_done(snapd.unhold(SNAP)).kind == 'unhold-snap'
    assert not snapd.snap(SNAP).held


def test_hold_on_snapd_before_2_58_is_refused_clearly():
    with FakeSnapd(version='2.57.6') as fake:
        fake.add_snap(SNAP)
        with pytest.raises(SnapdAPIError) as caught:
            client().hold(SNAP)
    error = caught.value
    assert type(error) is SnapdAPIError
    assert (error.kind, error.status_code) == ('error', 400)
    assert 'unknown action hold' in error.message
    assert f'hold of refreshes of snap {SNAP!r}' in error.message


def test_connect_and_disconnect_a_plug(fake: FakeSnapd):
    snapd = client()
    assert snapd.connections(SNAP) == []
    change = snapd.wait_done(snapd.connect(SNAP, 'network-observe'))
    assert change.kind == 'connect-snap'
    (connection,) = snapd.connections(SNAP)
    assert (connection.plug_snap, connection.plug) == (SNAP, 'network-observe')
    assert (connection.slot_snap, connection.slot) == ('snapd', 'network-observe')
    assert (connection.interface, connection.manual) == ('network-observe', True)
    assert posts(fake)[0].body == {
        'action': 'connect',
        'plugs': [{'snap': SNAP, 'plug': 'network-observe'}],
        'slots': [{'snap': '', 'slot': ''}],
    }
    assert snapd.wait_done(snapd.disconnect(SNAP, 'network-observe')).kind == 'disconnect-snap'
    assert snapd.connections(SNAP) == []
    with pytest.raises(InterfacesUnchanged):
        snapd.disconnect(SNAP, 'network-observe')
    with pytest.raises(SnapNotInstalled) as caught:  # snapd says so in text only
        snapd.connect('absent', 'network-observe')
    assert caught.value.value == 'absent'


def test_configuration(fake: FakeSnapd):
    snapd = client()
    assert snapd.get_conf(SNAP) == {}
    change = snapd.wait_done(snapd.set_conf(SNAP, {'port': 8080, 'tls.mode': 'on'}))
    assert change.kind == 'configure-snap'
    assert snapd.get_conf(SNAP) == {'port': 8080, 'tls': {'mode': 'on'}}
    assert snapd.get_conf(SNAP, 'tls.mode', 'port') == {'tls.mode': 'on', 'port': 8080}
    snapd.wait_done(snapd.set_conf(SNAP, {'port': None}))
    with pytest.raises(SnapdAPIError) as caught:
        snapd.get_conf(SNAP, 'port')
    assert caught.value.kind == 'option-not-found'
    with pytest.raises(SnapNotInstalled):
        snapd.set_conf('absent', {'port': 1})


def test_install_by_channel_revision_and_classic(fake: FakeSnapd):
    fake.add_store_snap('bar', revisions=['10', '11'], channels={'edge': '11', 'stable': '10'})
    fake.add_store_snap('tool', revisions=['5'], confinement='classic')
    snapd = client()
    snapd.wait_done(snapd.install('bar', channel='latest/edge'))
    info = snapd.snap('bar')
    assert (info.revision, info.channel, info.tracking_channel) == (
        '11',
        'latest/edge',
        'latest/edge',
    )
    with pytest.raises(SnapdAPIError) as caught:
        snapd.install('tool')
    assert caught.value.kind == 'snap-needs-classic'
    snapd.wait_done(snapd.install('tool', revision='5', classic=True))
    assert snapd.snap('tool').revision == '5'
    assert posts(fake)[-1].body == {'action': 'install', 'revision': '5', 'classic': True}
    with pytest.raises(SnapdAPIError) as caught:
        snapd.install('bar')
    assert caught.value.kind == 'snap-already-installed'
    fake.add_store_snap('baz', revisions=['1'], channels={'stable': '1'})
    with pytest.raises(RevisionNotAvailable):
        snapd.install('baz', revision='7')
    with pytest.raises(RevisionNotAvailable):
        snapd.install('baz', channel='edge')


def test_sideload_streams_the_file_and_makes_the_next_local_revision(
    fake: FakeSnapd, tmp_path: pathlib.Path
):
    path = tmp_path / 'foo_3.0.snap'
    FakeSnapd.write_snap_file(path, SNAP, version='3.0')
    snapd = client()
    with pytest.raises(SnapdAPIError, match='cannot find signatures'):
        snapd.sideload(SNAP, path)
    change = snapd.wait_done(snapd.sideload(SNAP, path, dangerous=True))
    assert change.kind == 'install-snap'
    info = snapd.snap(SNAP)
    assert (info.revision, info.version) == ('x1', '3.0')
    assert posts(fake)[-1].body == {'dangerous': 'true', 'snap': 'foo_3.0.snap'}
    snapd.wait_done(snapd.sideload(SNAP, str(path), dangerous=True))
    assert snapd.snap(SNAP).revision == 'x2'
    with pytest.raises(FileNotFoundError):
        snapd.sideload(SNAP, tmp_path / 'missing.snap', dangerous=True)


def test_the_upload_is_read_in_blocks(tmp_path: pathlib.Path):
    path = tmp_path / 'big.snap'
    path.write_bytes(os.urandom(1 << 20))
    with transport.Upload(str(path), {'dangerous': 'true'}) as upload:
        blocks = list(upload.chunks())
        again = list(upload.chunks())  # a second attempt sends it all again
    assert blocks == again
    assert max(len(b) for b in blocks[1:-1]) <= 1 << 16
    assert sum(len(b) for b in blocks) == upload.length
    assert b''.join(blocks[1:-1]) == path.read_bytes()


def test_a_file_that_changes_size_while_sent_is_an_os_error(
    fake: FakeSnapd, tmp_path: pathlib.Path
):
    path = tmp_path / 'foo.snap'
    FakeSnapd.write_snap_file(path, SNAP)
    with transport.Upload(str(path), {}) as upload:
        path.write_bytes(b'x' * 10)  # shorter than announced
        with pytest.raises(transport.LocalFileError):
            list(upload.chunks())


def test_names_of_two_snaps_are_refused_before_any_request(fake: FakeSnapd):
    with pytest.raises(ValueError, match='more than one snap'):
        client().stop([f'{SNAP}.daemon', 'other.daemon'], disable=True)
    with pytest.raises(ValueError, match='no snap services'):
        client().start([], enable=True)
    assert fake.requests == []


# Deadlines --------------------------------------------------------------------------


def test_every_request_is_bounded_in_time(fake: FakeSnapd):
    fake.delay_next(3.0)
    began = time.monotonic()
    with pytest.raises(SnapdTimeout) as caught:
        client(request_timeout=0.2).find_snap(SNAP)
    assert time.monotonic() - began < 2.5
    error = caught.value
    assert (error.kind, error.status_code, error.request_sent) == ('timeout', None, True)
    assert f"snap '{SNAP}'" in error.message
    assert fake.socket_path in error.message
    assert 'systemctl status snapd' in error.message


def test_a_slow_drip_cannot_outlast_the_deadline():
    # 200 bytes a byte at a time, 50 ms apart: 10 s to send; each read alone is quick.
    body = json.dumps({'type': 'sync', 'status-code': 200, 'result': 'x' * 100}).encode()
    with canned(http_answer(200, body), chunk=1, pause=0.05) as server:
        began = time.monotonic()
        with pytest.raises(SnapdTimeout) as caught:
            Snapd(socket=server.path, request_timeout=0.5).find_snap(SNAP)
        elapsed = time.monotonic() - began
        assert server.hung_up.wait(5)  # the client closed its socket
    assert caught.value.request_sent
    assert elapsed < 3.0  # 0.5 s deadline; generous for a loaded machine, far below 10 s


def test_a_slow_drip_of_headers_cannot_outlast_the_deadline():
    with canned(b'HTTP/1.1 200 OK\r\n' + b'X-Pad: y\r\n' * 40, chunk=1, pause=0.02) as server:
        began = time.monotonic()
        with pytest.raises(SnapdTimeout):
            Snapd(socket=server.path, request_timeout=0.3).find_snap(SNAP)
        assert time.monotonic() - began < 3.0


def test_a_timed_out_read_is_not_retried(fake: FakeSnapd):
    fake.delay_next(1.0)
    with pytest.raises(SnapdTimeout, match='did not answer'):
        client(request_timeout=0.2, restart_grace=3.0).find_snap(SNAP)
    assert len(fake.requests) == 1


def test_wait_change_is_bounded_and_names_the_change(fake: FakeSnapd):
    fake.set_change_duration(3.0)
    snapd = client()
    change_id = snapd.stop([SNAP], disable=False)
    began = time.monotonic()
    with pytest.raises(SnapdTimeout) as caught:
        snapd.wait_change(change_id, timeout=0.2)
    assert time.monotonic() - began < 2.0
    assert caught.value.kind == 'timeout'
    assert caught.value.change_id == change_id
    assert f'snap tasks {change_id}' in caught.value.message


@dataclasses.dataclass
class FakeClock:
    now: float = 1000.0
    sleeps: list[float] = dataclasses.field(default_factory=list[float])

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedSnapd(Snapd):
    """A client whose change is Doing until the fake clock reaches ``ready_at``."""

    def __init__(self, clock: FakeClock, ready_at: float, status: str = 'Done', **kw: Any):
        super().__init__(monotonic=clock.monotonic, sleep=clock.sleep, **kw)
        self.clock = clock
        self.ready_at = ready_at
        self.final = status
        self.polls = 0

    def change(self, change_id: str) -> Change:
        self.polls += 1
        ready = self.clock.now >= self.ready_at
        return Change(
            change_id,
            'refresh-snap',
            'Refresh "foo" snap',
            self.final if ready else 'Doing',
            ready,
            err='boom' if ready and self.final != 'Done' else '',
        )


def test_the_poller_starts_fast_and_slows_down_with_the_time_waited():
    clock = FakeClock()
    snapd = ScriptedSnapd(clock, ready_at=clock.now + 30, poll_interval=0.1)
    began = time.monotonic()
    change = snapd.wait_change('7')
    assert time.monotonic() - began < 5  # no real waiting
    assert change.status == 'Done'
    sleeps = clock.sleeps
    assert sleeps[0] == pytest.approx(0.005)
    assert max(sleeps) == pytest.approx(0.1)  # poll_interval caps it
    assert sleeps == sorted(sleeps)  # never shrinks
    # 2 % of the time waited once above 5 ms: seen ready at most ~2 % late.
    assert clock.now - 1030 <= 0.1 + 1e-9
    # 50 polls at 5 ms, ~150 growing to 0.1 s at 5 s, 250 at 0.1 s: ~450 for 30 s,
    # where a fixed 5 ms would be 6000.
    assert 440 < snapd.polls < 465


def test_the_poller_gives_up_at_its_deadline_with_the_change_id():
    clock = FakeClock()
    snapd = ScriptedSnapd(clock, ready_at=clock.now + 1e9, change_timeout=60)
    with pytest.raises(SnapdTimeout) as caught:
        snapd.wait_change('7')
    assert caught.value.change_id == '7'
    assert clock.now == pytest.approx(1060)  # the last sleep ends at the deadline
    with pytest.raises(SnapdTimeout):
        snapd.wait_change('7', timeout=5)
    assert clock.now == pytest.approx(1065)


@pytest.mark.parametrize('status', ['Error', 'Undone', 'Hold'])
def test_wait_done_raises_change_failed_unless_done(status: str):
    clock = FakeClock()
    snapd = ScriptedSnapd(clock, ready_at=clock.now + 1, status=status)
    with pytest.raises(ChangeFailed) as caught:
        snapd.wait_done('9')
    error = caught.value
    assert (error.kind, error.change_id, error.status, error.err) == (
        'change-failed',
        '9',
        status,
        'boom',
    )
    assert 'snap tasks 9' in error.message
    assert ScriptedSnapd(clock, ready_at=clock.now + 1).wait_done('9').status == 'Done'


def test_a_failed_refresh_change_is_change_failed(fake: FakeSnapd):
    fake.fail_next_refresh(undo=True)
    snapd = client()
    with pytest.raises(ChangeFailed) as caught:
        snapd.wait_done(snapd.refresh(SNAP, '2'))
    (failed,) = [c for c in fake.changes() if c['kind'] == 'refresh-snap']
    assert (caught.value.change_id, caught.value.status) == (failed['id'], 'Error')
    assert 'post-refresh' in caught.value.err


# Writes whose answer is lost -------------------------------------------------------------


def test_a_write_that_times_out_returns_the_change_snapd_made(fake: FakeSnapd):
    fake.delay_next(2.0)  # snapd acts at once; its answer comes too late
    snapd = client(write_timeout=0.3)
    change_id = snapd.refresh(SNAP, '2')
    assert snapd.wait_done(change_id).kind == 'refresh-snap'
    assert len([r for r in posts(fake)]) == 1  # not sent twice
    lookups = [r for r in fake.requests if r.path == '/v2/changes']
    assert lookups[0].query == {'for': SNAP, 'select': 'all'}
    assert fake.revision(SNAP) == '2'


def test_a_write_whose_connection_breaks_returns_the_change_snapd_made(fake: FakeSnapd):
    fake.drop_next()  # snapd acts, then hangs up without answering
    snapd = client()
    change_id = snapd.wait_done(snapd.hold(SNAP)).id  # a change that is ready at once
    assert [c['kind'] for c in fake.changes()] == ['hold-snap']
    assert fake.changes()[0]['id'] == change_id
    assert len(posts(fake)) == 1


def test_a_write_that_snapd_did_not_act_on_raises(fake: FakeSnapd):
    fake.delay_next(2.0)
    with pytest.raises(SnapdTimeout) as caught:
        client(write_timeout=0.3).refresh(SNAP, '77')  # refused, but the answer is late
    error = caught.value
    assert error.request_sent
    assert 'made no refresh-snap change' in error.message
    assert isinstance(error.__cause__, SnapdTimeout)
    assert fake.changes() == []


def test_an_older_change_of_the_same_kind_is_not_taken_for_the_lost_one(fake: FakeSnapd):
    snapd = client()
    earlier = snapd.wait_done(snapd.refresh(SNAP, '2'))
    fake.drop_next()  # snapd refuses this one (no revision 77), and the answer is lost
    with pytest.raises(SnapdUnreachable) as caught:
        snapd.refresh(SNAP, '77')
    assert caught.value.request_sent
    assert 'made no refresh-snap change' in caught.value.message
    assert [c['id'] for c in fake.changes()] == [earlier.id]


# 409 snap-change-conflict -----------------------------------------------------------


def test_a_409_waits_for_the_snaps_change_then_asks_again(fake: FakeSnapd):
    blocking = fake.start_change(SNAP, kind='auto-refresh', duration=0.3)
    snapd = client()
    began = time.monotonic()
    change_id = snapd.refresh(SNAP, '2')
    assert time.monotonic() - began >= 0.25
    first, second = posts(fake)
    assert first.body == second.body == {'action': 'refresh', 'revision': '2'}
    between = fake.requests[fake.requests.index(first) + 1 : fake.requests.index(second)]
    assert between[0].path == '/v2/changes'  # this snap's changes in progress
    assert any(r.path == f'/v2/changes/{blocking}' for r in between)
    assert snapd.wait_change(change_id).status == 'Done'


def test_a_service_conflict_snapd_states_only_in_text_is_waited_out_too(fake: FakeSnapd):
    fake.start_change(SNAP, kind='refresh-snap', duration=0.3)
    snapd = client()
    change_id = snapd.stop([SNAP], disable=True)
    assert len(posts(fake)) == 2
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
    with pytest.raises(SnapdTimeout) as caught:
        client(change_timeout=0.3).refresh(SNAP, '2')
    assert time.monotonic() - began < 2.0
    # The wait for the conflicting change ran out: it names that change.
    assert caught.value.change_id == blocking
    assert fake.revision(SNAP) == '1'


def test_a_conflict_that_is_not_waited_out_keeps_its_kind(fake: FakeSnapd):
    fake.conflict_next(50)
    with pytest.raises(ChangeConflict) as caught:
        client(change_timeout=0.2).set_conf(SNAP, {'a': 1})
    error = caught.value
    assert (error.kind, error.status_code) == ('snap-change-conflict', 409)
    assert (error.snap, error.change_kind) == (SNAP, 'auto-refresh')


# snapd restarting ---------------------------------------------------------------------


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
    with pytest.raises(SnapdUnreachable) as caught:
        client(restart_grace=0.3).find_snap(SNAP)
    assert time.monotonic() - began < 2.0
    assert caught.value.kind == 'connection-error'
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_writes_are_not_retried_on_connection_errors(fake: FakeSnapd):
    fake.refuse_connections(0.4)
    with pytest.raises(SnapdUnreachable) as caught:
        client(restart_grace=3.0).stop([SNAP], disable=True)
    error = caught.value
    assert not error.request_sent
    assert f'stop of {SNAP}' in error.message
    assert 'stopped or restarting' in error.message
    time.sleep(0.6)  # snapd is back: still nothing was sent again
    assert client().find_snap(SNAP) is not None
    assert posts(fake) == []
    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (True, True)}


def test_no_socket_at_all_is_unreachable():
    snapd = Snapd(socket='/tmp/charm-upgrade-no-such-dir/snapd.socket', restart_grace=0.2)
    with pytest.raises(SnapdUnreachable) as caught:
        snapd.find_snap(SNAP)
    assert caught.value.kind == 'connection-error'
    assert '/tmp/charm-upgrade-no-such-dir/snapd.socket' in caught.value.message
    assert 'is snapd installed and running?' in caught.value.message


# Errors of the operating system -------------------------------------------------------


def test_a_socket_path_over_the_unix_limit_is_unreachable_at_once():
    clock = FakeClock()
    path = '/tmp/' + 'd' * 120 + '/snapd.socket'
    snapd = Snapd(socket=path, restart_grace=30, monotonic=clock.monotonic, sleep=clock.sleep)
    with pytest.raises(SnapdUnreachable) as caught:
        snapd.snap(SNAP)
    error = caught.value
    assert isinstance(error.__cause__, OSError)
    assert error.__cause__.errno == errno.ENAMETOOLONG
    assert 'more than the 108' in error.message
    assert path in error.message
    assert clock.sleeps == []  # not what a restart looks like: no retry


def test_no_file_descriptor_left_is_unreachable(fake: FakeSnapd):
    path = fake.socket_path

    def exhaust_then_ask() -> dict[str, Any]:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        held: list[int] = []
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open('/dev/null', os.O_RDONLY))
        return snapd_error(lambda: Snapd(socket=path, restart_grace=0.1).snap(SNAP))

    result = in_child(exhaust_then_ask)
    assert result['type'] == 'SnapdUnreachable', result
    assert result['errno'] == errno.EMFILE
    assert 'no file descriptor left' in result['message']
    assert path in result['message']


def test_permission_denied_is_unreachable(tmp_path: pathlib.Path):
    # A socket nobody but root may open (mode 000), and a process that is not root.
    directory = tempfile.mkdtemp(prefix='cu-eacces-', dir='/tmp')
    os.chmod(directory, 0o755)  # noqa: S103 (the other user must reach the socket)
    path = os.path.join(directory, 'snapd.socket')
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        server.listen(1)
        os.chmod(path, 0)
        uid = 65534 if os.geteuid() == 0 else None
        result = in_child(
            lambda: snapd_error(lambda: Snapd(socket=path, restart_grace=0.1).snap(SNAP)),
            uid=uid,
        )
    finally:
        server.close()
        os.unlink(path)
        os.rmdir(directory)
    assert result['type'] == 'SnapdUnreachable', result
    assert result['errno'] == errno.EACCES
    assert 'permission denied' in result['message']


def test_failed_requests_leave_no_socket_open():
    def open_fds() -> int:
        return len(os.listdir('/proc/self/fd'))

    before = open_fds()
    with FakeSnapd() as fake:
        snapd = client(request_timeout=0.2, restart_grace=0.0)
        for _ in range(5):
            fake.garbage_next()
            with pytest.raises(SnapdBadResponse):
                snapd.snap(SNAP)
            fake.delay_next(1.0)
            with pytest.raises(SnapdTimeout):
                snapd.snap(SNAP)
            with pytest.raises(SnapNotInstalled):
                snapd.services('absent')
            fake.drop_next()
            with pytest.raises(SnapdUnreachable):
                snapd.services('absent')
    with canned(b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"type"') as server:
        for _ in range(5):
            with pytest.raises(SnapdBadResponse):
                Snapd(socket=server.path).snap(SNAP)
    # The fake and the canned server are stopped: what is left open is the client's.
    assert open_fds() <= before


# Answers that are not snapd's --------------------------------------------------------------


@pytest.mark.parametrize(
    ('answer', 'says'),
    [
        (http_answer(200, b'<html>snapd is restarting</html>'), 'not JSON'),
        (http_answer(200, b'[1, 2]'), 'not its envelope'),
        (http_answer(200, b'{"result": []}'), 'not its envelope'),
        (http_answer(200, b'{"type": "weird", "result": []}'), 'not its envelope'),
        (envelope(200, [], **{'status-code': 'two hundred'}), 'not its envelope'),
        (http_answer(200, b'{"type": "error", "result": {"message": "x"}}'), 'not its envelope'),
        (http_answer(500, b'{"type": "sync", "result": []}'), 'not its envelope'),
        (envelope(400, {'kind': 'no-message'}), 'not its envelope'),
        (envelope(400, 'just text'), 'not its envelope'),
        (envelope(202, None), 'not its envelope'),  # async without a change
        (http_answer(200, b'{"type": "sync", "result": [', length=80), 'cut short'),
        (http_answer(200, b'{"type": "sync", "result": [], "x": 1}', length=10), 'not JSON'),
        (b'HELLO snapd\r\n\r\n', 'not HTTP'),
        (b'HTTP/1.1 200 OK\r\n' + b'X: ' + b'y' * 70000 + b'\r\n\r\n', 'not HTTP'),
    ],
    ids=[
        'html',
        'a list',
        'no type',
        'unknown type',
        'status code not a number',
        'error with HTTP 200',
        'sync with HTTP 500',
        'error without message',
        'error result not an object',
        'async without change',
        'truncated body',
        'content length too short',
        'not HTTP at all',
        'header line too long',
    ],
)
def test_answers_that_are_not_snapds_envelope_are_bad_responses(answer: bytes, says: str):
    with canned(answer) as server:
        with pytest.raises(SnapdBadResponse) as caught:
            Snapd(socket=server.path).request('GET', '/v2/snaps')
    error = caught.value
    assert error.kind == 'bad-response'
    assert says in error.message
    assert 'GET /v2/snaps' in error.message
    assert server.path in error.message


def test_a_snapd_that_hangs_up_without_answering_is_unreachable():
    with canned(b'') as server:
        with pytest.raises(SnapdUnreachable) as caught:
            Snapd(socket=server.path, restart_grace=0).request('GET', '/v2/snaps')
    assert caught.value.request_sent
    assert 'closed the connection before it answered' in caught.value.message


def test_a_wrong_answer_from_a_read_operation_is_a_bad_response():
    with canned(envelope(200, {'not': 'a list'})) as server:
        with pytest.raises(SnapdBadResponse, match='the snap'):
            Snapd(socket=server.path).find_snap(SNAP)
    with canned(envelope(200, [{'name': SNAP}])) as server:
        with pytest.raises(SnapdBadResponse, match='without a name or a revision'):
            Snapd(socket=server.path).find_snap(SNAP)
    with canned(envelope(200, {'id': '1'})) as server:
        with pytest.raises(SnapdBadResponse, match='not a change'):
            Snapd(socket=server.path).change('1')
    with canned(envelope(200, {'established': [{'plug': 'x'}]})) as server:
        with pytest.raises(SnapdBadResponse):
            Snapd(socket=server.path).connections(SNAP)


# Error kinds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('result', 'error_type', 'kind', 'value'),
    [
        (
            {'message': 'snap not installed', 'kind': 'snap-not-found', 'value': SNAP},
            SnapNotInstalled,
            'snap-not-found',
            SNAP,
        ),
        (
            {
                'message': 'snap "foo" is not installed',
                'kind': 'snap-not-installed',
                'value': SNAP,
            },
            SnapNotInstalled,
            'snap-not-installed',
            SNAP,
        ),
        (
            {'message': 'cannot refresh "foo": snap "foo" is not installed'},
            SnapNotInstalled,
            'snap-not-installed',
            SNAP,
        ),
        (
            {
                'message': 'snap "foo" has "auto-refresh" change in progress',
                'kind': 'snap-change-conflict',
                'value': {'snap-name': SNAP, 'change-kind': 'auto-refresh'},
            },
            ChangeConflict,
            'snap-change-conflict',
            {'snap-name': SNAP, 'change-kind': 'auto-refresh'},
        ),
        (
            {'message': 'snap "foo" has "refresh-snap" change in progress'},
            ChangeConflict,
            'snap-change-conflict',
            {'snap-name': SNAP, 'change-kind': 'refresh-snap'},
        ),
        (
            {'message': 'snap "foo" has changes in progress'},
            ChangeConflict,
            'snap-change-conflict',
            {'snap-name': SNAP, 'change-kind': ''},
        ),
        (
            {
                'message': 'no snap revision available as specified',
                'kind': 'snap-revision-not-available',
                'value': SNAP,
            },
            RevisionNotAvailable,
            'snap-revision-not-available',
            SNAP,
        ),
        (
            {
                'message': 'no snap revision on specified channel',
                'kind': 'snap-channel-not-available',
            },
            RevisionNotAvailable,
            'snap-channel-not-available',
            None,
        ),
        (
            {'message': 'nothing to do', 'kind': 'interfaces-unchanged'},
            InterfacesUnchanged,
            'interfaces-unchanged',
            None,
        ),
        (
            {
                'message': 'cannot perform operation on local snap',
                'kind': 'snap-local',
                'value': '',
            },
            SnapdAPIError,
            'snap-local',
            '',
        ),
        ({'message': 'cannot find change with id "9"'}, SnapdAPIError, 'error', None),
    ],
)
def test_each_error_kind_raises_its_type(
    result: dict[str, Any], error_type: type[SnapdAPIError], kind: str, value: object
):
    with canned(envelope(409 if 'conflict' in str(result) else 400, result)) as server:
        with pytest.raises(SnapdAPIError) as caught:
            Snapd(socket=server.path).request('POST', f'/v2/snaps/{SNAP}', body={})
    error = caught.value
    assert type(error) is error_type
    assert (error.kind, error.value) == (kind, value)
    assert result['message'] in error.message
    assert f'POST /v2/snaps/{SNAP} on {server.path}' in error.message


def test_snap_not_installed_names_the_snap_and_what_to_do(fake: FakeSnapd):
    with pytest.raises(SnapNotInstalled) as caught:
        client().snap('absent')
    error = caught.value
    assert (error.kind, error.status_code, error.value) == ('snap-not-found', 404, 'absent')
    assert "'absent'" in error.message
    assert 'install it' in error.message
    with pytest.raises(SnapNotInstalled) as caught:
        client().services('absent')
    assert caught.value.status_code == 404


def test_api_errors_carry_kind_status_and_the_request(fake: FakeSnapd):
    snapd = client()
    with pytest.raises(RevisionNotAvailable) as caught:
        snapd.refresh(SNAP, '77')
    error = caught.value
    assert (error.kind, error.status_code) == ('snap-revision-not-available', 404)
    assert f"refresh of snap '{SNAP}' to revision 77" in error.message
    assert error.change_id is None
    with pytest.raises(SnapNotInstalled) as caught:
        snapd.refresh('absent', '2')
    assert caught.value.status_code == 400
    with pytest.raises(SnapdAPIError) as caught:
        snapd.change('999')
    assert (caught.value.kind, caught.value.status_code) == ('error', 404)
    assert 'change 999' in caught.value.message


def test_garbage_is_a_bad_response(fake: FakeSnapd):
    fake.garbage_next(1)
    with pytest.raises(SnapdBadResponse) as caught:
        client().find_snap(SNAP)
    assert f"snap '{SNAP}'" in caught.value.message
    fake.garbage_next(1)
    with pytest.raises(SnapdBadResponse):
        client().stop([SNAP], disable=True)
    assert fake.service_state(SNAP) == {'daemon': (True, True), 'worker': (True, True)}
