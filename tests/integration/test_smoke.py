# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The harness works: real systemd, real snapd, the probe snap, REST from the host, reboot.

The snap tests share the session's container and run in file order: x1 and x2
are installed once (the session's ``probe``), then refreshed from the host, then
a refresh is made to fail, then the container is rebooted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from _snaps import (
    PROBE,
    assert_workload_runs,
    post_refresh_hook_fails,
    refresh,
    reset,
    snap_info,
    wait_change,
)

if TYPE_CHECKING:
    from _container import Container
    from conftest import InsidePython, Probe

UNIT = 'cu-echo.service'
UNIT_TEXT = """\
[Unit]
Description=charm-upgrade integration echo unit

[Service]
ExecStart=/bin/sleep infinity
"""
WANTED_BY = '[Install]\nWantedBy=multi-user.target\n'


def test_systemd_is_pid1_and_running(container: Container) -> None:
    assert container.exec(['cat', '/proc/1/comm']).stdout.strip() == 'systemd'
    state = container.exec(['systemctl', 'is-system-running'], check=False).stdout.strip()
    assert state == 'running', container.failed_units


def test_mount_namespace_capture_never_fails(container: Container) -> None:
    """Guards the CPU pinning (see _container.pick_cpu): snap-confine's capture must work."""
    script = """
    set -e
    mkdir -p /run/ns-capture
    mount --bind /run/ns-capture /run/ns-capture
    mount --make-private /run/ns-capture
    failures=0
    for i in $(seq 40); do
        touch /run/ns-capture/ns
        unshare --mount=/run/ns-capture/ns true || failures=$((failures + 1))
        umount /run/ns-capture/ns 2>/dev/null || true
    done
    umount /run/ns-capture
    echo "$failures"
    """
    assert container.exec(['sh', '-c', script]).stdout.strip() == '0'


def test_unit_in_etc_starts_and_stops(container: Container) -> None:
    container.write_file(f'/etc/systemd/system/{UNIT}', UNIT_TEXT)
    container.exec(['systemctl', 'daemon-reload'])
    container.exec(['systemctl', 'start', UNIT])
    assert container.exec(['systemctl', 'is-active', UNIT]).stdout.strip() == 'active'
    container.exec(['systemctl', 'stop', UNIT])
    result = container.exec(['systemctl', 'is-active', UNIT], check=False)
    assert (result.returncode, result.stdout.strip()) == (3, 'inactive')


def test_what_the_test_kits_systemctl_copies(container: Container) -> None:
    """FakeSystemd answers so (tests/unit/test_fake_systemd.py): checked on the real one."""
    # A unit file systemd has never seen is loaded when first named: no daemon-reload.
    new = 'cu-new-file.service'
    container.write_file(f'/etc/systemd/system/{new}', UNIT_TEXT + WANTED_BY)
    shown = container.exec(['systemctl', 'show', '--property=LoadState,UnitFileState', new])
    assert shown.stdout.split() == ['LoadState=loaded', 'UnitFileState=disabled']
    container.exec(['systemctl', 'start', new])
    assert container.exec(['systemctl', 'is-active', new]).stdout.strip() == 'active'
    container.exec(['systemctl', 'stop', new])
    # enable --now enables and starts; disable --now disables and stops.
    container.exec(['systemctl', 'enable', '--now', new])
    assert container.exec(['systemctl', 'is-active', new]).stdout.strip() == 'active'
    # is-active / is-enabled: exit 0 when any unit named is active / enabled (or static).
    mixed = container.exec(['systemctl', 'is-active', 'cu-nothing.service', new], check=False)
    assert (mixed.returncode, mixed.stdout.split()) == (0, ['inactive', 'active'])
    container.write_file('/etc/systemd/system/cu-static.service', UNIT_TEXT)
    static = container.exec(['systemctl', 'is-enabled', 'cu-static.service'], check=False)
    assert (static.returncode, static.stdout.strip()) == (0, 'static')
    quiet = container.exec(['systemctl', 'is-active', '--quiet', new], check=False)
    assert (quiet.returncode, quiet.stdout) == (0, '')
    # An unknown unit file: systemd 252 (the fake's model) fails with a message; 257
    # prints not-found and exits 4. Both are a failure.
    ghost = container.exec(['systemctl', 'is-enabled', 'cu-nothing.service'], check=False)
    if ghost.returncode == 1:
        assert ghost.stdout == ''
        assert 'Failed to get unit file state for cu-nothing.service' in ghost.stderr
    else:
        assert (ghost.returncode, ghost.stdout) == (4, 'not-found\n')
    container.exec(['systemctl', 'disable', '--now', new])
    off = container.exec(['systemctl', 'is-active', new], check=False)
    assert (off.returncode, off.stdout.strip()) == (3, 'inactive')
    disabled = container.exec(['systemctl', 'is-enabled', new], check=False)
    assert (disabled.returncode, disabled.stdout.strip()) == (1, 'disabled')


def test_mask_of_a_unit_whose_file_is_in_etc_fails(container: Container) -> None:
    """The library relies on this: such units cannot be held by masking."""
    container.write_file(f'/etc/systemd/system/{UNIT}', UNIT_TEXT)
    container.exec(['systemctl', 'daemon-reload'])
    result = container.exec(['systemctl', 'mask', UNIT], check=False)
    assert result.returncode != 0
    # systemd 252 writes the path bare, 257 in quotes.
    assert re.search(rf"File '?/etc/systemd/system/{UNIT}'? already exists", result.stderr)
    enabled = container.exec(['systemctl', 'is-enabled', UNIT], check=False).stdout.strip()
    assert enabled != 'masked'


def test_probe_snap_installs_as_x1_then_x2(
    container: Container, probe: Probe, snapd_socket: str
) -> None:
    assert probe.revisions == ('x1', 'x2')
    reset(container, 'x2')
    assert probe.first.startswith(container.share_inside)
    assert_workload_runs(container, '2.0')
    heartbeat = f'/var/snap/{PROBE}/x2/worker.heartbeat'
    assert container.exec(['cat', heartbeat]).stdout.startswith('x2 ')
    assert container.exec([PROBE, 'echo', 'plain app']).stdout == 'plain app\n'


def test_host_refreshes_x2_to_x1_through_the_proxy_socket(
    container: Container, probe: Probe, snapd_socket: str
) -> None:
    reset(container, 'x2')
    info = snap_info()
    assert (info['revision'], info['version']) == ('x2', '2.0')
    assert {app['name'] for app in info['apps'] if app.get('daemon')} == {'web', 'worker'}

    change = wait_change(refresh('x1'))

    assert change['status'] == 'Done', change.get('err')
    assert snap_info()['revision'] == 'x1'
    assert_workload_runs(container, '1.0')


def test_failing_post_refresh_hook_makes_snapd_undo(
    container: Container, probe: Probe, snapd_socket: str
) -> None:
    before = snap_info()['revision']
    target = 'x2' if before == 'x1' else 'x1'
    with post_refresh_hook_fails(container):
        change = wait_change(refresh(target))

    assert change['status'] == 'Error'
    assert 'post-refresh' in change['err']
    assert snap_info()['revision'] == before
    assert_workload_runs(container, probe.version(before))


def test_reboot_brings_back_snapd_and_the_services(
    container: Container, probe: Probe, snapd_socket: str
) -> None:
    before = snap_info()
    leader = container.leader_pid
    container.exec(['touch', '/run/cu-before-reboot'])

    assert container.reboot() == 'running', container.failed_units

    assert container.leader_pid != leader
    assert container.exec(['test', '-e', '/run/cu-before-reboot'], check=False).returncode == 1
    after = snap_info()
    assert (after['revision'], after['version']) == (before['revision'], before['version'])
    assert_workload_runs(container, before['version'])


def test_python_inside_has_the_wheels(
    container: Container, container_python: InsidePython
) -> None:
    code = 'import charm_refresh, ops, pytest; print(ops.__version__)'
    assert container.run_python(code).stdout.strip()
    if container_python.project_wheel is None:
        pytest.fail(f'the repository wheel did not build: {container_python.project_error}')
    result = container.run_python('import charm_upgrade; print(charm_upgrade.__file__)')
    site = f'/opt/venv/lib/python{container.distro.python}/site-packages'
    assert result.stdout.startswith(f'{site}/charm_upgrade/')
