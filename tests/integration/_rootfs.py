# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What the integration container's root filesystem holds, and how it is made.

Everything that ends up in the cached tree is defined in this module, and the
cache key is a hash of this file's bytes (plus the mirror and the architecture):
edit anything here and the next run builds a fresh tree. Runtime behaviour (how
the tree is booted, entered and stopped) lives in ``_container.py`` and does not
invalidate the cache.

The recipe: a Debian tree with systemd and Debian's snapd, plus six
adjustments, each explained where it is applied below. Two distributions are
built from it (:data:`DISTROS`): bookworm (snapd 2.57, systemd 252) and trixie
(snapd 2.68, systemd 257); the cache key includes the distribution.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

PACKAGES = (
    'systemd',
    'systemd-sysv',
    'dbus',
    # debootstrap does not resolve `a | b` alternatives: without this, snapd's
    # `default-dbus-session-bus | dbus-session-bus` dependency is unmet.
    'dbus-user-session',
    'snapd',
    'squashfs-tools',
    'curl',
    'ca-certificates',
    'busybox-static',
    'python3',
    'python3-venv',
)


class Distro(NamedTuple):
    """A Debian release the tier runs on."""

    suite: str
    python: str
    """The version of its python3, for the wheels installed inside."""
    snapd: str
    """The snapd version it ships (major.minor, as the tests compare it)."""


DISTROS = {
    'bookworm': Distro('bookworm', '3.11', '2.57'),
    # trixie's minbase has neither python3 nor `which`: PACKAGES brings
    # python3, and nothing in the tier runs `which`.
    'trixie': Distro('trixie', '3.13', '2.68'),
}
DEFAULT_DISTROS = ('bookworm', 'trixie')

SHARE_INSIDE = '/run/host-share'
"""Where the host's per-session share directory is bind-mounted in the container."""

PROXY_SOCKET_NAME = 'snapd.socket'
"""File name of snapd's proxy socket in the share directory (host side)."""

PROXY_UNIT = 'host-snapd-proxy'

# Hygiene: timers and the console getty that only add noise and load.
MASKED_UNITS = (
    'apt-daily.timer',
    'apt-daily-upgrade.timer',
    'dpkg-db-backup.timer',
    'e2scrub_all.timer',
    'fstrim.timer',
    'console-getty.service',
)

LOOP_DEVICES = 64

# Adjustment 3: /sys is read-only in the container, so `udevadm control --reload`
# and `udevadm trigger` (run by snapd on every snap install) fail. The real
# binary is diverted to udevadm.distrib; this shim swallows the three verbs snapd
# needs and hands every other call to the real one. Snap udev and device-cgroup
# rules are therefore not applied (fine for network-only test snaps).
UDEVADM_SHIM = """\
#!/bin/sh
# charm-upgrade integration harness: see tests/integration/_rootfs.py
case "$1" in
    control|trigger|settle) exit 0 ;;
esac
exec /usr/bin/udevadm.distrib "$@"
"""

# Adjustment 4: the container's /dev is private; snapd needs loop devices to
# mount snaps. The container has CAP_MKNOD and no device cgroup, so tmpfiles
# can create the nodes at boot (the loop devices are the host kernel's).
LOOP_TMPFILES = 'c /dev/loop-control 0660 root disk - 10:237\n' + ''.join(
    f'b /dev/loop{n} 0660 root disk - 7:{n}\n' for n in range(LOOP_DEVICES)
)

# Adjustment 5 (second half): the stand-in snapd snap has no binaries, so
# snapd must not try to re-exec into it.
SNAPD_DROPIN = """\
[Service]
Environment=SNAP_REEXEC=0
"""

# Host processes cannot use /run/snapd.socket through /proc/<pid>/root: snapd
# cannot see their PID in its namespace and answers 403 login-required. This
# proxy, started inside, listens in the shared directory; snapd sees it as root.
PROXY_SOCKET_UNIT = f"""\
[Unit]
Description=snapd proxy socket for the test host

[Socket]
ListenStream={SHARE_INSIDE}/{PROXY_SOCKET_NAME}
SocketMode=0666

[Install]
WantedBy=sockets.target
"""

