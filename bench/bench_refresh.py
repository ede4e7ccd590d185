# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The library's share of workload downtime in CharmSpecificMachines.refresh_snap.

N refreshes alternating between two revisions against FakeSnapd, whose
changes (stop, refresh, start) each take a set time. The workload is down
from just before the stop to just after the start (the ``downtime`` the
library journals); the library's share is that minus the time snapd spent
in the three changes of the window (FakeSnapd's spawn-to-ready times). The
target is a median of at most 50 ms. Also counted: snapd requests per
successful refresh, with the polls of a change (``GET /v2/changes/{id}``)
apart. charm-refresh's ``Machines`` is a stand-in whose
``update_snap_revision`` costs nothing (the real one reads snapd and writes
the peer databag).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
from typing import TYPE_CHECKING, Any, cast

from _stats import median_ms, p90_ms, table

from charm_upgrade._journal import Journal
from charm_upgrade._refresh import JOURNAL_STAGE, CharmSpecificMachines
from charm_upgrade.testing import FakeSnapd

if TYPE_CHECKING:
    import charm_refresh

SNAP = 'bench-app'
RUNS = [(0.2, 20), (1.0, 6)]  # (change duration in seconds, refreshes)
TARGET_MS = 50.0


class StandInRefresh:
    """charm_refresh.Machines' public API, free of cost."""

    in_progress = True
    unit_status_higher_priority = None

    def __init__(self) -> None:
        self._allowed = False

    def update_snap_revision(self) -> None:
        self._allowed = False

    @property
    def next_unit_allowed_to_refresh(self) -> bool:
        return self._allowed

    @next_unit_allowed_to_refresh.setter
    def next_unit_allowed_to_refresh(self, value: bool) -> None:
        self._allowed = value


@dataclasses.dataclass(eq=False)
class BenchRefresh(CharmSpecificMachines):
    @classmethod
    def is_compatible(cls, **kwargs: Any) -> bool:
        return True

    @staticmethod
    def run_pre_refresh_checks_after_1_unit_refreshed() -> None:
        pass


def setup_charm_dir(root: str) -> None:
    """The hook's CWD (refresh_versions.toml), state dir, and a status-get on PATH."""
    charm = os.path.join(root, 'charm')
    tools = os.path.join(root, 'tools')
    os.mkdir(charm)
    os.mkdir(tools)
    with open(os.path.join(charm, 'refresh_versions.toml'), 'w') as f:
        f.write(
            'charm_major = 1\nworkload = "1.0"\ncharm = "1/1.0.0"\n'
            f'[snap]\nname = "{SNAP}"\n[snap.revisions]\n{platform.machine()} = "x2"\n'
        )
    status_get = os.path.join(tools, 'status-get')
    with open(status_get, 'w') as f:
        f.write('#!/bin/sh\necho \'{"status": "active", "message": ""}\'\n')
    os.chmod(status_get, 0o700)
    os.environ['PATH'] = f'{tools}{os.pathsep}{os.environ["PATH"]}'
    os.environ['CHARM_UPGRADE_STATE_DIR'] = os.path.join(root, 'state')
    os.chdir(charm)


def run(change_duration: float, count: int) -> list[object]:
    shares: list[float] = []
    downtimes: list[float] = []
    totals: list[int] = []
    polls: list[int] = []
    with FakeSnapd(change_duration=change_duration) as fake:
        fake.add_snap(SNAP, revision='x1', services=('daemon', 'worker'), revisions=('x2',))
        journal = Journal()
        cs = BenchRefresh(workload_name='Bench', charm_name='bench', journal=journal)
        for i in range(count):
            target = 'x2' if i % 2 == 0 else 'x1'
            seen = len(fake.change_durations())
            fake.clear_requests()
            refresh = StandInRefresh()
            cs.refresh_snap(
                snap_name=SNAP,
                snap_revision=target,
                refresh=cast('charm_refresh.Machines', refresh),
            )
            assert fake.revision(SNAP) == target, 'refresh did not happen'
            assert refresh.next_unit_allowed_to_refresh, 'unit not healthy'
            record = [r for r in journal.read() if r['stage'] == JOURNAL_STAGE][-1]
            assert record['event'] == 'ended'
            downtime = float(record['details']['downtime'])
            in_snapd = sum(fake.change_durations()[seen:])  # stop, refresh, start
            shares.append(downtime - in_snapd)
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
            setup_charm_dir(root)
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
        'health check; polls: GET /v2/changes/{id}'
    )
    sys.stdout.flush()


if __name__ == '__main__':
    main()
