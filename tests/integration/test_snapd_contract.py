# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The snapd contract (tests/snapd_contract.py) against the real snapd in the container.

The same tests run in the unit tier against FakeSnapd as 2.68 and 2.57
(tests/unit/test_snapd_contract.py); here, against Debian trixie's snapd 2.68
and bookworm's 2.57. They also run the library's hold, connect, configuration,
install and sideload operations on the real snapd.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import _snaps
import pytest
from raw_snapd import raw, result, wait_ready
from snapd_contract import PLUG, PROBE, SIDE, SnapdContract, established

if TYPE_CHECKING:
    from _container import Container
    from conftest import Probe


@dataclasses.dataclass
class RealBackend:
    """The container's snapd, through the proxy socket."""

    container: Container
    socket: str
    _files: dict[str, str] = dataclasses.field(default_factory=dict[str, str])

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.container.distro.snapd.split('.')[:2]
        return int(major), int(minor)

    def reset(self) -> None:
        _snaps.reset(self.container, 'x1')  # waits for changes in flight first
        if self.version >= (2, 58):
            self._wait(raw(self.socket, 'POST', f'/v2/snaps/{PROBE}', body={'action': 'unhold'}))
        conf = f'/v2/snaps/{PROBE}/conf'
        if keys := result(self.socket, conf):
            self._wait(raw(self.socket, 'PUT', conf, body=dict.fromkeys(keys)))
        if established(self):
            body = {
                'action': 'disconnect',
                'plugs': [{'snap': PROBE, 'plug': PLUG}],
                'slots': [{'snap': '', 'slot': ''}],
            }
            self._wait(raw(self.socket, 'POST', '/v2/interfaces', body=body))
        if result(self.socket, '/v2/snaps', snaps=SIDE):
            self.container.exec(['snap', 'remove', '--purge', SIDE], timeout=120)

    def side_file(self, version: str) -> str:
        if version not in self._files:
            inside = self.container.build_test_snap(version, name=SIDE)
            self._files[version] = str(self.container.host_path(inside))
        return self._files[version]

    def _wait(self, answer: tuple[int, dict[str, object]]) -> None:
        status, envelope = answer
        assert status == 202, envelope
        change = wait_ready(self.socket, str(envelope['change']))
        assert change['status'] == 'Done', change


@pytest.fixture(scope='session')
def real_backend(container: Container, probe: Probe) -> RealBackend:
    """One backend per container, so that the cu-side builds are made once."""
    return RealBackend(container, container.snapd_socket)


@pytest.fixture
def backend(real_backend: RealBackend, snapd_socket: str) -> RealBackend:
    """The container's snapd; the test brings it to the starting point with reset()."""
    return real_backend


class TestRealSnapd(SnapdContract):
    """The real snapd keeps the contract, and the library's operations work on it."""
