# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The library's share of workload downtime in a snap refresh (``refresh_snap``).

N refreshes alternating between two revisions against FakeSnapd, whose
refresh change takes a set time, through the refresh flow that
``CharmSpecificMachines.refresh_snap`` runs, with the default snap workload
(its units held with the drop-in, stopped and started with ``systemctl``, here
FakeSystemd's), then the health gate that ``reconcile`` runs. The workload is
down from just before the stop to just after the start (the ``downtime`` the
library journals); the library's share is that minus the time snapd spent in
its changes of the window (FakeSnapd's spawn-to-ready times) and minus the two
``systemctl`` processes of the window (the stop and the start), whose cost is
measured in the same run: FakeSystemd's ``systemctl`` is a Python process, far
slower to start than systemd's; ``bench_integration`` measures the real ones.
The target is a median of at most 50 ms. Also counted: snapd requests per
successful refresh, with the polls of a change (``GET /v2/changes/{id}``)
apart. The revision recorder costs nothing here (charm-refresh's
``update_snap_revision`` reads snapd and writes the peer databag).
"""

from __future__ import annotations

import functools
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from _stats import median_ms, p90_ms, table

from charm_upgrade._journal import Journal
from charm_upgrade._refresh_flow import REFRESH_STAGE, RefreshFlow
from charm_upgrade._snap_workload import SnapWorkload
from charm_upgrade.snapd import Snapd
from charm_upgrade.testing import FakeSnapd, FakeSystemd

SNAP = 'bench-app'
RUNS = [(0.2, 20), (1.0, 6)]  # (change duration in seconds, refreshes)
TARGET_MS = 50.0


def systemctl_seconds() -> float:
    """The median time of one FakeSystemd ``systemctl`` process (a ``show``), measured now."""
    times: list[float] = []
    for _ in range(7):
        began = time.perf_counter()
        subprocess.run(['systemctl', 'show', 'bench.service'], capture_output=True, check=False)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def run(change_duration: float, count: int) -> list[object]:
    shares: list[float] = []
    downtimes: list[float] = []
    totals: list[int] = []
    polls: list[int] = []
    with (
        FakeSnapd(change_duration=change_duration) as fake,
        tempfile.TemporaryDirectory(prefix='bench-systemd-') as machine,
        FakeSystemd(pathlib.Path(machine)) as systemd,
    ):
        fake.attach(systemd)
        one_systemctl = systemctl_seconds()
        fake.add_snap(SNAP, revision='x1', services=('daemon', 'worker'), revisions=('x2',))
        journal = Journal()
        snapd = Snapd()
        allowed: list[int] = []
        for i in range(count):
            target = 'x2' if i % 2 == 0 else 'x1'
            seen = len(fake.change_durations())
            fake.clear_requests()
            # One flow per event, as the adapter builds it; then reconcile's health gate.
            flow = RefreshFlow(snapd=snapd, workload=SnapWorkload(snapd, SNAP), journal=journal)
            flow.refresh(SNAP, target, lambda: None)
            flow.gate(
                in_progress=True,
                allowed=False,
                allow=functools.partial(allowed.append, i),
                before_next_unit=lambda: None,
            )
            assert fake.revision(SNAP) == target, 'refresh did not happen'
            assert allowed[-1:] == [i], 'unit not healthy'
            record = [r for r in journal.read() if r['stage'] == REFRESH_STAGE][-1]
            assert record['event'] == 'ended'
            downtime = float(record['details']['downtime'])
            in_snapd = sum(fake.change_durations()[seen:])  # the refresh
            shares.append(downtime - in_snapd - 2 * one_systemctl)
            downtimes.append(downtime)
            requests = fake.requests
            totals.append(len(requests))
            polls.append(
                sum(r.method == 'GET' and r.path.startswith('/v2/changes/') for r in requests)
            )
    verdict = 'ok' if median_ms(shares) <= TARGET_MS else 'OVER TARGET'
    return [
        f'{change_duration:g} s',
        count,
        f'{median_ms(downtimes):.0f}',
        f'{one_systemctl * 1000:.0f}',
        f'{median_ms(shares):.1f}',
        f'{p90_ms(shares):.1f}',
        verdict,
        f'{sorted(totals)[len(totals) // 2]}',
        f'{sorted(polls)[len(polls) // 2]}',
        f'{sorted(totals)[len(totals) // 2] - sorted(polls)[len(polls) // 2]}',
    ]


def main() -> None:
    cwd = os.getcwd()
    saved = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix='bench-refresh-', dir='/tmp') as root:
            os.environ['CHARM_UPGRADE_STATE_DIR'] = os.path.join(root, 'state')
            rows = [run(duration, count) for duration, count in RUNS]
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    print(
        table(
            [
                'change',
                'N',
                'downtime ms (median)',
                'one fake systemctl ms',
                'library share ms (median)',
                'share p90',
                f'<= {TARGET_MS:g} ms',
                'requests',
                'of which polls',
                'other requests',
            ],
            rows,
        )
    )
    print(
        'requests: per successful refresh (median), from the in-flight check to the '
        "health check; polls: GET /v2/changes/{id}; share: without snapd's changes and the "
        "two systemctl processes (FakeSystemd's, measured in the run)"
    )
    sys.stdout.flush()


if __name__ == '__main__':
    main()
