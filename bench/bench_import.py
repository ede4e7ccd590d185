# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What importing charm-upgrade adds to a hook process that imports ops anyway.

Each sample is a fresh interpreter that times `import ops`, then the
library's import on top of it, with perf_counter inside the process (no
process start-up noise). Samples of the variants are interleaved so that
machine noise hits them alike. The budget: at most 10 ms median added.

A unit's interpreter caches bytecode after its first hook, so the samples run
with bytecode writing allowed and one discarded warm-up run per variant (tox
sets PYTHONDONTWRITEBYTECODE for its own commands; it is dropped here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _stats import median_ms, table

ROUNDS = 21
HEAVY = ['charm_refresh', 'lightkube', 'httpx', 'charms.reactive', 'charmhelpers']
VARIANTS = {
    'import charm_upgrade': 'import charm_upgrade',
    'from charm_upgrade import SeriesUpgrade, SystemdServices': (
        'from charm_upgrade import SeriesUpgrade, SystemdServices'
    ),
    'from charm_upgrade.snapd import Snapd': 'from charm_upgrade.snapd import Snapd',
    'import charm_refresh (for scale)': 'import charm_refresh',
}
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import ops
t1 = time.perf_counter()
{stmt}
t2 = time.perf_counter()
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{'ops': t1 - t0, 'added': t2 - t1, 'heavy': heavy}}))
"""


def sample(stmt: str) -> dict[str, object]:
    code = PROBE.format(stmt=stmt, heavy=HEAVY)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONDONTWRITEBYTECODE'}
    out = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True, env=env
    ).stdout
    return json.loads(out)


def main() -> None:
    ops_times: list[float] = []
    added: dict[str, list[float]] = {name: [] for name in VARIANTS}
    heavy: dict[str, list[str]] = {}
    for stmt in VARIANTS.values():
        sample(stmt)  # warm-up: writes the bytecode caches
    for _ in range(ROUNDS):
        for name, stmt in VARIANTS.items():
            result = sample(stmt)
            ops_times.append(float(result['ops']))  # type: ignore[arg-type]
            added[name].append(float(result['added']))  # type: ignore[arg-type]
            heavy[name] = list(result['heavy'])  # type: ignore[arg-type]
    ops_ms = median_ms(ops_times)
    rows: list[list[object]] = []
    for name in VARIANTS:
        ms = median_ms(added[name])
        rows.append([name, f'{ms:.2f}', f'{ms / ops_ms:.1%}', ', '.join(heavy[name]) or '-'])
    print(f'import ops alone: median {ops_ms:.1f} ms over {len(ops_times)} fresh interpreters')
    print(table(['added after import ops', 'median ms', 'ratio to ops', 'heavy modules'], rows))
    ours = median_ms(added['from charm_upgrade import SeriesUpgrade, SystemdServices'])
    verdict = 'within' if ours <= 10 else 'OVER'
    print(f'budget: <= 10 ms added; SeriesUpgrade + SystemdServices add {ours:.2f} ms ({verdict})')


if __name__ == '__main__':
    main()
