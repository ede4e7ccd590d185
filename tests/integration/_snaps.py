# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The cu-probe test snap as the tests see it: its revision, its services, snapd's changes.

Reads go through the proxy socket named by ``$CHARM_UPGRADE_SNAPD_SOCKET`` (the
``snapd_socket`` fixture sets it) with a bare HTTP client (tests/raw_snapd.py),
not the library under test, or run inside the container with the ``snap`` CLI.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from typing import TYPE_CHECKING, Any

from raw_snapd import raw, result, wait_ready

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _container import Container

PROBE = 'cu-probe'
FAIL_MARKER = f'/var/snap/{PROBE}/common/fail-post-refresh'
UP = {f'{PROBE}.web': ('enabled', 'active'), f'{PROBE}.worker': ('enabled', 'active')}


def revision_inside(container: Container) -> str:
    """The probe's current revision according to `snap list`."""
    lines = container.exec(['snap', 'list', PROBE]).stdout.splitlines()
    return lines[1].split()[2]


def services(container: Container, name: str = PROBE) -> dict[str, tuple[str, str]]:
    """`snap services cu-probe`: app -> (startup, current)."""
    lines = container.exec(['snap', 'services', name]).stdout.splitlines()[1:]
    return {line.split()[0]: (line.split()[1], line.split()[2]) for line in lines}


def web_page(container: Container, timeout: float = 10) -> str:
    """What the probe's httpd serves (it may need a moment after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        result = container.exec(['curl', '-fsS', 'http://127.0.0.1:8080/'], check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return result.stdout.strip()
        time.sleep(0.2)


def assert_workload_runs(container: Container, version: str) -> None:
    """Both daemons enabled and active, and the web page is the revision's version."""
    assert services(container) == UP
    assert web_page(container) == version


def socket() -> str:
    """The proxy socket of the container's snapd."""
    return os.environ['CHARM_UPGRADE_SNAPD_SOCKET']


def snap_info(name: str = PROBE) -> dict[str, Any]:
    """``GET /v2/snaps/{name}``'s result."""
    return result(socket(), f'/v2/snaps/{name}')


def revision(name: str = PROBE) -> str:
    """The probe's revision as snapd reports it over REST."""
    return str(snap_info(name)['revision'])


def wait_change(change_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll the change through the proxy socket until snapd says it is ready."""
    return wait_ready(socket(), change_id, timeout)


def refresh(target: str, name: str = PROBE) -> str:
    """Ask snapd to refresh the snap to ``target``; return the change id."""
    status, envelope = raw(
        socket(), 'POST', f'/v2/snaps/{name}', body={'action': 'refresh', 'revision': target}
    )
    assert status == 202, envelope
    return envelope['change']


def changes(select: str = 'all', name: str = PROBE) -> list[dict[str, Any]]:
    """snapd's changes of the probe (``all``, ``in-progress`` or ``ready``), oldest first."""
    listed = result(socket(), '/v2/changes', **{'for': name, 'select': select})
    return sorted(listed, key=lambda c: int(c['id']))


def changes_since(
    change_id: int, kind: str | None = None, name: str = PROBE
) -> list[dict[str, Any]]:
    """The probe's changes with an id above ``change_id``, optionally of one kind."""
    return [
        c
        for c in changes(name=name)
        if int(c['id']) > change_id and (kind is None or c['kind'] == kind)
    ]


def last_change_id(name: str = PROBE) -> int:
    """The highest change id snapd has for the probe (0 if none)."""
    return max((int(c['id']) for c in changes(name=name)), default=0)


def wait_in_flight(kind: str = 'refresh-snap', timeout: float = 30) -> dict[str, Any]:
    """Wait until a change of ``kind`` of the probe is in progress; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for change in changes('in-progress'):
            if change['kind'] == kind:
                return change
        time.sleep(0.01)
    raise AssertionError(f'no {kind} change of {PROBE} in progress within {timeout}s')


def duration(change: dict[str, Any]) -> float:
    """Seconds snapd spent on a ready change (spawn-time to ready-time)."""
    return _parse(change['ready-time']) - _parse(change['spawn-time'])


def _parse(stamp: str) -> float:
    # snapd writes RFC 3339 with nanoseconds; fromisoformat takes microseconds.
    head, _, rest = stamp.partition('.')
    digits = ''.join(ch for ch in rest if ch.isdigit())
    zone = rest[len(digits) :] if rest else stamp[len(head) :]
    text = f'{head}.{digits[:6].ljust(6, "0")}{zone}'.replace('Z', '+00:00')
    return datetime.datetime.fromisoformat(text).timestamp()


@contextlib.contextmanager
def post_refresh_hook_fails(container: Container) -> Iterator[None]:
    """The probe's post-refresh hook fails inside the block: snapd undoes a refresh."""
    container.exec(['touch', FAIL_MARKER])
    try:
        yield
    finally:
        container.exec(['rm', '-f', FAIL_MARKER])


def reset(container: Container, target: str) -> None:
    """Bring the probe to ``target`` with both daemons enabled and running, no marker."""
    container.exec(['rm', '-f', FAIL_MARKER])
    for change in changes('in-progress'):
        wait_change(change['id'])
    if revision() != target:
        change = wait_change(refresh(target))
        assert change['status'] == 'Done', change.get('err')
    if services(container) != UP:
        container.exec(['snap', 'start', '--enable', PROBE])
    assert services(container) == UP
