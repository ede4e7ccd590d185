# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Run every benchmark in bench/ (or the ones named) and print their tables."""

from __future__ import annotations

import pathlib
import runpy
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(names: list[str]) -> None:
    scripts = sorted(HERE.glob('bench_*.py'))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    for script in scripts:
        print(f'\n=== {script.stem} ===', flush=True)
        runpy.run_path(str(script), run_name='__main__')


if __name__ == '__main__':
    main(sys.argv[1:])
