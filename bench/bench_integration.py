# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Real snapd and real systemd: workload downtime and systemctl work, side by side in one run.

Needs root and the integration container (tests/integration; `tox -e bench-integration`).
Runs on each distribution of ``$CHARM_UPGRADE_IT_DISTROS`` (by default bookworm with
snapd 2.57, then trixie with snapd 2.68), one container after the other.

1. Snap refresh of cu-probe (two daemons) between the on-disk revisions x1 and
   x2, alternating: ``refresh_snap`` (its default stop --disable, refresh, start
   --enable over the REST API) against the CLI sequence a charm writes by hand
   (``snap stop --disable``, ``snap refresh --revision``, ``snap start --enable``),
   interleaved. Both run inside the container and are timed the same way: from
   just before the stop is asked to just after the start is done. snapd's own
   time is the sum of its changes' spawn-to-ready durations in that run.
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
CLI = f"""\
set -e
t0=$(date +%s%N)
snap stop --disable {_snaps.PROBE} >/dev/null
snap refresh --revision="$1" {_snaps.PROBE} >/dev/null
snap start --enable {_snaps.PROBE} >/dev/null
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
    for name in ('_refresh_driver.py', '_inside.py'):
        shutil.copy2(REPO / 'tests' / 'integration' / name, box.share_dir / name)
    (box.share_dir / 'cli.sh').write_text(CLI)
    box.exec(['mkdir', '-p', CHARM_DIR])
    box.write_file(f'{CHARM_DIR}/refresh_versions.toml', refresh_versions(_snaps.PROBE))
    return f'{box.share_inside}/_refresh_driver.py'


def snapd_seconds(since: int) -> tuple[float, float]:
    """snapd's time in the changes after ``since``: all of them, and the refresh alone."""
    made = _snaps.changes_since(since)
    assert [c['status'] for c in made] == ['Done'] * len(made), made
    refresh = [_snaps.duration(c) for c in made if c['kind'] == 'refresh-snap']
    assert len(refresh) == 1, made
    return sum(_snaps.duration(c) for c in made), refresh[0]


def ours(box: Container, driver: str, target: str) -> float:
    result = box.exec(
        [
            'sh',
            '-c',
            f'cd {CHARM_DIR} && exec /opt/venv/bin/python {driver} "$@"',
            'sh',
            _snaps.PROBE,
            target,
            f'{CHARM_DIR}/records.jsonl',
        ],
        env={
            'CHARM_UPGRADE_SNAPD_SOCKET': '/run/snapd.socket',
            'CHARM_UPGRADE_STATE_DIR': CHARM_DIR,
        },
        timeout=300,
    )
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome['ok'], outcome
    return float(outcome['details']['downtime'])


def cli(box: Container, target: str) -> float:
    result = box.exec(['sh', f'{box.share_inside}/cli.sh', target], timeout=300)
    return int(result.stdout.strip()) / 1e9


def bench_refresh(box: Container, driver: str) -> None:
    samples: dict[str, list[float]] = {k: [] for k in ('ours', 'cli', 'ours_snapd', 'cli_snapd')}
    refresh_change: dict[str, list[float]] = {'ours': [], 'cli': []}
    target = 'x1' if _snaps.revision() == 'x2' else 'x2'
    for _ in range(ROUNDS):
        for who in ('ours', 'cli'):
            since = _snaps.last_change_id()
            down = ours(box, driver, target) if who == 'ours' else cli(box, target)
            assert _snaps.revision() == target
            assert _snaps.services(box) == _snaps.UP
            spent, refresh = snapd_seconds(since)
            samples[who].append(down)
            samples[f'{who}_snapd'].append(spent)
            refresh_change[who].append(refresh)
            target = 'x1' if target == 'x2' else 'x2'
    m = {k: median_ms(v) for k, v in samples.items()}
    rows = [
        [
            'refresh_snap',
            f'{m["ours"]:.0f}',
            f'{m["ours_snapd"]:.0f}',
            f'{median_ms(refresh_change["ours"]):.0f}',
            f'{m["ours"] - m["ours_snapd"]:.0f}',
            f'{m["ours"] / m["ours_snapd"]:.2f}x',
        ],
        [
            'CLI stop/refresh/start',
            f'{m["cli"]:.0f}',
            f'{m["cli_snapd"]:.0f}',
            f'{median_ms(refresh_change["cli"]):.0f}',
            f'{m["cli"] - m["cli_snapd"]:.0f}',
            f'{m["cli"] / m["cli_snapd"]:.2f}x',
        ],
    ]
    print(
        f'snap refresh x1 <-> x2 of {_snaps.PROBE} (2 daemons), {ROUNDS} rounds each, medians, '
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
                'downtime / snapd',
            ],
            rows,
        )
    )
    print(f'downtime ratio refresh_snap / CLI: {m["ours"] / m["cli"]:.2f}x')


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
            bench_refresh(box, driver)
            bench_systemd(box)
        print(f'\n{distro}: total {time.monotonic() - began:.1f} s', flush=True)


if __name__ == '__main__':
    main()
