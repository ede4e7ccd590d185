# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Real snapd and real systemd: workload downtime and systemctl work, side by side in one run.

Needs root and the integration container (tests/integration; `tox -e bench-integration`).
Runs on each distribution of ``$CHARM_UPGRADE_IT_DISTROS`` (by default bookworm with
snapd 2.57, then trixie with snapd 2.68), one container after the other.

1. Snap refresh between the on-disk revisions x1 and x2, alternating, interleaved:
   ``refresh_snap`` as it is (the snap's units held with the library's drop-in:
   ``systemctl`` stop and start around snapd's refresh change), the same flow with
   snapd's stop --disable and start --enable changes instead (the library before the
   drop-in), and the CLI sequence a charm writes by hand (``snap stop --disable``,
   ``snap refresh --revision``, ``snap start --enable``). Each runs inside the
   container and is timed the same way: from just before the stop is asked to just
   after the start is done. snapd's own time is the sum of its changes'
   spawn-to-ready durations in that run; the refresh change's alone is the floor.
   Twice: cu-probe (two daemons, under 1 MiB) and cu-big (one daemon, 40 MiB), to
   show how the cost grows with the snap's size.
2. Taking 20 real systemd units down: SystemdServices (read_state + take_down)
   against one charmhelpers-style ``service_pause`` per unit (is-active, stop,
   disable, mask: the calls charmhelpers makes on systemd).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / 'tests'))
sys.path.insert(0, str(REPO / 'tests' / 'integration'))

import _rootfs  # noqa: E402
import _snaps  # noqa: E402
from _container import Container, build_project_wheel, download_wheels  # noqa: E402
from _refresh_driver import refresh_versions  # noqa: E402
from _stats import median_ms, table  # noqa: E402

ROUNDS = int(os.environ.get('CU_BENCH_ROUNDS', '7'))
UNITS = 20
CHARM_DIR = '/root/cu-bench-charm'
REQUIREMENTS = ('ops>=2.17,<4', 'charm-refresh~=3.1.1')
BIG = 'cu-big'
BIG_MIB = 40
CLI = """\
set -e
t0=$(date +%s%N)
snap stop --disable "$2" >/dev/null
snap refresh --revision="$1" "$2" >/dev/null
snap start --enable "$2" >/dev/null
t1=$(date +%s%N)
echo $((t1 - t0))
"""


def prepare(box: Container) -> str:
    """Install the library inside, x1 and x2 of the probe; return the driver's path inside."""
    wheels = box.share_dir / 'wheels'
    wheel = build_project_wheel(wheels, REPO)
    download_wheels(wheels, [*REQUIREMENTS, str(wheel)], python_version=box.distro.python)
    box.install_python_packages(wheels)
    for label in ('1.0', '2.0'):
        box.exec(['snap', 'install', '--dangerous', box.build_test_snap(label)])
        built = box.build_test_snap(label, BIG, payload_mib=BIG_MIB)
        box.exec(['snap', 'install', '--dangerous', built], timeout=300)
    for name in ('_refresh_driver.py', '_inside.py'):
        shutil.copy2(REPO / 'tests' / 'integration' / name, box.share_dir / name)
    (box.share_dir / 'cli.sh').write_text(CLI)
    box.exec(['mkdir', '-p', CHARM_DIR])
    box.write_file(f'{CHARM_DIR}/refresh_versions.toml', refresh_versions(_snaps.PROBE))
    box.exec(['mkdir', '-p', f'{CHARM_DIR}-{BIG}'])
    box.write_file(f'{CHARM_DIR}-{BIG}/refresh_versions.toml', refresh_versions(BIG))
    return f'{box.share_inside}/_refresh_driver.py'


def snapd_seconds(since: int, snap: str) -> tuple[float, float, dict[str, float]]:
    """snapd's time in the changes after ``since``: all, the refresh alone, and its tasks."""
    made = _snaps.changes_since(since, name=snap)
    assert [c['status'] for c in made] == ['Done'] * len(made), made
    refresh = [c for c in made if c['kind'] == 'refresh-snap']
    assert len(refresh) == 1, made
    tasks = {t['kind']: _snaps.duration(t) for t in refresh[0].get('tasks', [])}
    return sum(_snaps.duration(c) for c in made), _snaps.duration(refresh[0]), tasks


def ours(box: Container, driver: str, snap: str, target: str, *, hold: bool) -> dict[str, Any]:
    """Run one refresh through the flow inside; return its journal details (seconds)."""
    charm_dir = CHARM_DIR if snap == _snaps.PROBE else f'{CHARM_DIR}-{snap}'
    result = box.exec(
        [
            'sh',
            '-c',
            f'cd {charm_dir} && exec /opt/venv/bin/python {driver} "$@"',
            'sh',
            snap,
            target,
            f'{charm_dir}/records.jsonl',
        ],
        env={
            'CHARM_UPGRADE_SNAPD_SOCKET': '/run/snapd.socket',
            'CHARM_UPGRADE_STATE_DIR': charm_dir,
            'CU_DRIVER_HOLD': '1' if hold else '0',
        },
        timeout=300,
    )
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome['ok'], outcome
    return outcome['details']


def cli(box: Container, snap: str, target: str) -> float:
    result = box.exec(['sh', f'{box.share_inside}/cli.sh', target, snap], timeout=300)
    return int(result.stdout.strip()) / 1e9


