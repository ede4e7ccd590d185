# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Reading systemd units in the container, for the series-upgrade tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _container import Container

HOLD = '~charm-upgrade-hold.conf'


def unit_states(container: Container, names: list[str]) -> dict[str, tuple[str, str]]:
    """name -> (`systemctl is-enabled`, `systemctl is-active`)."""
    enabled = container.exec(['systemctl', 'is-enabled', *names], check=False).stdout.split()
    active = container.exec(['systemctl', 'is-active', *names], check=False).stdout.split()
    return dict(zip(names, zip(enabled, active, strict=True), strict=True))


def condition_results(container: Container, names: list[str]) -> list[str]:
    """`ConditionResult` per unit: ``no`` once systemd skipped a start for the hold."""
    out = container.exec(['systemctl', 'show', '-p', 'ConditionResult', '--', *names]).stdout
    return [line.partition('=')[2] for line in out.split()]


def held(container: Container, units: list[str]) -> list[str]:
    """Units that have the library's hold drop-in on disk."""
    return [u for u in units if container.host_path(f'/etc/systemd/system/{u}.d/{HOLD}').exists()]


def connect_to(container: Container, socket: str) -> int:
    """Connect to a unix socket: 7 when refused, 28 (time-out) when it accepted."""
    client = ['curl', '-m', '1', '-sS', '--unix-socket', socket, 'http://cu/']
    return container.exec(client, check=False).returncode
