# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The snapd contract (tests/snapd_contract.py) against FakeSnapd as snapd 2.68 and 2.57.

The integration tier runs the same tests against the real snapd of those
releases (tests/integration/test_snapd_contract.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
from snapd_contract import PLUG, PROBE, SIDE, SnapdContract

from charm_upgrade.testing import FakeSnapd

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator


@dataclasses.dataclass
class FakeBackend:
    """A fresh FakeSnapd for each test, with cu-probe as the container has it."""

    fake: FakeSnapd
    directory: pathlib.Path

    @property
    def socket(self) -> str:
        return self.fake.socket_path

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.fake.version.split('.')[:2]
        return int(major), int(minor)

    def reset(self) -> None:
        self.fake.add_snap(
            PROBE,
            revision='x1',
            revisions=('x2',),
            services=('web', 'worker'),
            plugs=('network-bind', PLUG),
        )

    def side_file(self, version: str) -> str:
        path = self.directory / f'{SIDE}_{version}.snap'
        FakeSnapd.write_snap_file(path, SIDE, version=version, services=['worker'], plugs=[PLUG])
        return str(path)


@pytest.fixture(params=['2.68', '2.57'])
def backend(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[FakeBackend]:
    # Long enough changes that a test sees them in flight, as with the real snapd.
    with FakeSnapd(version=request.param, change_duration=0.3) as fake:
        yield FakeBackend(fake, tmp_path)


class TestFakeSnapd(SnapdContract):
    """FakeSnapd keeps the contract."""
