# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""One Juju event of a charm with the real ``charm_refresh.Machines``, in a process of its own.

Run on the host with the container's snapd behind ``$CHARM_UPGRADE_SNAPD_SOCKET`` and the
working directory the unit's charm directory::

    python _machines_driver.py EVENT CHARM_VERSION REVISION STATE_JSON

The charm is :class:`ProbeCharm`: ``CharmSpecificMachines`` with the library's defaults,
``charm_refresh.Machines`` built first in ``__init__`` and ``reconcile`` at every event, as
the refresh how-to says. The test kit's :class:`~charm_upgrade.testing.RefreshHarness` runs
the event under ops.testing and answers charm-refresh's hook tools; charm-refresh and the
library both talk to the real snapd. The unit's peer databags live in STATE_JSON between
processes: read before the event, written back only if the event ends without error, as
Juju keeps a hook's relation writes only then. ``CHARM_VERSION`` and ``REVISION`` are the
charm code on the unit (its ``refresh_versions.toml``; a new one is a ``juju refresh``).

With ``CU_IT_KILL_AT_START=1`` the process kills itself with SIGKILL when the library is
about to start the workload after the refresh: the change is done, the revision may be
recorded in the (lost) databag, the workload is still stopped. Prints one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import signal
import sys
from typing import Any

import charm_refresh
import ops
from ops import testing

from charm_upgrade import CharmSpecificMachines
from charm_upgrade._refresh import _HookWorkload
from charm_upgrade.testing import CHARM_REFRESH_META, RefreshHarness, RefreshVersions

EPOCH = 1767225600.0  # when the first charm revision was deployed (simulated)
META: dict[str, Any] = {'name': 'cu-probe-charm', **CHARM_REFRESH_META}


@dataclasses.dataclass(eq=False)
class ProbeRefresh(CharmSpecificMachines):
    """The smallest charm-specific class: the library's defaults do the work."""

    @classmethod
    def is_compatible(cls, **kwargs: Any) -> bool:  # type: ignore[override]
        return True

    @staticmethod
    def run_pre_refresh_checks_after_1_unit_refreshed() -> None:
        pass


class ProbeCharm(ops.CharmBase):
    """The refresh how-to's charm: Machines first, reconcile at every event."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.specific = ProbeRefresh(
            workload_name='Probe', charm_name='cu-probe-charm', charm=self, hold=False
        )
        try:
            self.refresh = charm_refresh.Machines(self.specific)
        except (charm_refresh.PeerRelationNotReady, charm_refresh.UnitTearingDown):
            self.refresh = None
        if self.refresh is not None:
            self.specific.reconcile(self.refresh)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(ops.ActiveStatus())


def kill_at_start() -> None:
    """SIGKILL this process when the library is about to start the workload."""

    def start(self: _HookWorkload, record: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    _HookWorkload.start = start  # type: ignore[method-assign]


def main(event: str, charm_version: str, revision: str, state_json: str) -> dict[str, Any]:
    if os.environ.get('CU_IT_KILL_AT_START') == '1':
        kill_at_start()
    state_path = pathlib.Path(state_json)
    saved = json.loads(state_path.read_text()) if state_path.exists() else {}
    generation = 1 if charm_version == '1/1.0.0' else 2
    harness = RefreshHarness(
        ProbeCharm,
        versions=RefreshVersions(
            charm=charm_version,
            workload={'x1': '1.0', 'x2': '2.0'}[revision],
            snap='cu-probe',
            revisions={platform.machine(): revision},
        ),
        charm_dir=pathlib.Path.cwd(),
        meta=META,
        charm_revision=generation,
        snapd_socket=os.environ['CHARM_UPGRADE_SNAPD_SOCKET'],
        goal_units=[0],
        # A new charm revision is a later .juju-charm: how charm-refresh notices it.
        mtime=EPOCH + 60 * (generation - 1),
    )
    try:
        relation = testing.PeerRelation(
            'refresh-v-three',
            id=1,
            local_unit_data=saved.get('unit', {}),
            local_app_data=saved.get('app', {}),
        )
        state = testing.State(leader=True, relations=[relation], planned_units=1)
        try:
            output = harness.run(getattr(harness.ctx.on, event)(), state)
        except testing.errors.UncaughtCharmError as e:
            cause = e.__cause__
            return {'ok': False, 'error': f'{type(cause).__name__}: {cause}'}
        peer = output.get_relation(1)
        state_path.write_text(
            json.dumps({'unit': dict(peer.local_unit_data), 'app': dict(peer.local_app_data)})
        )
        status = output.unit_status
        return {'ok': True, 'status': [status.name, status.message]}
    finally:
        harness.close()


if __name__ == '__main__':
    print(json.dumps(main(*sys.argv[1:5])), flush=True)
