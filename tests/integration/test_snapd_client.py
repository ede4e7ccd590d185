# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The snapd client's rule for a write whose answer is lost, against the real snapd.

Between the client and the container's snapd sits a relay that passes the
request on whole and then loses snapd's answer, as when a connection breaks
after snapd received a write. The client must find the change snapd made
(through the changes of that snap, and snapd's own clock for a change that is
already done) and return its id, never send the write again.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING

import _snaps
import pytest
from raw_snapd import UnixServer, read_request, result

from charm_upgrade import SnapdUnreachable
from charm_upgrade.snapd import Snapd

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _container import Container
    from conftest import Probe


class LosingRelay(UnixServer):
    """A unix socket that relays to snapd and drops the answers of the first ``lose`` writes."""

    def __init__(self, target: str, lose: int):
        self.target = target
        self.lose = lose
        self.writes = 0
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            upstream.settimeout(60)
            upstream.connect(self.target)
            request = read_request(conn)
            # snapd keeps connections open; this relay reads one answer to its end.
            head, _, rest = request.partition(b'\r\n')
            upstream.sendall(head + b'\r\nConnection: close\r\n' + rest)
            chunks: list[bytes] = []
            while piece := upstream.recv(65536):
                chunks.append(piece)
        if not request.startswith(b'GET '):
            self.writes += 1
            if self.writes <= self.lose:
                return  # snapd acted; its answer is lost
        conn.sendall(b''.join(chunks))


@contextlib.contextmanager
def losing_relay(container: Container, lose: int = 1) -> Iterator[LosingRelay]:
    relay = LosingRelay(container.snapd_socket, lose)
    try:
        yield relay
    finally:
        relay.close()


def test_a_refresh_whose_answer_is_lost_returns_the_change_snapd_made(
    container: Container, probe: Probe, snapd_socket: str
) -> None:
    _snaps.reset(container, 'x1')
    since = _snaps.last_change_id()
    with losing_relay(container) as relay:
        change_id = Snapd(socket=relay.path).refresh(_snaps.PROBE, 'x2')
        assert relay.writes == 1  # sent once, its answer lost, not sent again
    made = _snaps.changes_since(since)
    assert [(c['id'], c['kind']) for c in made] == [(change_id, 'refresh-snap')]
    assert _snaps.wait_change(change_id)['status'] == 'Done'
    assert _snaps.revision() == 'x2'


def test_a_quick_write_whose_answer_is_lost_is_found_by_its_time(
    container: Container, probe: Probe, snapd_socket: str
) -> None:
    # A configuration change may be done before the client asks: found as a
    # change of its kind that snapd spawned after the request was sent.
    _snaps.reset(container, 'x1')
    snapd = Snapd(socket=snapd_socket)
    snapd.wait_done(snapd.set_conf(_snaps.PROBE, {'relay': 1}))  # an earlier one, not it
    since = _snaps.last_change_id()
    with losing_relay(container) as relay:
        change_id = Snapd(socket=relay.path).set_conf(_snaps.PROBE, {'relay': 2})
    made = _snaps.changes_since(since)
    assert [(c['id'], c['kind']) for c in made] == [(change_id, 'configure-snap')]
    assert snapd.wait_done(change_id).kind == 'configure-snap'
    assert result(snapd_socket, f'/v2/snaps/{_snaps.PROBE}/conf', keys='relay') == {'relay': 2}
    snapd.wait_done(snapd.set_conf(_snaps.PROBE, {'relay': None}))


def test_a_refused_write_whose_answer_is_lost_is_raised(
    container: Container, probe: Probe, snapd_socket: str
) -> None:
    _snaps.reset(container, 'x1')
    since = _snaps.last_change_id()
    with losing_relay(container) as relay, pytest.raises(SnapdUnreachable) as caught:
        Snapd(socket=relay.path).refresh(_snaps.PROBE, 'x77')  # snapd refuses it
    error = caught.value
    assert error.request_sent
    assert 'made no refresh-snap change' in error.message
    assert _snaps.changes_since(since) == []
