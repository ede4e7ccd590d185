# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Fixtures shared by the unit and ops.testing tiers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

# The shared contract test lives outside the test modules: rewrite its asserts too.
pytest.register_assert_rewrite('snapd_contract')

from charm_upgrade import _bases  # noqa: E402
from charm_upgrade.testing._fake_systemd import FakeSystemd  # noqa: E402

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def state_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Every test gets its own unit state directory."""
    path = tmp_path / 'unit-state'
    monkeypatch.setenv('CHARM_UPGRADE_STATE_DIR', str(path))
    return path


@pytest.fixture
def os_release(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """An os-release file saying Ubuntu 22.04; tests rewrite it to 'upgrade' the OS."""
    path = tmp_path / 'os-release'
    path.write_text('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n')
    monkeypatch.setattr(_bases, 'OS_RELEASE', str(path))
    return path


@pytest.fixture
def fake_systemd(tmp_path: pathlib.Path) -> Iterator[FakeSystemd]:
    """A stand-in systemctl first on PATH."""
    with FakeSystemd(tmp_path / 'systemd') as systemd:
        yield systemd