# The flow's own timings of the drop-in path: the hold is before the downtime.
PHASES = {
    'hold': 'hold (workload up)',
    'stop': 'stop',
    'refresh': 'refresh and wait',
    'release': 'open the hold',
    'start': 'open and start',
}
HOWS = {
    'hold': 'refresh_snap (drop-in hold)',
    'snapd': 'refresh_snap, snapd stop/start',
    'cli': 'CLI stop/refresh/start',
}


def bench_refresh(box: Container, driver: str, snap: str) -> None:
    up = {name: ('enabled', 'active') for name in _snaps.services(box, snap)}
    samples: dict[str, list[float]] = {how: [] for how in HOWS}
    in_snapd: dict[str, list[float]] = {how: [] for how in HOWS}
    refresh_change: dict[str, list[float]] = {how: [] for how in HOWS}
    phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
    task_times: dict[str, dict[str, list[float]]] = {how: {} for how in HOWS}
    target = 'x1' if _snaps.revision(snap) == 'x2' else 'x2'
    for _ in range(ROUNDS):
        for how in HOWS:
            since = _snaps.last_change_id(snap)
            if how == 'cli':
                down = cli(box, snap, target)
            else:
                details = ours(box, driver, snap, target, hold=how == 'hold')
                down = float(details['downtime'])
                if how == 'hold':
                    for phase in PHASES:
                        phases[phase].append(float(details.get(phase, 0.0)))
            assert _snaps.revision(snap) == target
            assert _snaps.services(box, snap) == up
            spent, refresh, tasks = snapd_seconds(since, snap)
            for kind, seconds in tasks.items():
                task_times[how].setdefault(kind, []).append(seconds)
            samples[how].append(down)
            in_snapd[how].append(spent)
            refresh_change[how].append(refresh)
            target = 'x1' if target == 'x2' else 'x2'
    rows: list[list[str]] = []
    for how, label in HOWS.items():
        down, spent = median_ms(samples[how]), median_ms(in_snapd[how])
        change = median_ms(refresh_change[how])
        rows.append(
            [
                label,
                f'{down:.0f}',
                f'{spent:.0f}',
                f'{change:.0f}',
                f'{down - spent:.0f}',
                f'{down / change:.2f}x',
            ]
        )
    size = f'{BIG_MIB} MiB, 1 daemon' if snap == BIG else 'under 1 MiB, 2 daemons'
    print(
        f'snap refresh x1 <-> x2 of {snap} ({size}), {ROUNDS} rounds each, medians, '
        f'{box.distro.suite} (snapd {box.distro.snapd})'
    )
    print(
        table(
            [
                'how',
                'downtime ms',
                "snapd's changes ms",
                'refresh change ms',
                'outside snapd ms',
                'downtime / refresh change',
            ],
            rows,
        )
    )
    print(
        'drop-in hold, its steps (medians, ms): '
        + ', '.join(f'{label} {median_ms(phases[phase]):.0f}' for phase, label in PHASES.items())
    )
    # Where the refresh change's own time goes, held units or not: when each task ended.
    differ = [
        f'{kind} {median_ms(times):.0f} vs {median_ms(task_times["snapd"].get(kind, [0.0])):.0f}'
        for kind, times in task_times['hold'].items()
        if abs(median_ms(times) - median_ms(task_times['snapd'].get(kind, [0.0]))) >= 20
    ]
    print(
        "refresh change's tasks whose end (ms after the change was made, medians) differs "
        'by 20 ms or more, drop-in hold vs snapd stop/start: ' + (', '.join(differ) or 'none')
    )
    hold, before = median_ms(samples['hold']), median_ms(samples['snapd'])
    print(
        f'downtime ratios: drop-in hold / snapd stop-start {hold / before:.2f}x, '
        f'drop-in hold / CLI {hold / median_ms(samples["cli"]):.2f}x\n'
    )


def bench_systemd(box: Container) -> None:
    driver = f'{box.share_inside}/_inside.py'
    result = box.exec(
        ['/opt/venv/bin/python', driver, 'bench-systemd', str(UNITS), str(ROUNDS)], timeout=600
    )
    times = json.loads(result.stdout.splitlines()[-1])
    ours_ms, theirs_ms = median_ms(times['ours']), median_ms(times['service_pause'])
    print(f'\ntaking {UNITS} real systemd units down, {ROUNDS} rounds each, medians')
    print(
        table(
            ['how', 'systemctl calls', 'ms', 'ratio'],
            [
                ['SystemdServices read_state + take_down', '4', f'{ours_ms:.0f}', '1.0x'],
                [
                    'service_pause per unit',
                    str(4 * UNITS),
                    f'{theirs_ms:.0f}',
                    f'{theirs_ms / ours_ms:.1f}x',
                ],
            ],
        )
    )
    print('ours: show, daemon-reload (holds), disable, stop; service_pause: is-active, stop, ')
    print('disable, mask for each unit')


def main() -> None:
    chosen = os.environ.get('CHARM_UPGRADE_IT_DISTROS', '')
    distros = [d for d in chosen.split(',') if d] or list(_rootfs.DEFAULT_DISTROS)
    for distro in distros:
        began = time.monotonic()
        with Container(distro=distro) as box:
            os.environ['CHARM_UPGRADE_SNAPD_SOCKET'] = box.snapd_socket  # for _snaps' reads
            driver = prepare(box)
            print(f'\n{distro}: container ready in {time.monotonic() - began:.1f} s\n', flush=True)
            bench_refresh(box, driver, _snaps.PROBE)
            bench_refresh(box, driver, BIG)
            bench_systemd(box)
        print(f'\n{distro}: total {time.monotonic() - began:.1f} s', flush=True)


if __name__ == '__main__':
    main()
