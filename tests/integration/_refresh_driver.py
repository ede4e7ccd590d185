# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""One refresh attempt in a process of its own, as ``refresh_snap`` makes it in a hook.

Run on the host with the container's snapd behind ``$CHARM_UPGRADE_SNAPD_SOCKET``
and the working directory a charm directory (``refresh_versions.toml``)::

    python _refresh_driver.py SNAP REVISION RECORDS

It runs the refresh flow that ``CharmSpecificMachines.refresh_snap`` runs, with the
default snap workload, then the health gate of ``reconcile``. The revision-recorder
port (charm-refresh's ``update_snap_revision``) is :class:`RecordingRefresh`: each
call appends to RECORDS the revision snapd reports then and the snap's changes still
in progress; it tests one call, while convergence across events is tested with the
real ``charm_refresh.Machines`` (test_refresh_convergence.py). With
``CU_IT_UNIT_STATES`` (unit names) it also records each unit's ``ActiveState`` and
whether the library holds it then. With ``CU_IT_KILL_AT_RECORD=1`` it kills its own
process with SIGKILL instead, which is a
``kill -9`` right after the change is ready and before the revision is recorded.
Prints one JSON object: the outcome, and the error if one was raised.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import signal
import sys
import time
from typing import Any

from charm_upgrade import Journal, SnapRefreshError, _systemd
from charm_upgrade._refresh_flow import REFRESH_STAGE, RefreshFlow
from charm_upgrade._snap_workload import SnapWorkload
from charm_upgrade.snapd import Snapd


def refresh_versions(snap: str, revision: str = 'x2') -> str:
    """A charm's refresh_versions.toml pinning ``snap`` at ``revision`` on this machine."""
    return (
        f'charm_major = 1\nworkload = "2.0"\ncharm = "1/1.0.0"\n\n[snap]\nname = "{snap}"\n\n'
        f'[snap.revisions]\n{platform.machine()} = "{revision}"\n'
    )


class RecordingRefresh:
    """charm-refresh's side of one attempt: the revision recorder and the next-unit flag."""

    def __init__(self, snap: str, records: pathlib.Path) -> None:
        self.snap = snap
        self.records = records
        self.in_progress = True
        self.unit_status_higher_priority = None
        self._next_unit_allowed = False

    @property
    def next_unit_allowed_to_refresh(self) -> bool:
        return self._next_unit_allowed

    @next_unit_allowed_to_refresh.setter
    def next_unit_allowed_to_refresh(self, value: bool) -> None:
        self._next_unit_allowed = value
        self._append({'next_unit_allowed_to_refresh': value})

    def update_snap_revision(self) -> None:
        if os.environ.get('CU_IT_KILL_AT_RECORD') == '1':
            os.kill(os.getpid(), signal.SIGKILL)
        # What charm-refresh would read now, and whether snapd was still busy.
        snapd = Snapd()
        in_flight = [f'{c.id} {c.kind} {c.status}' for c in snapd.changes_in_progress(self.snap)]
        entry: dict[str, Any] = {
            'revision': snapd.snap(self.snap).revision,
            'in_flight': in_flight,
        }
        units = os.environ.get('CU_IT_UNIT_STATES', '').split()
        if units:
            # What systemd says of the units at the record, and which the library holds.
            states = _systemd.show(units)
            entry['units'] = {unit: state.active_state for unit, state in states.items()}
            entry['held'] = [unit for unit in units if _systemd.is_held(unit)]
        self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        entry = {'pid': os.getpid(), 'time': time.time(), **entry}
        with self.records.open('a') as f:
            f.write(json.dumps(entry) + '\n')
            f.flush()
            os.fsync(f.fileno())


def main(snap: str, revision: str, records: str) -> dict[str, Any]:
    snapd = Snapd()
    # CU_DRIVER_HOLD=0: snapd's stop --disable and start --enable, as before the drop-in.
    hold = os.environ.get('CU_DRIVER_HOLD', '1') == '1'
    flow = RefreshFlow(
        snapd=snapd, workload=SnapWorkload(snapd, snap), journal=Journal(), hold_units=hold
    )
    refresh = RecordingRefresh(snap, pathlib.Path(records))
    began = time.monotonic()
    try:
        flow.refresh(snap, revision, refresh.update_snap_revision)
    except SnapRefreshError as e:
        cause = e.__cause__
        return {
            'ok': False,
            'seconds': time.monotonic() - began,
            'error': type(e).__name__,
            'message': str(e),
            'revision_after': e.revision_after,
            'change_status': e.change_status,
            'cause_kind': getattr(cause, 'kind', None),
            'details': _last_details(flow),
        }
    seconds = time.monotonic() - began

    def allow() -> None:
        refresh.next_unit_allowed_to_refresh = True

    flow.gate(in_progress=True, allowed=False, allow=allow, before_next_unit=lambda: None)
    return {'ok': True, 'seconds': seconds, 'details': _last_details(flow)}


def _last_details(flow: RefreshFlow) -> dict[str, Any]:
    # The details of the closing snap-refresh record: stop, refresh, start, downtime.
    # The health gate's records follow it, so pick the stage, not the last line.
    records = [r for r in flow.journal.read() if r.get('stage') == REFRESH_STAGE]
    return records[-1].get('details', {}) if records else {}


if __name__ == '__main__':
    print(json.dumps(main(*sys.argv[1:4])), flush=True)
