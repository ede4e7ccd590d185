# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Test kit for charms that use charm-upgrade (and charm-refresh).

Fakes that let the library's real code run in unit tests:

- :class:`FakeSnapd`: snapd's REST API on a real unix socket, with faults to
  inject, so that :mod:`charm_upgrade.snapd`, charm-refresh and any other client talk
  to it as they would to snapd.
- :class:`FakeSystemd`: a stand-in ``systemctl`` on ``PATH``.

charm-refresh for real inside ``ops.testing``:

- :class:`RefreshHarness`: runs one unit's events with the real
  ``charm_refresh.Machines``, its hook tools answered from the ops.testing
  state, and simulates ``juju refresh``.
- :class:`RollingRefresh`: several units of one application sharing the
  peer relation, events delivered unit by unit as Juju would, each unit on a
  machine of its own (a FakeSystemd and an os-release file) for series
  upgrades; any event can be killed after a given line of the library's code
  (:meth:`RollingRefresh.kill_next_event`, :class:`HookKilled`), to test that
  an upgrade converges from wherever a hook dies.

Each simulated unit has a machine root of its own, a directory that stands for its
``/``: :func:`charm_upgrade.machine_path` maps the charm's machine paths (unit files,
data, ``backup=`` paths) into it during the unit's events. A run in which a refresh is
in progress and the charm never called ``reconcile()`` fails with
:class:`ReconcileNotCalledError`.

Importing this package does not import pytest; nothing in the library
imports it. A pytest plugin, registered as the ``pytest11`` entry point
``charm_upgrade``, provides the fixtures ``fake_snapd``, ``fake_systemd`` and
``rolling_refresh``. Each name is imported on first use, so that a test that needs only
:class:`FakeSystemd` does not import ops.testing and charm-refresh.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._fake_snapd import FakeSnapd, RecordedRequest
    from ._fake_systemd import FakeSystemd
    from ._kill import HookKilled
    from ._refresh_harness import (
        CHARM_REFRESH_META,
        PEER_ENDPOINT,
        EventCalls,
        ReconcileNotCalledError,
        RefreshHarness,
        RefreshVersions,
    )
    from ._rolling import ActionOutcome, EventRecord, RollingRefresh

__all__ = [
    'CHARM_REFRESH_META',
    'PEER_ENDPOINT',
    'ActionOutcome',
    'EventCalls',
    'EventRecord',
    'FakeSnapd',
    'FakeSystemd',
    'HookKilled',
    'ReconcileNotCalledError',
    'RecordedRequest',
    'RefreshHarness',
    'RefreshVersions',
    'RollingRefresh',
]

# Public name -> the private module that defines it.
_LAZY = {
    'CHARM_REFRESH_META': '_refresh_harness',
    'PEER_ENDPOINT': '_refresh_harness',
    'ActionOutcome': '_rolling',
    'EventCalls': '_refresh_harness',
    'EventRecord': '_rolling',
    'FakeSnapd': '_fake_snapd',
    'FakeSystemd': '_fake_systemd',
    'HookKilled': '_kill',
    'ReconcileNotCalledError': '_refresh_harness',
    'RecordedRequest': '_fake_snapd',
    'RefreshHarness': '_refresh_harness',
    'RefreshVersions': '_refresh_harness',
    'RollingRefresh': '_rolling',
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{module}', __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
