# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A rolling snap refresh of the real charm-refresh under ops.testing (RollingRefresh).

Wall time of a 3-unit rolling refresh (``juju refresh``, the pause after the first unit,
``resume-refresh``, until every unit runs the new revision; target < 2 s), then the hook-tool
calls charm-refresh makes per event, and how they grow with 3, 5 and 9 units. Each unit has its
own fake snapd, whose changes take CHANGE_S; that wait is part of the wall time. The same refresh
is also timed with unit 0's machine prepared for a series upgrade meanwhile and completed after
(RollingRefresh holds its events, as Juju does).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import charm_refresh
import ops
from _stats import median_ms, p90_ms, table

from charm_upgrade.snapd import Snapd
from charm_upgrade.testing._rolling import RollingRefresh

ROUNDS = 5
SIZES = [3, 5, 9]
CHANGE_S = 0.01
META: dict[str, Any] = {
    'name': 'tiny',
    'peers': {'refresh-v-three': {'interface': 'refresh'}},
    'config': {'options': {'pause-after-unit-refresh': {'type': 'string', 'default': 'first'}}},
    'actions': {
        'pre-refresh-check': {},
        'force-refresh-start': {
            'params': {
                name: {'type': 'boolean', 'default': True}
                for name in (
                    'check-compatibility',
                    'run-pre-refresh-checks',
                    'check-workload-container',
                )
            }
        },
        'resume-refresh': {
            'params': {'check-health-of-refreshed-units': {'type': 'boolean', 'default': True}}
        },
    },
}


@dataclasses.dataclass(eq=False)
class TinyRefresh(charm_refresh.CharmSpecificMachines):
    @staticmethod
    def run_pre_refresh_checks_after_1_unit_refreshed() -> None:
        pass

    @classmethod
    def is_compatible(cls, **versions: Any) -> bool:
        return super().is_compatible(**versions)

    def refresh_snap(
        self, *, snap_name: str, snap_revision: str, refresh: charm_refresh.Machines
    ) -> None:
        snapd = Snapd()
        snapd.wait_done(snapd.refresh(snap_name, snap_revision))
        refresh.update_snap_revision()
        refresh.next_unit_allowed_to_refresh = True


class TinyCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        try:
            refresh = charm_refresh.Machines(TinyRefresh(workload_name='Tiny', charm_name='tiny'))
        except charm_refresh.PeerRelationNotReady:
            self.unit.status = ops.WaitingStatus('Waiting for peers')
            return
        self.unit.status = (
            refresh.unit_status_higher_priority
            or refresh.unit_status_lower_priority()
            or ops.ActiveStatus()
        )
        if self.unit.is_leader():
            self.app.status = refresh.app_status_higher_priority or ops.ActiveStatus()


def deployed(units: int) -> RollingRefresh[TinyCharm]:
    app = RollingRefresh(
        TinyCharm,
        units=units,
        snap='tiny',
        revision='10',
        revisions=['11'],
        charm_version='1/1.0.0',
        meta=META,
        change_duration=CHANGE_S,
    )
    app.install()
    return app


def rolling_refresh(app: RollingRefresh[TinyCharm]) -> float:
    start = time.perf_counter()
    app.refresh('1/1.1.0', '11')
    outcome = app.run_action(app.units[-2], 'resume-refresh')
    elapsed = time.perf_counter() - start
    assert outcome.ok, outcome.failure
    assert app.refresh_order == sorted(app.units, reverse=True), app.refresh_order
    return elapsed


def series_upgrade(app: RollingRefresh[TinyCharm]) -> float:
    """Prepare and complete a series upgrade of unit 0's machine while the others refresh."""
    start = time.perf_counter()
    app.prepare_series_upgrade(0, 'ubuntu@24.04')
    app.refresh('1/1.1.0', '11')
    app.run_action(1, 'resume-refresh')
    assert app.refresh_order == [2, 1], app.refresh_order  # unit 0 runs nothing meanwhile
    app.complete_series_upgrade(0)
    elapsed = time.perf_counter() - start
    assert app.refresh_order == [2, 1, 0], app.refresh_order
    assert app.base(0) == 'ubuntu@24.04'
    return elapsed


def main() -> None:
    samples: list[float] = []
    series: list[float] = []
    for _ in range(ROUNDS):
        with deployed(3) as app:
            samples.append(rolling_refresh(app))
        with deployed(3) as app:
            series.append(series_upgrade(app))
    print(f'3-unit rolling refresh, {ROUNDS} rounds, snapd changes of {CHANGE_S * 1000:.0f} ms:')
    print(
        table(
            ['', 'median ms', 'p90 ms', 'target ms'],
            [
                ['rolling refresh', f'{median_ms(samples):.0f}', f'{p90_ms(samples):.0f}', '2000'],
                [
                    'same, unit 0 in a series upgrade',
                    f'{median_ms(series):.0f}',
                    f'{p90_ms(series):.0f}',
                    '',
                ],
            ],
        )
    )

    rows: list[list[object]] = []
    for units in SIZES:
        with deployed(units) as app:
            install_events = list(app.events)
            first = len(app.events)
            wall = rolling_refresh(app)
            refresh_events = app.events[first:]
            first = len(app.events)
            app.update_status()
            steady = app.events[first:]
        per_event = [r.total_calls for r in refresh_events]
        rows.append(
            [
                units,
                len(install_events),
                len(refresh_events),
                f'{wall * 1000:.0f}',
                f'{statistics.median(per_event):.0f}',
                max(per_event),
                sum(per_event),
                f'{statistics.median(r.total_calls for r in steady):.0f}',
                max(r.total_calls for r in steady),
            ]
        )
    print('\nHook-tool calls per event (charm-api and charm-refresh), by application size:')
    print(
        table(
            [
                'units',
                'install events',
                'refresh events',
                'refresh ms',
                'median calls/event',
                'max',
                'total calls',
                'update-status median',
                'update-status max',
            ],
            rows,
        )
    )


if __name__ == '__main__':
    main()
