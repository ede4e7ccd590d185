#!/usr/bin/env python3
# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The README's demo: three units of the example charm through a series upgrade and refreshes.

Everything real runs: the example charm (examples/charm), charm-upgrade, and charm-refresh's
``Machines``, under ops.testing with charm_upgrade.testing's RollingRefresh; each unit has a
fake snapd on a unix socket, a stand-in ``systemctl`` and an os-release file of its own. The
story:

1. deploy three units (snap revision 2, charm revision 1, ubuntu@22.04);
2. ``juju upgrade-machine 0 prepare ubuntu@24.04``: unit 0's server stops and is held down;
3. the OS upgrade; update-status everywhere (unit 0 runs nothing until complete);
4. ``juju upgrade-machine 0 complete``: the server comes back;
5. ``juju refresh`` to charm revision 2 (snap revision 3): unit 2 refreshes, the refresh pauses;
6. ``resume-refresh`` on unit 1: units 1 and 0 follow;
7. ``juju refresh`` to charm revision 3 (snap revision 4): snapd fails unit 2's refresh;
8. ``juju refresh --revision 2``: the rollback puts unit 2 back on snap revision 3.

It prints a timeline per unit and exits non-zero if the story went otherwise.

    python examples/demo.py          # or: python3 tools/dev.py demo
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Any

from ops import testing

from charm_upgrade import Journal
from charm_upgrade.testing import RollingRefresh

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / 'charm' / 'src'))

from charm import UpgradeDemoCharm  # noqa: E402

SNAP = 'upgrade-demo'
APP = 'upgrade-demo'
PAUSED = (
    'Refreshing. Check units >=2 are healthy & run `resume-refresh` on unit 1. '
    'To rollback, `juju refresh --revision 1`'
)
HELD = (
    'Services stopped and disabled for the OS upgrade; when it is done, '
    'run `juju upgrade-machine 0 complete`'
)


@dataclasses.dataclass
class Row:
    """What one unit looked like after one step, and what its journal gained in it."""

    step: int
    status: str
    charm: int
    snap: str
    base: str
    server: str
    journal: str
    held: str

    def same_as(self, other: Row) -> bool:
        return (self.status, self.charm, self.snap, self.base, self.server) == (
            other.status,
            other.charm,
            other.snap,
            other.base,
            other.server,
        )


class Story:
    """Runs the steps, records each unit after each, and checks what must hold."""

    def __init__(self, app: RollingRefresh[UpgradeDemoCharm]):
        self.app = app
        self.steps: list[str] = []
        self.app_statuses: list[str] = []
        self.rows: dict[int, list[Row]] = {unit: [] for unit in app.units}
        self.downtime: dict[int, list[str]] = {u: [] for u in app.units}
        self.problems: list[str] = []
        self._seen = dict.fromkeys(app.units, 0)

    def step(self, title: str) -> int:
        self.steps.append(title)
        return len(self.steps)

    def record(self) -> None:
        number = len(self.steps)
        self.app_statuses.append(status_text(self.app.app_status))
        for unit in self.app.units:
            records = self.journal(unit)[self._seen[unit] :]
            self._seen[unit] += len(records)
            active = self.app.snapd(unit).service_state(SNAP)['server'][1]
            failing = self.app.failing(unit)
            status = status_text(self.app.unit_status(unit))
            if failing is not None:
                status = f'error: hook failed: "{failing.replace("_", "-")}"'
            journal = [self.journal_line(unit, r) for r in records if r['event'] != 'start']
            held = self.app.pending[unit] if unit in self.app.series_upgrading else []
            self.rows[unit].append(
                Row(
                    step=number,
                    status=status,
                    charm=self.app.harness(unit).charm_revision,
                    snap=self.app.revision(unit),
                    base=self.app.base(unit) or '?',
                    server='up' if active else 'DOWN',
                    journal=', '.join(journal),
                    held=', '.join(kind.replace('_', '-') for kind in held),
                )
            )

    def journal(self, unit: int) -> list[dict[str, Any]]:
        return Journal(self.app.harness(unit).state_dir / 'journal.jsonl').read()

    def journal_line(self, unit: int, record: dict[str, Any]) -> str:
        details: dict[str, Any] = record.get('details') or {}
        stage, event = record['stage'], record['event']
        text = stage if event == 'ended' else f'{stage} {event.upper()}'
        if stage == 'snap-refresh':
            text += f' {details.get("revision_before")}->{details.get("revision_after")}'
            if 'change_status' in details:
                text += f' (snapd change {details["change_status"]})'
            down = details.get('downtime')
            if isinstance(down, float):
                self.downtime[unit].append(f'{down * 1000:.0f} ms (step {len(self.steps)})')
        return text

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(f'step {len(self.steps)}: expected {what}')


def status_text(status: Any) -> str:
    return f'{status.name}: {status.message}' if status.message else status.name


def servers_up(story: Story, units: list[int]) -> bool:
    return all(story.app.snapd(u).service_state(SNAP)['server'][1] for u in units)


