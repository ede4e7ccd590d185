# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures for :mod:`charm_upgrade.testing`.

Installed with charm-upgrade as the ``pytest11`` entry point ``charm_upgrade``, so pytest loads
it in every project that has the library; ``-p no:charm_upgrade`` turns it off. Only pytest
imports this module (:mod:`charm_upgrade.testing` itself never imports pytest), and the
fixtures import the kit when they are first used, so the plugin costs nothing at collection.

Fixtures:

- ``fake_snapd``: a started :class:`~charm_upgrade.testing.FakeSnapd`, entered, so that
  charm-upgrade and charm-refresh talk to it; stopped after the test. Attached to
  ``fake_systemd`` when the test uses both.
- ``fake_systemd``: a :class:`~charm_upgrade.testing.FakeSystemd` first on ``PATH`` during the
  test, kept under the test's ``tmp_path``.
- ``rolling_refresh``: a factory with :class:`~charm_upgrade.testing.RollingRefresh`'s
  arguments; each application made lives under ``tmp_path`` and is closed after the test.

A conftest fixture of the same name takes precedence over these, as pytest's rules say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable, Iterator

    import ops

    from ._fake_snapd import FakeSnapd
    from ._fake_systemd import FakeSystemd
    from ._rolling import RollingRefresh

__all__ = ['fake_snapd', 'fake_systemd', 'rolling_refresh']


@pytest.fixture
def fake_snapd(request: pytest.FixtureRequest) -> Iterator[FakeSnapd]:
    """A FakeSnapd, started and entered: snapd for charm-upgrade and charm-refresh.

    Add snaps with ``fake_snapd.add_snap(...)``; inject faults with its ``fail_next_refresh``,
    ``conflict_next`` and the like. In a test that also uses ``fake_systemd``, the snaps'
    services are that machine's ``snap.<snap>.<app>.service`` units (see ``FakeSnapd.attach``).
    """
    from ._fake_snapd import FakeSnapd

    with FakeSnapd() as snapd:
        if 'fake_systemd' in request.fixturenames:
            snapd.attach(request.getfixturevalue('fake_systemd'))
        yield snapd


@pytest.fixture
def fake_systemd(tmp_path: pathlib.Path) -> Iterator[FakeSystemd]:
    """A stand-in ``systemctl`` first on ``PATH`` for the test; add units with ``add_unit``."""
    from ._fake_systemd import FakeSystemd

    with FakeSystemd(tmp_path / 'fake-systemd') as systemd:
        yield systemd


@pytest.fixture
def rolling_refresh(tmp_path: pathlib.Path) -> Iterator[Callable[..., RollingRefresh[Any]]]:
    """Make RollingRefresh applications: ``rolling_refresh(MyCharm, snap=..., ...)``.

    Takes :class:`~charm_upgrade.testing.RollingRefresh`'s arguments; ``root`` defaults to a
    new directory under ``tmp_path``. Each application is closed after the test (its fake
    snapds stopped). Call ``install()`` on it to deploy.
    """
    from ._rolling import RollingRefresh

    made: list[RollingRefresh[Any]] = []

    def make(charm_type: type[ops.CharmBase], **kwargs: Any) -> RollingRefresh[Any]:
        kwargs.setdefault('root', tmp_path / f'rolling-refresh-{len(made)}')
        app = RollingRefresh(charm_type, **kwargs)
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()
