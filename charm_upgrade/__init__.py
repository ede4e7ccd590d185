# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Series upgrades and snap refreshes for Juju machine charms.

Series upgrades (``juju upgrade-machine`` / ``upgrade-series``):

- :class:`SeriesUpgrade`: for ops charms, takes the services down at prepare
  and brings them back after complete.
- :func:`charm_upgrade.reactive.register_series_upgrade_handlers`: the same
  for charms.reactive charms (``pip install 'juju-charm-upgrade[reactive]'``).
- :class:`SystemdServices`, :class:`SnapServices`: the services to take down.
- :class:`SeriesUpgradeFlow`: the framework-free flow both adapters drive.

Snap refreshes driven by charm-refresh:

- :class:`CharmSpecificMachines`: implements ``refresh_snap`` by charm-refresh's contract.

Migrations (:mod:`charm_upgrade._migrations`): :class:`Migrations`, a
registry of :class:`Migration` objects with ``up`` and ``down``, run after a
series upgrade or a snap refresh, each called with a :class:`MigrationContext`.

Machine paths: :func:`machine_path` maps a path of the unit's machine (a unit file, the
workload's data) to where it is for the running unit: itself on a machine, a directory of
the simulated unit's own under the test kit.

Shared pieces: :class:`Journal` (and its :class:`TimelineEntry`), the exceptions under
:class:`CharmUpgradeError`, the modules :mod:`charm_upgrade._flags` and
:mod:`charm_upgrade.snapd`, and the test kit :mod:`charm_upgrade.testing`.

Importing the package is cheap: ops, charm-refresh and the snapd client are imported
only when a name that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._machine import machine_path
from ._version import __version__
from .errors import (
    ChangeConflict,
    ChangeFailed,
    CharmUpgradeError,
    InterfacesUnchanged,
    MigrationError,
    RevisionNotAvailable,
    ServiceError,
    SnapdAPIError,
    SnapdBadResponse,
    SnapdError,
    SnapdTimeout,
    SnapdUnreachable,
    SnapNotInstalled,
    SnapRefreshError,
    StateFileError,
    StateLockTimeout,
    SystemdError,
)

if TYPE_CHECKING:
    from ._journal import Journal, TimelineEntry
    from ._migrations import Migration, MigrationContext, Migrations
    from ._preview import Preview, ServicePreview
    from ._records import RefreshRecord
    from ._refresh import CharmSpecificMachines
    from ._series import SeriesUpgrade
    from ._series_flow import SeriesUpgradeFlow, Step
    from ._services import Services, SnapServices
    from ._systemd_services import SystemdServices

__all__ = [
    'ChangeConflict',
    'ChangeFailed',
    'CharmSpecificMachines',
    'CharmUpgradeError',
    'InterfacesUnchanged',
    'Journal',
    'Migration',
    'MigrationContext',
    'MigrationError',
    'Migrations',
    'Preview',
    'RefreshRecord',
    'RevisionNotAvailable',
    'SeriesUpgrade',
    'SeriesUpgradeFlow',
    'ServiceError',
    'ServicePreview',
    'Services',
    'SnapNotInstalled',
    'SnapRefreshError',
    'SnapServices',
    'SnapdAPIError',
    'SnapdBadResponse',
    'SnapdError',
    'SnapdTimeout',
    'SnapdUnreachable',
    'StateFileError',
    'StateLockTimeout',
    'Step',
    'SystemdError',
    'SystemdServices',
    'TimelineEntry',
    '__version__',
    'machine_path',
]

# Public name -> the private module that defines it, imported on first use.
_LAZY = {
    'CharmSpecificMachines': '_refresh',
    'Journal': '_journal',
    'Migration': '_migrations',
    'MigrationContext': '_migrations',
    'Migrations': '_migrations',
    'Preview': '_preview',
    'RefreshRecord': '_records',
    'ServicePreview': '_preview',
    'SeriesUpgrade': '_series',
    'SeriesUpgradeFlow': '_series_flow',
    'Services': '_services',
    'SnapServices': '_services',
    'Step': '_series_flow',
    'SystemdServices': '_systemd_services',
    'TimelineEntry': '_journal',
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{module}', __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