PROXY_SERVICE_UNIT = f"""\
[Unit]
Description=snapd proxy for the test host
Requires={PROXY_UNIT}.socket
After={PROXY_UNIT}.socket snapd.socket

[Service]
ExecStart=/lib/systemd/systemd-socket-proxyd /run/snapd.socket
"""

# Adjustment 5: no store, so the system snaps snapd insists on are local
# stand-ins. `bare` is an empty base: only the mount-point directories.
BARE_DIRS = (
    'dev',
    'etc',
    'home',
    'root',
    'proc',
    'sys',
    'tmp',
    'var/snap',
    'var/lib/snapd',
    'var/tmp',
    'var/log',
    'run',
    'lib/modules',
    'lib/firmware',
    'usr/src',
    'usr/lib/snapd',
    'media',
    'mnt',
    'snap',
    'writable',
)

BARE_YAML = """\
name: bare
version: '1.0'
summary: Empty base snap (charm-upgrade integration stand-in)
description: Only mount points; apps must bring their own binaries.
type: base
"""

SNAPD_YAML = """\
name: snapd
version: 'stand-in'
summary: snapd stand-in (charm-upgrade integration)
description: Carries only usr/lib/snapd/info; SNAP_REEXEC=0 keeps the host snapd.
type: snapd
"""

REFRESH_HOLD_DAYS = 60


