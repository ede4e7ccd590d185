# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the reactive tier: a reactive charm's unit whose hooks run for real."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from _reactive_unit import ReactiveUnit

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable

    from charm_upgrade.testing import FakeSystemd


@pytest.fixture
def make_unit(
    tmp_path: pathlib.Path, os_release: pathlib.Path, fake_systemd: FakeSystemd
) -> Callable[[str], ReactiveUnit]:
    """Make a unit of a reactive charm whose ``reactive/myapp.py`` is the source given.

    The stand-in systemctl is on PATH for its hooks, and the machine runs
    Ubuntu 22.04 until the test calls ``unit.upgrade_os()``.
    """

    def make(charm_module: str) -> ReactiveUnit:
        return ReactiveUnit(tmp_path / 'unit', charm_module, os_release)

    return make
