# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What a migration costs in the workload's downtime, with and without a backup.

One no-op migration run through Migrations.run (the unit's state lock, the
started mark and the record, each written with fsync), then the same with
``backup=`` over data of four shapes, and ``cp -a`` of the same data for
scale, side by side in one run. The backup fsyncs every file it copies and
copies each file's extended attributes, and keeps hard links; ``cp -a`` keeps
them too but fsyncs nothing.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
import time

from _stats import median_ms, table

from charm_upgrade import Migration, Migrations

ROUNDS = 7
SHAPES = {
    'one 4 KiB config': [(1, 4 * 1024)],
    '200 files of 16 KiB': [(200, 16 * 1024)],
    '200 files, xattr + 2nd link': [(200, 16 * 1024)],
    'one 64 MiB file': [(1, 64 * 1024 * 1024)],
}


def make_data(root: pathlib.Path, shape: list[tuple[int, int]], *, metadata: bool) -> int:
    root.mkdir(parents=True)
    total = 0
    for count, size in shape:
        for i in range(count):
            path = root / f'f{i:04d}'
            path.write_bytes(os.urandom(size))
            total += size
            if metadata:  # what ACLs and capabilities are, and a second name
                os.setxattr(path, 'user.bench', b'x' * 32)
                os.link(path, root / f'l{i:04d}')
    return total


def run_once(work: pathlib.Path, data: pathlib.Path | None) -> float:
    state = pathlib.Path(tempfile.mkdtemp(dir=work))
    os.environ['CHARM_UPGRADE_STATE_DIR'] = str(state)
    backup = [data] if data is not None else []
    migrations = Migrations(
        [Migration('1', 'no-op', kind='series', up=lambda _: None, backup=backup)]
    )
    began = time.perf_counter()
    migrations.run('series', old='ubuntu@22.04', new='ubuntu@24.04')
    took = time.perf_counter() - began
    shutil.rmtree(state)
    return took


def cp_once(work: pathlib.Path, data: pathlib.Path) -> float:
    target = work / 'cp-copy'
    began = time.perf_counter()
    subprocess.run(['cp', '-a', str(data), str(target)], check=True)
    took = time.perf_counter() - began
    shutil.rmtree(target)
    return took


def main() -> None:
    with tempfile.TemporaryDirectory(prefix='bench-migrations-') as tmp:
        work = pathlib.Path(tmp)
        plain = [run_once(work, None) for _ in range(ROUNDS)]
        rows: list[list[object]] = [
            ['no backup', '-', f'{median_ms(plain):.2f}', '-', '-'],
        ]
        for name, shape in SHAPES.items():
            data = work / name.replace(' ', '-')
            size = make_data(data, shape, metadata='xattr' in name)
            ours: list[float] = []
            cp: list[float] = []
            for _ in range(ROUNDS):  # interleaved, so that noise hits both alike
                ours.append(run_once(work, data))
                cp.append(cp_once(work, data))
            rows.append(
                [
                    f'backup of {name}',
                    f'{size / 1024 / 1024:.2f}',
                    f'{median_ms(ours):.2f}',
                    f'{median_ms(cp):.2f}',
                    f'{median_ms(ours) / median_ms(cp):.2f}x',
                ]
            )
            shutil.rmtree(data)
    print(f'one migration through Migrations.run, median of {ROUNDS}:')
    print(
        table(
            ['migration', 'MiB', 'run ms (median)', 'cp -a ms (median)', 'run / cp -a'],
            rows,
        )
    )
    print(
        'run: lock + started mark + backup (fsynced) + up + record + drop; cp -a: the copy alone'
    )


if __name__ == '__main__':
    main()