class Runner(Protocol):
    """The part of the container the seeding step needs."""

    def exec(
        self,
        cmd: list[str],
        *,
        check: bool = True,
        timeout: float = ...,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the booted container."""
        ...


def debootstrap(root: pathlib.Path, distro: Distro, mirror: str, keyring: str | None) -> None:
    """Create the minimal tree of ``distro`` with every package the recipe needs."""
    cmd = [
        'debootstrap',
        '--variant=minbase',
        f'--include={",".join(PACKAGES)}',
    ]
    if keyring:
        cmd.append(f'--keyring={keyring}')
    cmd += [distro.suite, str(root), mirror]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log = root / 'debootstrap' / 'debootstrap.log'
        detail = log.read_text(errors='replace')[-3000:] if log.exists() else ''
        raise RuntimeError(
            f'debootstrap of {distro.suite} from {mirror} failed (exit {result.returncode}):\n'
            f'{result.stdout[-2000:]}{result.stderr[-2000:]}\n{detail}'
        )


def _write(root: pathlib.Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip('/')
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


def _symlink(root: pathlib.Path, path: str, to: str) -> None:
    link = root / path.lstrip('/')
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(to)


def touch_catalog(root: pathlib.Path) -> None:
    """Adjustment 6: make snapd believe its store catalog is fresh.

    Every snapd start otherwise retries the unreachable catalog for ~32 s and
    queues tasks behind it. The next refresh is due 24 h after the files'
    mtime, so this is repeated on each session's copy of the tree.
    """
    cache = root / 'var/cache/snapd'
    cache.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for name in ('names', 'sections'):
        path = cache / name
        path.touch()
        os.utime(path, (now, now))


def configure(root: pathlib.Path) -> None:
    """Apply the offline adjustments and the hygiene to a fresh debootstrap tree."""
    for deb in (root / 'var/cache/apt/archives').glob('*.deb'):
        deb.unlink()
    # Each session passes its own --uuid; an empty machine-id makes systemd use it.
    (root / 'etc/machine-id').write_text('')
    # Adjustment 3 (udev): divert the real udevadm, install the shim.
    subprocess.run(
        ['chroot', str(root), 'dpkg-divert', '--local', '--rename', '--add', '/usr/bin/udevadm'],
        check=True,
        capture_output=True,
        text=True,
    )
    _write(root, '/usr/bin/udevadm', UDEVADM_SHIM, 0o755)
    # Adjustment 4 (loop devices).
    _write(root, '/etc/tmpfiles.d/charm-upgrade-it-loop.conf', LOOP_TMPFILES)
    # Adjustment 5 (second half): no re-exec into the stand-in snapd snap.
    _write(root, '/etc/systemd/system/snapd.service.d/charm-upgrade-it.conf', SNAPD_DROPIN)
    # Adjustment 6 (store-retry stall).
    touch_catalog(root)
    # The proxy socket for host clients.
    _write(root, f'/etc/systemd/system/{PROXY_UNIT}.socket', PROXY_SOCKET_UNIT)
    _write(root, f'/etc/systemd/system/{PROXY_UNIT}.service', PROXY_SERVICE_UNIT)
    _symlink(
        root,
        f'/etc/systemd/system/sockets.target.wants/{PROXY_UNIT}.socket',
        f'/etc/systemd/system/{PROXY_UNIT}.socket',
    )
    # Hygiene.
    for unit in MASKED_UNITS:
        for wants in (root / 'etc/systemd/system').glob(f'*.wants/{unit}'):
            wants.unlink()
        _symlink(root, f'/etc/systemd/system/{unit}', '/dev/null')
    # Adjustments 1 and 2 (cgroup2, no host machined) are nspawn flags; see _container.py.


def write_standins(share: pathlib.Path, root: pathlib.Path) -> pathlib.Path:
    """Write the source trees of the `bare` and `snapd` stand-in snaps under ``share``."""
    base = share / 'standins'
    bare = base / 'bare'
    for sub in BARE_DIRS:
        (bare / sub).mkdir(parents=True, exist_ok=True)
    _write(bare, '/meta/snap.yaml', BARE_YAML)
    snapd = base / 'snapd'
    _write(snapd, '/meta/snap.yaml', SNAPD_YAML)
    # Without the info file snapd's journal repeats `cannot open snapd info file`.
    info = snapd / 'usr/lib/snapd/info'
    info.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / 'usr/lib/snapd/info', info)
    return base


def refresh_hold_value(days: int = REFRESH_HOLD_DAYS) -> str:
    """RFC 3339 time ``days`` from now, for `snap set system refresh.hold=`."""
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return when.strftime('%Y-%m-%dT%H:%M:%SZ')


def squashfs_command(source: str, target: str) -> list[str]:
    """The command that packs the snap tree ``source`` into ``target`` (paths inside).

    ``snap pack`` fails on trixie once the stand-in snapd snap is installed
    (snapd 2.68 looks for ``mksquashfs`` inside the snapd snap), so every snap
    of the tier is packed with squashfs-tools directly, with the options
    ``snap pack`` uses.
    """
    return [
        'mksquashfs',
        source,
        target,
        '-noappend',
        '-comp',
        'xz',
        '-no-xattrs',
        '-no-fragments',
        '-all-root',
        '-quiet',
    ]


def seed(container: Runner, share: pathlib.Path, root: pathlib.Path) -> None:
    """First boot of the tree: install the two stand-ins (snapd first) and hold refreshes."""
    write_standins(share, root)
    inside = f'{SHARE_INSIDE}/standins'
    container.exec(['snap', 'wait', 'system', 'seed.loaded'], timeout=180)
    for name in ('snapd', 'bare'):
        container.exec(squashfs_command(f'{inside}/{name}', f'{inside}/{name}.snap'), timeout=120)
    for name in ('snapd', 'bare'):
        container.exec(['snap', 'install', '--dangerous', f'{inside}/{name}.snap'], timeout=180)
    container.exec(['snap', 'set', 'system', f'refresh.hold={refresh_hold_value()}'])
    listing = container.exec(['snap', 'list']).stdout
    missing: Sequence[str] = [n for n in ('snapd', 'bare') if f'\n{n} ' not in f'\n{listing}']
    if missing:
        raise RuntimeError(f'stand-in snaps missing after seeding: {missing}\n{listing}')
