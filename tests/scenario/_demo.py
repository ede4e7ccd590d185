# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The example charm (examples/charm) as the scenario tests deploy it with the test kit."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

from charm_upgrade.testing import RollingRefresh

CHARM_DIR = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'charm'
sys.path.insert(0, str(CHARM_DIR / 'src'))

import charm  # noqa: E402
from charm import UpgradeDemoCharm  # noqa: E402

SNAP = 'upgrade-demo'
App = RollingRefresh[UpgradeDemoCharm]

__all__ = ['CHARM_DIR', 'SNAP', 'App', 'charm', 'deploy']


def deploy(units: int, *, revisions: tuple[str, ...] = ('3',), **kwargs: Any) -> App:
    """The example charm on ``units`` units, snap revision 2 installed, ``revisions`` in store.

    Not installed yet (``app.install()`` runs the install events); close it when done.
    """
    return RollingRefresh(
        UpgradeDemoCharm,
        units=units,
        snap=SNAP,
        revision='2',
        revisions=list(revisions),
        services=['server'],
        charm_version='1/1.0.0',
        change_duration=0.005,
        **kwargs,
    )
