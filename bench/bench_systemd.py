# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""systemctl calls to take N services down and bring them back.

charm-upgrade's SystemdServices against charmhelpers' own service_pause and
service_resume (the real functions, one per service), both run against the
same stand-in systemctl, side by side in one run. The stand-in is a Python
script, so its start-up dominates each call: the times show what the call
count costs, the counts are exact.
"""

from __future__ import annotations

import os
import tempfile
import time

from _stats import median_ms, table

from charm_upgrade import SystemdServices
from charm_upgrade.testing._fake_systemd import FakeSystemd

ROUNDS = 5
SIZES = [1, 5, 20]


def charmhelpers_host():
    # charmhelpers refuses to import on non-Ubuntu hosts; these benchmarks run on Debian.
    import charmhelpers.osplatform

    charmhelpers.osplatform.get_platform = lambda: 'ubuntu'
    import charmhelpers.core.host

    # It reads /etc/lsb-release to tell upstart from systemd; these hosts are systemd.
    charmhelpers.core.host.init_is_systemd = lambda service_name=None: True
    return charmhelpers.core.host


def run_ours(fake: FakeSystemd, names: list[str]) -> tuple[int, float]:
    fake.clear_calls()
    start = time.perf_counter()
    services = SystemdServices(names)
    before = services.read_state()
    services.take_down(before)
    services.bring_back(before)
    return len(fake.calls), time.perf_counter() - start


def run_charmhelpers(fake: FakeSystemd, names: list[str]) -> tuple[int, float]:
    host = charmhelpers_host()
    fake.clear_calls()
    # charmhelpers lets `systemctl is-active` print to our stdout: silence it.
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        start = time.perf_counter()
        for name in names:
            host.service_pause(name)
        for name in names:
            host.service_resume(name)
        elapsed = time.perf_counter() - start
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    assert all(fake.unit(n)['active'] == 'active' for n in names), 'resume failed'
    return len(fake.calls), elapsed


def main() -> None:
    rows: list[list[object]] = []
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp, FakeSystemd(tmp) as fake:
            names = [f'svc{i}.service' for i in range(size)]
            for name in names:
                # /lib units, so that charmhelpers' mask succeeds as it would there.
                fake.add_unit(name, path=f'/lib/systemd/system/{name}')
            ours_calls, ch_calls = 0, 0
            ours_t: list[float] = []
            ch_t: list[float] = []
            for _ in range(ROUNDS):
                ours_calls, t = run_ours(fake, names)
                ours_t.append(t)
                ch_calls, t = run_charmhelpers(fake, names)
                ch_t.append(t)
            rows.append(
                [
                    size,
                    ours_calls,
                    ch_calls,
                    f'{median_ms(ours_t):.0f}',
                    f'{median_ms(ch_t):.0f}',
                    f'{median_ms(ch_t) / median_ms(ours_t):.1f}x',
                ]
            )
    print(
        table(
            [
                'services',
                'systemctl calls: ours',
                'charmhelpers',
                'ours ms (median)',
                'charmhelpers ms',
                'ratio',
            ],
            rows,
        )
    )
    print('ours: show + daemon-reload + stop, then show + daemon-reload + start + show')


if __name__ == '__main__':
    main()
