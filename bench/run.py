# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Run the benchmarks in bench/ (or the ones named) and print their tables.

``bench_integration`` needs a container with real systemd and snapd; it runs
only when named (``tox -e bench-integration``).
"""

from __future__ import annotations

import pathlib
import runpy
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(names: list[str]) -> None:
    scripts = sorted(HERE.glob('bench_*.py'))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    else:
        scripts = [s for s in scripts if s.stem != 'bench_integration']
    for script in scripts:
        print(f'\n=== {script.stem} ===', flush=True)
        runpy.run_path(str(script), run_name='__main__')


if __name__ == '__main__':
    main(sys.argv[1:])