def run_story(app: RollingRefresh[UpgradeDemoCharm]) -> Story:
    story = Story(app)
    active = testing.ActiveStatus()

    story.step('deploy 3 units: snap revision 2, charm revision 1, ubuntu@22.04')
    app.install()
    story.record()
    story.expect(all(app.unit_status(u) == active for u in app.units), 'every unit active')
    story.expect(servers_up(story, app.units), 'every server up')

    story.step('juju upgrade-machine 0 prepare ubuntu@24.04')
    app.prepare_series_upgrade(0, 'ubuntu@24.04')
    story.record()
    story.expect(app.unit_status(0) == testing.BlockedStatus(HELD), 'unit 0 blocked, held')
    story.expect(not servers_up(story, [0]), "unit 0's server down")
    story.expect(servers_up(story, [1, 2]), 'units 1 and 2 serving')

    story.step('the OS upgrade runs; update-status on every unit (unit 0 runs nothing)')
    app.update_status()
    story.record()
    story.expect(app.pending[0] == ['update_status'], "unit 0's update-status held by Juju")
    story.expect(servers_up(story, [1, 2]), 'units 1 and 2 serving')

    story.step('juju upgrade-machine 0 complete')
    app.complete_series_upgrade(0)
    story.record()
    story.expect(app.base(0) == 'ubuntu@24.04', 'unit 0 on ubuntu@24.04')
    story.expect(app.unit_status(0) == active, 'unit 0 active again')
    story.expect(servers_up(story, app.units), 'every server up')

    story.step('juju refresh: charm revision 2 pins snap revision 3')
    app.refresh('1/1.1.0', '3', workload='1.1')
    story.record()
    story.expect(app.refresh_order == [2], 'unit 2 refreshed first, alone')
    story.expect(app.app_status == testing.BlockedStatus(PAUSED), 'the pause after unit 2')

    story.step('juju run upgrade-demo/1 resume-refresh')
    resumed = app.run_action(1, 'resume-refresh')
    story.record()
    story.expect(resumed.results == {'result': 'Refresh resumed. Unit 1 has refreshed'}, 'resumed')
    story.expect(app.refresh_order == [2, 1, 0], 'units 1 and 0 followed')
    story.expect([app.revision(u) for u in app.units] == ['3', '3', '3'], 'snap 3 everywhere')
    story.expect(app.app_status == active, 'application active')

    story.step("juju refresh: charm revision 3 pins snap revision 4; unit 2's snapd fails it")
    app.snapd(2).fail_next_refresh(undo=False, error='run hook "post-refresh": exit status 1')
    app.refresh('1/1.2.0', '4', workload='1.2', settle=False)
    app.settle(raise_on_error=False, retry=False)  # before Juju's retry of the failed hook
    story.record()
    story.expect(app.failing(2) == 'upgrade_charm', 'unit 2 in error, upgrade-charm failed')
    story.expect(app.refresh_order == [2], 'only unit 2 touched')
    story.expect([app.revision(u) for u in app.units] == ['3', '3', '4'], 'snap 4 on unit 2')

    story.step('juju refresh --revision 2: the rollback (Juju first retries the failed hook)')
    app.refresh('1/1.1.0', '3', workload='1.1', charm_revision=2)
    story.record()
    story.expect(app.failing(2) is None, 'unit 2 out of error')
    story.expect([app.revision(u) for u in app.units] == ['3', '3', '3'], 'snap 3 everywhere')
    story.expect(app.app_status == active, 'application active')
    story.expect(all(app.unit_status(u) == active for u in app.units), 'every unit active')
    story.expect(servers_up(story, app.units), 'every server up')
    return story


def print_story(story: Story, elapsed: float) -> None:
    app = story.app
    print(
        f'charm-upgrade demo: {len(app.units)} units of {APP}, the example charm (examples/charm)'
    )
    print()
    steps = zip(story.steps, story.app_statuses, strict=True)
    for number, (title, status) in enumerate(steps, start=1):
        print(f'{number}. {title}')
        print(f'   app status: {status}')
    for unit in sorted(app.units):
        print()
        print(f'{APP}/{unit} (machine {unit}); a row for each step that changed something')
        print(f'  {"step":<5}{"charm":<6}{"snap":<5}{"base":<13}{"server":<7}unit status')
        previous: Row | None = None
        for row in story.rows[unit]:
            if previous is None or not row.same_as(previous) or row.journal or row.held:
                print(
                    f'  {row.step:<5}{row.charm:<6}{row.snap:<5}{row.base:<13}'
                    f'{row.server:<7}{row.status}'
                )
                if row.journal:
                    print(f'  {"":<5}journal: {row.journal}')
                if row.held:
                    print(f'  {"":<5}Juju holds until complete: {row.held}')
            previous = row
        print(f'  downtime: {downtime_text(story, unit)}')
    print()
    events = len(app.events)
    print(
        f'{events} events, {app.hook_tool_calls} hook-tool calls '
        f'({app.hook_tool_calls / events:.0f} per event), {elapsed:.1f} s'
    )


def downtime_text(story: Story, unit: int) -> str:
    parts: list[str] = []
    downs = [row.step for row in story.rows[unit] if row.server != 'up']
    if downs:
        steps = f'step {downs[0]}' if len(downs) == 1 else f'steps {downs[0]}-{downs[-1]}'
        parts.append(f'server down over {steps}')
    if story.downtime[unit]:
        parts.append('snap refreshes ' + ', '.join(story.downtime[unit]))
    return '; '.join(parts) or 'none'


def main() -> int:
    start = time.perf_counter()
    with RollingRefresh(
        UpgradeDemoCharm,
        units=3,
        snap=SNAP,
        revision='2',
        revisions=['3', '4'],
        services=['server'],
        charm_version='1/1.0.0',
        change_duration=0.02,
        base='ubuntu@22.04',
    ) as app:
        story = run_story(app)
        print_story(story, time.perf_counter() - start)
    if story.problems:
        print('\nThe story did not go as expected:', file=sys.stderr)
        for problem in story.problems:
            print(f'  {problem}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
