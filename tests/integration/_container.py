# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A Debian container with a real systemd (PID 1) and Debian's snapd: bookworm or trixie.

The integration tier needs what the unit tests fake: systemd as PID 1 and a snapd
that mounts snaps and runs their services. The project's VMs run neither (PID 1
is not systemd, there is no Snap Store), so this harness boots a Debian tree with
``systemd-nspawn`` (the recipe and its adjustments are in ``_rootfs.py``).

Life of a test session::

    container = Container(distro='trixie')   # or 'bookworm'
    container.start()          # host tools, cached tree, private copy, boot
    container.exec(['systemctl', 'is-system-running'])
    container.stop()           # also run by atexit if the caller forgets

- The tree is built once per machine (debootstrap, adjustments, first boot that
  seeds the stand-in snaps) and cached in ``/var/cache/charm-upgrade-it``; see
  ``_rootfs.py``, whose bytes are the cache key.
- Each session boots its own copy (``cp -a --reflink=auto``) under a unique work
  directory and machine name, so sessions never touch the cache or each other.
- Host processes reach the container's snapd through a proxy socket in the share
  directory (:attr:`Container.snapd_socket`).

Environment variables (all optional): ``CHARM_UPGRADE_IT_CACHE`` (cache
directory), ``CHARM_UPGRADE_IT_WORKDIR`` (parent of the session directories),
``CHARM_UPGRADE_IT_MIRROR`` (Debian mirror, instead of the host's apt sources),
``CHARM_UPGRADE_IT_KEEP=1`` (keep the session directory after stop, to debug),
``CHARM_UPGRADE_IT_CPU`` (the host CPU the container is pinned to; see :func:`pick_cpu`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import pathlib
import platform
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING

import _rootfs

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

logger = logging.getLogger(__name__)

HERE = pathlib.Path(__file__).resolve().parent
CACHE_DIR = pathlib.Path(os.environ.get('CHARM_UPGRADE_IT_CACHE', '/var/cache/charm-upgrade-it'))
WORK_BASE = pathlib.Path(os.environ.get('CHARM_UPGRADE_IT_WORKDIR', '/var/tmp/charm-upgrade-it'))
HOST_PACKAGES = ('systemd-container', 'debootstrap')
HOST_TOOLS = {'systemd-nspawn': 'systemd-container', 'debootstrap': 'debootstrap'}
INSIDE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin'
REBOOT_EXIT_CODE = 133
"""systemd-nspawn's exit status when the container asked to reboot."""
KEEP_CACHES = 2
PROBE_SNAP = 'cu-probe'

_apt_updated = False


class ContainerError(RuntimeError):
    """The container cannot be built, booted, entered or stopped."""


class ContainerCommandError(subprocess.CalledProcessError):
    """A command inside the container exited non-zero; the message carries its output."""

    def __str__(self) -> str:
        out = (self.output or '')[-2000:]
        err = (self.stderr or '')[-2000:]
        return f'{super().__str__()}\n--- stdout ---\n{out}--- stderr ---\n{err}'


# --- host preparation -------------------------------------------------------------------------


def _run_host(cmd: Sequence[str], *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
    return subprocess.run(
        list(cmd), capture_output=True, text=True, check=False, timeout=timeout, env=env
    )


def ensure_host_tools() -> None:
    """Check the host can run the container, installing missing tools with apt-get.

    Raises:
        ContainerError: not root, no loop or squashfs support, or apt-get failed.
    """
    global _apt_updated
    if os.geteuid() != 0:
        raise ContainerError(
            'the integration container needs root (debootstrap, systemd-nspawn, nsenter); '
            f'running as uid {os.geteuid()}'
        )
    if not pathlib.Path('/dev/loop-control').exists():
        raise ContainerError('no /dev/loop-control on the host: snapd cannot mount snaps')
    if 'squashfs' not in pathlib.Path('/proc/filesystems').read_text():
        raise ContainerError('the host kernel has no squashfs: snapd cannot mount snaps')
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    for tool in ('nsenter', 'taskset', 'chroot', 'cp'):
        if shutil.which(tool) is None:
            raise ContainerError(f'{tool} is missing on the host (util-linux/coreutils)')
    if not missing:
        return
    if shutil.which('apt-get') is None:
        raise ContainerError(f'{", ".join(missing)} missing and there is no apt-get to install')
    if not _apt_updated:
        result = _run_host(['apt-get', 'update'])
        if result.returncode != 0:
            raise ContainerError(f'apt-get update failed:\n{result.stdout[-2000:]}{result.stderr}')
        _apt_updated = True
    result = _run_host(['apt-get', 'install', '-y', '--no-install-recommends', *HOST_PACKAGES])
    if result.returncode != 0:
        raise ContainerError(
            f'apt-get install {" ".join(HOST_PACKAGES)} failed:\n'
            f'{result.stdout[-2000:]}{result.stderr[-2000:]}'
        )
    still = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if still:
        raise ContainerError(f'{still} still missing after apt-get install')


def _apt_sources() -> Iterator[tuple[list[str], str, list[str], list[str], str | None]]:
    """Yield (types, uri, suites, components, signed_by) from the host's apt sources."""
    files = [pathlib.Path('/etc/apt/sources.list')]
    files += sorted(pathlib.Path('/etc/apt/sources.list.d').glob('*.list'))
    for path in files:
        if not path.is_file():
            continue
        for raw in path.read_text(errors='replace').splitlines():
            line = raw.split('#', 1)[0].strip()
            if not line:
                continue
            signed_by = None
            options = re.search(r'\[([^]]*)\]', line)
            if options:
                match = re.search(r'signed-by=(\S+)', options.group(1))
                signed_by = match.group(1) if match else None
                line = line.replace(options.group(0), ' ')
            fields = line.split()
            if len(fields) >= 3:
                yield [fields[0]], fields[1], [fields[2]], fields[3:], signed_by
    for path in sorted(pathlib.Path('/etc/apt/sources.list.d').glob('*.sources')):
        for stanza in re.split(r'\n\s*\n', path.read_text(errors='replace')):
            fields: dict[str, str] = {}
            key = ''
            for raw in stanza.splitlines():
                if raw.startswith('#'):
                    continue
                if raw[:1].isspace() and key:
                    fields[key] += ' ' + raw.strip()
                elif ':' in raw:
                    key, _, value = raw.partition(':')
                    key = key.strip().lower()
                    fields[key] = value.strip()
            if fields.get('enabled', 'yes').lower() == 'no':
                continue
            for uri in fields.get('uris', '').split():
                yield (
                    fields.get('types', '').split(),
                    uri,
                    fields.get('suites', '').split(),
                    fields.get('components', '').split(),
                    fields.get('signed-by') or None,
                )


def find_mirror() -> tuple[str, str | None]:
    """The Debian mirror (and its keyring) of the host's Debian `main` apt source.

    A Debian mirror serves every release, so the host's bookworm source also
    gives trixie's tree; the keyring is the source's ``signed-by`` one.

    Raises:
        ContainerError: no such source (set CHARM_UPGRADE_IT_MIRROR).
    """
    override = os.environ.get('CHARM_UPGRADE_IT_MIRROR')
    if override:
        return override, None
    for types, uri, suites, components, signed_by in _apt_sources():
        if 'deb' in types and set(suites) & set(_rootfs.DISTROS) and 'main' in components:
            keyring = signed_by if signed_by and pathlib.Path(signed_by).is_file() else None
            return uri, keyring
    raise ContainerError(
        f'no `deb ... {"|".join(_rootfs.DISTROS)} main` source in /etc/apt/sources.list or '
        '/etc/apt/sources.list.d/*: set CHARM_UPGRADE_IT_MIRROR to a Debian mirror'
    )


def rootfs_key(distro: _rootfs.Distro, mirror: str) -> str:
    """Cache key of a tree: the bytes of _rootfs.py, the suite, the mirror, the architecture."""
    digest = hashlib.sha256()
    digest.update((HERE / '_rootfs.py').read_bytes())
    digest.update(f'\0{distro.suite}\0{mirror}\0{platform.machine()}'.encode())
    return digest.hexdigest()[:16]


# --- small host helpers -----------------------------------------------------------------------


@contextlib.contextmanager
def _flock(path: pathlib.Path, operation: int) -> Iterator[None]:
    with path.open('a') as handle:
        fcntl.flock(handle, operation)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mounts_under(path: pathlib.Path) -> list[str]:
    prefix = str(path).rstrip('/') + '/'
    points: list[str] = []
    for line in pathlib.Path('/proc/self/mountinfo').read_text().splitlines():
        point = line.split()[4].replace('\\040', ' ')
        if point.startswith(prefix) or point == str(path):
            points.append(point)
    return points


def _remove_tree(path: pathlib.Path) -> None:
    """Remove ``path``; first lazily unmount anything mounted below it (debootstrap's /proc)."""
    if not path.exists():
        return
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(['umount', '-l', point], check=False, capture_output=True)
    if _mounts_under(path):
        raise ContainerError(f'refusing to delete {path}: still mounted {_mounts_under(path)}')
    shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: pathlib.Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(errors='replace')
    except OSError:
        return ''
    return re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', text[-chars:])


class _Cgroups:
    """A private cgroup per nspawn, in each hierarchy nspawn uses (cgroup2, name=systemd).

    With ``--keep-unit`` and no systemd on the host, nspawn creates ``payload`` and
    ``supervisor`` cgroups below its own cgroup and leaves them behind. Started in a
    cgroup of its own, two sessions cannot collide there, stop() can find every
    process of the container by cgroup, and cleanup is an rmdir of our own tree.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.dirs: list[pathlib.Path] = []
        own: dict[str, str] = {}
        for line in pathlib.Path('/proc/self/cgroup').read_text().splitlines():
            _, controllers, path = line.split(':', 2)
            if controllers == '':
                own['cgroup2'] = path
            elif 'name=systemd' in controllers.split(','):
                own['name=systemd'] = path
        for line in pathlib.Path('/proc/self/mountinfo').read_text().splitlines():
            left, _, right = line.partition(' - ')
            fields = left.split()
            fstype, _, options = right.split()[:3] if right else ('', '', '')
            root, point = fields[3], fields[4]
            kind = ''
            if fstype == 'cgroup2':
                kind = 'cgroup2'
            elif fstype == 'cgroup' and 'name=systemd' in options.split(','):
                kind = 'name=systemd'
            if not kind or kind not in own:
                continue
            rel = own.pop(kind)
            if root != '/' and rel.startswith(root):
                rel = rel[len(root) :]
            self.dirs.append(pathlib.Path(point + rel.rstrip('/')) / name)

    def create(self) -> None:
        """Create the session cgroups."""
        for path in self.dirs:
            path.mkdir(exist_ok=True)

    def procs(self) -> set[int]:
        """Every PID in the session cgroups (recursively)."""
        pids: set[int] = set()
        for path in self.dirs:
            for procs in glob.glob(f'{glob.escape(str(path))}/**/cgroup.procs', recursive=True):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in pathlib.Path(procs).read_text().split())
        return pids

    def kill_all(self, timeout: float = 10) -> None:
        """SIGKILL every process left in the session cgroups."""
        deadline = time.monotonic() + timeout
        while (pids := self.procs()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def remove(self) -> list[str]:
        """Remove the (empty) session cgroup trees bottom-up; return what could not go."""
        left: list[str] = []
        for path in self.dirs:
            if not path.exists():
                continue
            subdirs = sorted(
                (pathlib.Path(p) for p, _, _ in os.walk(path)), key=lambda p: -len(p.parts)
            )
            for sub in subdirs:
                try:
                    sub.rmdir()
                except OSError as error:
                    left.append(f'{sub}: {error.strerror}')
        return left

    def shell_prefix(self) -> list[str]:
        """``sh -c`` prefix that moves itself into the cgroups, then execs the command."""
        moves = ' && '.join(
            f'echo $$ > {shlex.quote(str(path / "cgroup.procs"))}' for path in self.dirs
        )
        return ['sh', '-c', f'{moves or "true"} && exec "$@"', 'sh']


def pick_cpu() -> int:
    """The one host CPU a container and every command run in it are pinned to.

    Linux 6.18 allocates mount namespace ids from per-CPU batches, so a namespace
    created later on another CPU can get a smaller id. The kernel's loop check
    (mnt_ns_loop) then refuses snap-confine's bind mount of the snap's new mount
    namespace: `cannot preserve mount namespace of process N as SNAP.mnt: Invalid
    argument` (worked around upstream in snapd PR #17376; Debian's 2.57.6 has no fix).
    Measured on a 2-CPU VM with `unshare --mount=FILE` (the same bind mount) run
    inside: unpinned, 38 of 60 failed; pinned to the container's CPU, 0 of 60; to
    the other CPU, 60 of 60. Ids allocated on one CPU only grow, so
    pinning nspawn (hence the whole container) and each nsenter to one CPU keeps
    the container's namespace older than every namespace made inside it.
    """
    chosen = os.environ.get('CHARM_UPGRADE_IT_CPU')
    allowed = sorted(os.sched_getaffinity(0))
    if chosen is not None:
        if int(chosen) not in allowed:
            raise ContainerError(
                f'CHARM_UPGRADE_IT_CPU={chosen} not in the allowed CPUs {allowed}'
            )
        return int(chosen)
    return allowed[-1]


# --- one systemd-nspawn process on one tree ---------------------------------------------------


class _Nspawn:
    """Boot, enter and stop one tree; used for the build's first boot and for sessions."""

    def __init__(
        self, root: pathlib.Path, share: pathlib.Path, name: str, console: pathlib.Path
    ) -> None:
        self.root = root
        self.share = share
        self.name = name
        self.console = console
        self.uuid = uuid.uuid4().hex
        self.cgroups = _Cgroups(f'charm-upgrade-it-{name}')
        self.cpu = pick_cpu()
        self.process: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self.state = ''
        self.failed_units: list[str] = []

    def boot(self, timeout: float = 180) -> float:
        """Start nspawn and wait until systemd is up; return the seconds it took."""
        self.cgroups.create()
        cmd = [
            *self._pin(),
            *self.cgroups.shell_prefix(),
            'systemd-nspawn',
            '--boot',
            f'--directory={self.root}',
            f'--machine={self.name}',
            f'--uuid={self.uuid}',
            # Adjustment 2: the host has no systemd/machined to register with.
            '--register=no',
            '--keep-unit',
            '--console=read-only',
            # Keeps snapd's store calls local: `network is unreachable`, fast.
            '--private-network',
            f'--bind={self.share}:{_rootfs.SHARE_INSIDE}',
        ]
        # Adjustment 1: cgroup2 inside, else snap daemons fail on read-only v1 controllers.
        env = {**os.environ, 'SYSTEMD_NSPAWN_UNIFIED_HIERARCHY': '1'}
        started = time.monotonic()
        with self.console.open('ab') as console:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.leader = None
        self.wait_running(started + timeout)
        return time.monotonic() - started

    def _pin(self) -> list[str]:
        return ['taskset', '--cpu-list', str(self.cpu)]

    def _find_leader(self) -> int | None:
        assert self.process is not None
        pid = self.process.pid
        children: list[int] = []
        for path in glob.glob(f'/proc/{pid}/task/*/children'):
            with contextlib.suppress(OSError):
                children += [int(c) for c in pathlib.Path(path).read_text().split()]
        for child in children:
            with contextlib.suppress(OSError):
                status = pathlib.Path(f'/proc/{child}/status').read_text()
                nspid = re.search(r'^NSpid:\s+(.*)$', status, re.MULTILINE)
                if nspid and nspid.group(1).split()[-1] == '1' and len(nspid.group(1).split()) > 1:
                    return child
        return None

    def _check_alive(self, doing: str) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise ContainerError(
                f'systemd-nspawn exited with {code} while {doing} ({self.name}); console:\n'
                f'{_tail(self.console)}'
            )

    def wait_running(self, deadline: float) -> None:
        """Wait until `systemctl is-system-running` says running or degraded."""
        state = ''
        while time.monotonic() < deadline:
            self._check_alive('booting')
            if self.leader is None:
                self.leader = self._find_leader()
                if self.leader is None:
                    time.sleep(0.05)
                    continue
            result = self.exec(['systemctl', 'is-system-running'], check=False, timeout=30)
            state = result.stdout.strip()
            if state in ('running', 'degraded'):
                self.state = state
                self.failed_units = []
                if state == 'degraded':
                    failed = self.exec(
                        ['systemctl', '--failed', '--no-legend', '--plain'], check=False
                    )
                    self.failed_units = [
                        line.split()[0] for line in failed.stdout.splitlines() if line.strip()
                    ]
                    logger.warning(
                        '%s is degraded; failed units: %s', self.name, self.failed_units
                    )
                return
            time.sleep(0.1)
        raise ContainerError(
            f'{self.name} not running in time (last state {state!r}); console:\n'
            f'{_tail(self.console)}'
        )

    def exec(
        self,
        cmd: list[str],
        *,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        input: str | None = None,  # noqa: A002 (same name as subprocess.run's)
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the container's namespaces (see Container.exec)."""
        if self.leader is None or self.process is None or self.process.poll() is not None:
            raise ContainerError(f'{self.name} is not running; cannot run {cmd}')
        variables = {'PATH': INSIDE_PATH, 'HOME': '/root', 'LANG': 'C.UTF-8', **(env or {})}
        full = [
            *self._pin(),
            'nsenter',
            f'--target={self.leader}',
            '--mount',
            '--uts',
            '--ipc',
            '--net',
            '--pid',
            '--cgroup',
            '--root',
            '--wd',
            'env',
            '-i',
            *(f'{k}={v}' for k, v in variables.items()),
            *cmd,
        ]
        result = subprocess.run(
            full, capture_output=True, text=True, timeout=timeout, check=False, input=input
        )
        if check and result.returncode != 0:
            raise ContainerCommandError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for nspawn to exit; its exit status, or None on timeout."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 90) -> list[str]:
        """Power off (escalating to SIGTERM, then SIGKILL); return cleanup complaints."""
        problems: list[str] = []
        if self.process is not None and self.process.poll() is None:
            if self.leader is not None:
                with contextlib.suppress(ContainerError, subprocess.TimeoutExpired):
                    self.exec(['systemctl', 'poweroff', '--no-block'], check=False, timeout=30)
            if self.wait_exit(timeout) is None:
                problems.append(f'{self.name}: no poweroff within {timeout}s, sent SIGTERM')
                self.process.terminate()
                if self.wait_exit(30) is None:
                    problems.append(f'{self.name}: SIGTERM ignored, sent SIGKILL')
                    self.process.kill()
                    self.process.wait(30)
        self.leader = None
        if self.cgroups.procs():
            problems.append(f'{self.name}: processes left in its cgroup, killed them')
            self.cgroups.kill_all()
        problems += self.cgroups.remove()
        return problems


# --- the container ----------------------------------------------------------------------------


class Container:
    """One booted copy of the cached tree for one test session.

    Args:
        distro: the Debian release, a key of ``_rootfs.DISTROS`` (bookworm, trixie).
        cache_dir: where the built trees are cached (``CHARM_UPGRADE_IT_CACHE``).
        work_base: parent of the session directory (``CHARM_UPGRADE_IT_WORKDIR``).
    """

    def __init__(
        self,
        *,
        distro: str = 'bookworm',
        cache_dir: pathlib.Path | None = None,
        work_base: pathlib.Path | None = None,
    ) -> None:
        if distro not in _rootfs.DISTROS:
            raise ContainerError(
                f'unknown distribution {distro!r}: one of {list(_rootfs.DISTROS)}'
            )
        self.distro = _rootfs.DISTROS[distro]
        self.cache_dir = cache_dir or CACHE_DIR
        self.work_base = work_base or WORK_BASE
        self.name = f'cu-it-{distro[:4]}-{os.getpid()}-{secrets.token_hex(3)}'
        self.workdir = self.work_base / self.name
        self.rootfs = self.workdir / 'rootfs'
        self.share_dir = self.workdir / 'share'
        self.console_log = self.workdir / 'console.log'
        self.timings: dict[str, float] = {}
        self.reboots = 0
        self._nspawn: _Nspawn | None = None
        self._stopped = False

    # -- properties

    @property
    def snapd_socket(self) -> str:
        """Host path of the proxy to the container's snapd (for the library and the tests)."""
        return str(self.share_dir / _rootfs.PROXY_SOCKET_NAME)

    @property
    def share_inside(self) -> str:
        """Where :attr:`share_dir` appears inside the container."""
        return _rootfs.SHARE_INSIDE

    @property
    def system_state(self) -> str:
        """`systemctl is-system-running` at the end of the last boot (running/degraded)."""
        return self._nspawn.state if self._nspawn else ''

    @property
    def failed_units(self) -> list[str]:
        """Units that had failed when the last boot finished (empty when running)."""
        return list(self._nspawn.failed_units) if self._nspawn else []

    @property
    def leader_pid(self) -> int | None:
        """Host PID of the container's systemd (PID 1 inside)."""
        return self._nspawn.leader if self._nspawn else None

    # -- lifecycle

    def start(self) -> None:
        """Make sure the tree is cached, copy it, boot the copy and wait for snapd.

        Raises:
            ContainerError: with the reason, whenever any of that is impossible.
        """
        begin = time.monotonic()
        atexit.register(self.stop)
        try:
            ensure_host_tools()
            self.timings['host_tools'] = time.monotonic() - begin
            _reap_stale_sessions(self.work_base)
            mirror, keyring = find_mirror()
            cached = self._cached_tree(mirror, keyring)
            self.workdir.mkdir(parents=True)
            self.share_dir.mkdir()
            (self.workdir / 'session.json').write_text(
                json.dumps({'owner': os.getpid(), 'machine': self.name, 'tree': str(cached)})
            )
            started = time.monotonic()
            with _flock(self.cache_dir / '.lock', fcntl.LOCK_SH):
                if not cached.is_dir():
                    raise ContainerError(f'{cached} vanished before it could be copied')
                _copy_tree(cached, self.rootfs)
                (cached.parent / f'{cached.name}.used').touch()
            self.timings['copy'] = time.monotonic() - started
            # The catalog files must look fresh at every boot, or snapd stalls ~32 s.
            _rootfs.touch_catalog(self.rootfs)
            self._boot()
            self.timings['start_total'] = time.monotonic() - begin
        except ContainerError:
            self.stop()
            raise
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            # debootstrap, seeding, a command inside: the reason, without a traceback.
            self.stop()
            raise ContainerError(f'{type(error).__name__}: {error}') from error
        except BaseException:
            self.stop()
            raise

    def _cached_tree(self, mirror: str, keyring: str | None) -> pathlib.Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tree = self.cache_dir / f'rootfs-{self.distro.suite}-{rootfs_key(self.distro, mirror)}'
        if tree.is_dir():
            return tree
        with _flock(self.cache_dir / '.lock', fcntl.LOCK_EX):
            if tree.is_dir():  # another run built it while we waited
                return tree
            self.timings.update(build_rootfs(tree, self.distro, mirror, keyring))
        return tree

    def _boot(self) -> None:
        self._nspawn = _Nspawn(self.rootfs, self.share_dir, self.name, self.console_log)
        (self.workdir / 'session.json').write_text(
            json.dumps(
                {
                    'owner': os.getpid(),
                    'machine': self.name,
                    'cgroups': [str(p) for p in self._nspawn.cgroups.dirs],
                }
            )
        )
        self.timings['boot'] = self._nspawn.boot()
        started = time.monotonic()
        self.wait_snapd()
        # Hold auto-refresh again on every boot: the cached value may be near its end.
        self.exec(
            ['snap', 'set', 'system', f'refresh.hold={_rootfs.refresh_hold_value()}'],
            timeout=60,
        )
        self.timings['snapd_ready'] = time.monotonic() - started

    def wait_snapd(self, timeout: float = 120) -> None:
        """Wait until snapd answers, has its seed loaded and the proxy socket exists."""
        deadline = time.monotonic() + timeout
        self.exec(['snap', 'wait', 'system', 'seed.loaded'], timeout=timeout)
        while not pathlib.Path(self.snapd_socket).exists():
            if time.monotonic() > deadline:
                raise ContainerError(f'no proxy socket at {self.snapd_socket}')
            time.sleep(0.05)

    def reboot(self, timeout: float = 180) -> str:
        """Reboot for real (`systemctl reboot`, then boot the same tree again).

        nspawn exits with status 133 when its container reboots; the same tree and
        share are booted again, so the state on disk survives. Returns the system
        state (``running`` or ``degraded``; :attr:`failed_units` lists failures).
        """
        nspawn = self._require()
        started = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            nspawn.exec(['systemctl', 'reboot', '--no-block'], check=False, timeout=30)
        code = nspawn.wait_exit(timeout)
        if code is None:
            raise ContainerError(f'{self.name} did not go down within {timeout}s for reboot')
        if code != REBOOT_EXIT_CODE:
            raise ContainerError(
                f'systemd-nspawn exited {code} on reboot (expected {REBOOT_EXIT_CODE}); '
                f'console:\n{_tail(self.console_log)}'
            )
        leftovers = nspawn.cgroups.remove()
        if leftovers:
            logger.warning('cgroups left after reboot: %s', leftovers)
        nspawn.leader = None
        nspawn.boot(timeout)
        self.wait_snapd()
        self.reboots += 1
        self.timings[f'reboot_{self.reboots}'] = time.monotonic() - started
        return nspawn.state

    def stop(self) -> None:
        """Power off, kill what is left by PID, remove cgroups and the session directory.

        Idempotent; also registered with atexit by :meth:`start`.
        """
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        started = time.monotonic()
        problems: list[str] = []
        try:
            if self._nspawn is not None:
                problems += self._nspawn.stop()
        finally:
            if os.environ.get('CHARM_UPGRADE_IT_KEEP') == '1':
                logger.warning('keeping %s (CHARM_UPGRADE_IT_KEEP=1)', self.workdir)
            else:
                _remove_tree(self.workdir)
            self.timings['stop'] = time.monotonic() - started
        if problems:
            logger.warning('stopping %s: %s', self.name, '; '.join(problems))

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- running things inside

    def _require(self) -> _Nspawn:
        if self._nspawn is None or self._stopped:
            raise ContainerError(f'{self.name} is not started')
        return self._nspawn

    def exec(
        self,
        cmd: list[str],
        *,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        input: str | None = None,  # noqa: A002 (same name as subprocess.run's)
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside, via nsenter into the namespaces of the container's PID 1.

        The environment is clean (``env -i``): PATH with /snap/bin, HOME=/root,
        LANG=C.UTF-8, plus ``env``. The process is not in the container's cgroup.

        Raises:
            ContainerCommandError: ``check`` and a non-zero exit (output in the message).
            subprocess.TimeoutExpired: after ``timeout`` seconds.
        """
        return self._require().exec(cmd, check=check, timeout=timeout, env=env, input=input)

    def host_path(self, path: str) -> pathlib.Path:
        """Host path of an absolute path inside (root filesystem or the share).

        Raises:
            ValueError: for paths on filesystems that exist only inside (/run, /tmp, ...).
        """
        if not path.startswith('/'):
            raise ValueError(f'not absolute: {path}')
        share = _rootfs.SHARE_INSIDE
        if path == share or path.startswith(share + '/'):
            return self.share_dir / path[len(share) :].lstrip('/')
        if re.match(r'^/(run|tmp|proc|sys|dev)(/|$)', path):
            raise ValueError(f'{path} is not on the container root filesystem')
        return self.rootfs / path.lstrip('/')

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside (through the host side of the tree)."""
        target = self.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def install_python_packages(self, wheels_dir: pathlib.Path) -> None:
        """Create /opt/venv inside and install every wheel of ``wheels_dir`` from the share.

        Offline: ``pip install --no-index --find-links``. Wheels outside the share are
        copied into ``share/wheels`` first.
        """
        self._require()
        dest = self.share_dir / 'wheels'
        if wheels_dir.resolve() != dest.resolve():
            dest.mkdir(exist_ok=True)
            for wheel in wheels_dir.glob('*.whl'):
                shutil.copy2(wheel, dest / wheel.name)
        wheels = sorted(dest.glob('*.whl'))
        if not wheels:
            raise ContainerError(f'no wheels in {wheels_dir}')
        inside = f'{_rootfs.SHARE_INSIDE}/wheels'
        started = time.monotonic()
        self.exec(['python3', '-m', 'venv', '/opt/venv'], timeout=300)
        self.exec(
            [
                '/opt/venv/bin/pip',
                'install',
                '--quiet',
                '--no-index',
                '--find-links',
                inside,
                *(f'{inside}/{w.name}' for w in wheels),
            ],
            timeout=600,
            env={'PIP_DISABLE_PIP_VERSION_CHECK': '1'},
        )
        self.timings['python_packages'] = time.monotonic() - started

    def run_python(
        self,
        code: str,
        *,
        check: bool = True,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a snippet with /opt/venv/bin/python inside (see install_python_packages)."""
        return self.exec(
            ['/opt/venv/bin/python', '-c', code], check=check, timeout=timeout, env=env
        )

    def build_test_snap(
        self, revision_label: str, name: str = PROBE_SNAP, *, payload_mib: int = 0
    ) -> str:
        """Pack the ``cu-probe`` test snap; return its path inside the container.

        A strict snap on the ``bare`` base made of busybox-static: daemons ``web``
        (busybox httpd on 127.0.0.1:8080 serving the label) and ``worker`` (a sh
        loop writing ``$SNAP_DATA/worker.heartbeat``), the plain app ``cu-probe``
        (busybox), a ``configure`` hook and a ``post-refresh`` hook that exits 1 while
        ``$SNAP_COMMON/fail-post-refresh`` exists (so snapd undoes the refresh). The
        label is the snap's version. Each `snap install --dangerous` of a build gives
        the next local revision (x1, x2, ...). The file is kept in the share.

        The ``cu-probe`` app also plugs ``network-observe``, which snapd does not
        connect by itself: the tests connect and disconnect it.

        With another ``name``, the same snap under that name without the ``web``
        daemon (whose port the probe holds): a second snap to sideload.

        ``payload_mib`` adds that many MiB of random bytes (which squashfs cannot
        compress) as ``data/payload.bin``: a snap as large as a real workload's.
        """
        if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9.+~-]{0,31}', revision_label):
            raise ValueError(f'not a usable snap version: {revision_label!r}')
        self._require()
        src = self.share_dir / 'probe-src' / f'{name}-{revision_label}'
        if src.exists():
            shutil.rmtree(src)
        for path, text, mode in _probe_files(revision_label, name):
            target = src / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(mode)
        shutil.copy2(self.rootfs / 'usr/bin/busybox', src / 'bin/busybox')
        for applet in ('sh', 'sleep', 'date', 'cat'):
            (src / 'bin' / applet).symlink_to('busybox')
        if payload_mib:
            (src / 'data').mkdir()
            with (src / 'data' / 'payload.bin').open('wb') as payload:
                for _ in range(payload_mib):
                    payload.write(os.urandom(1024 * 1024))
        (self.share_dir / 'snaps').mkdir(exist_ok=True)
        filename = f'{name}_{revision_label}.snap'
        share = _rootfs.SHARE_INSIDE
        self.exec(
            _rootfs.squashfs_command(
                f'{share}/probe-src/{name}-{revision_label}', f'{share}/snaps/{filename}'
            ),
            timeout=120,
        )
        return f'{share}/snaps/{filename}'


def _probe_files(label: str, name: str = PROBE_SNAP) -> list[tuple[str, str, int]]:
    """Files of the cu-probe snap (path in the snap, text, mode); busybox is added apart."""
    shebang = f'#!/snap/{name}/current/bin/busybox sh\n'
    web = """\
  web:
    command: bin/busybox httpd -f -p 127.0.0.1:8080 -h $SNAP/www
    daemon: simple
    plugs: [network-bind]
"""
    snap_yaml = f"""\
name: {name}
version: '{label}'
summary: charm-upgrade integration probe
description: Busybox daemons, a plain app and refresh hooks for integration tests.
base: bare
confinement: strict
grade: devel
apps:
{web if name == PROBE_SNAP else ''}\
  worker:
    command: bin/sh $SNAP/bin/worker.sh
    daemon: simple
  {name}:
    command: bin/busybox
    plugs: [network-observe]
"""
    worker = """\
# cu-probe worker: proves it runs by rewriting a heartbeat file every second.
while true; do
    echo "$SNAP_REVISION $(date +%s)" > "$SNAP_DATA/worker.heartbeat"
    sleep 1
done
"""
    post_refresh = (
        shebang
        + """\
if [ -e "$SNAP_COMMON/fail-post-refresh" ]; then
    echo "cu-probe: $SNAP_COMMON/fail-post-refresh exists, failing post-refresh" >&2
    exit 1
fi
echo "$SNAP_REVISION" > "$SNAP_DATA/post-refresh.done"
"""
    )
    configure = shebang + 'exit 0\n'
    return [
        ('meta/snap.yaml', snap_yaml, 0o644),
        ('meta/hooks/post-refresh', post_refresh, 0o755),
        ('meta/hooks/configure', configure, 0o755),
        ('bin/worker.sh', worker, 0o644),
        ('www/index.html', f'{label}\n', 0o644),
    ]


# --- the cached tree --------------------------------------------------------------------------


def _copy_tree(source: pathlib.Path, dest: pathlib.Path) -> None:
    result = _run_host(['cp', '-a', '--reflink=auto', str(source), str(dest)])
    if result.returncode != 0:
        raise ContainerError(f'cp -a {source} {dest} failed: {result.stderr[-2000:]}')


def build_rootfs(
    tree: pathlib.Path, distro: _rootfs.Distro, mirror: str, keyring: str | None
) -> dict[str, float]:
    """Build the tree into a temporary directory, seed it, then rename it to ``tree``.

    The caller holds the cache's exclusive lock. The rename is atomic, so an
    interrupted build never leaves a partial tree under the final name; its
    ``.build-*`` directory is removed by the next build. Returns timings.
    """
    cache = tree.parent
    for stale in cache.glob('.build-*'):  # from interrupted builds; we hold the lock
        logger.warning('removing the interrupted build %s', stale)
        _remove_tree(stale)
    tag = f'{os.getpid()}-{secrets.token_hex(3)}'
    build = cache / f'.build-{tree.name}-{tag}'
    root = build / 'rootfs'
    share = build / 'share'
    timings: dict[str, float] = {}
    nspawn: _Nspawn | None = None
    begin = time.monotonic()
    try:
        share.mkdir(parents=True)
        logger.info('building %s from %s', tree, mirror)
        _rootfs.debootstrap(root, distro, mirror, keyring)
        timings['debootstrap'] = time.monotonic() - begin
        _rootfs.configure(root)
        started = time.monotonic()
        nspawn = _Nspawn(root, share, f'cu-it-build-{tag}', build / 'console.log')
        timings['build_boot'] = nspawn.boot()
        _rootfs.seed(nspawn, share, root)
        problems = nspawn.stop()
        nspawn = None
        if problems:
            raise ContainerError(f'first boot of the new tree did not stop cleanly: {problems}')
        timings['seed'] = time.monotonic() - started
        (root / 'etc/charm-upgrade-it-rootfs.json').write_text(
            json.dumps({'key': tree.name, 'mirror': mirror, 'built': time.time(), **timings})
        )
        os.rename(root, tree)
    finally:
        if nspawn is not None:
            nspawn.stop()
        _remove_tree(build)
    timings['rootfs_build'] = time.monotonic() - begin
    _prune_caches(cache, keep=tree)
    return timings


def _prune_caches(cache: pathlib.Path, keep: pathlib.Path) -> None:
    """Keep the newest KEEP_CACHES trees of each distribution (by last use).

    Trees are named ``rootfs-<suite>-<key>``; a name without a known suite is
    an older layout and counts as its own group. The caller holds the lock.
    """
    group = _tree_group(keep.name)
    trees = [
        p
        for p in cache.glob('rootfs-*')
        if p.is_dir() and p != keep and _tree_group(p.name) == group
    ]

    def last_use(path: pathlib.Path) -> float:
        stamp = path.parent / f'{path.name}.used'
        return stamp.stat().st_mtime if stamp.exists() else path.stat().st_mtime

    for old in sorted(trees, key=last_use, reverse=True)[KEEP_CACHES - 1 :]:
        logger.info('pruning the old tree %s', old)
        _remove_tree(old)
        (cache / f'{old.name}.used').unlink(missing_ok=True)


def _tree_group(name: str) -> str:
    suite = name.split('-')[1] if name.count('-') >= 2 else ''
    return suite if suite in _rootfs.DISTROS else ''


def _reap_stale_sessions(base: pathlib.Path) -> None:
    """Remove session directories whose owner died without stopping (e.g. SIGKILL)."""
    if not base.is_dir():
        return
    for session in base.iterdir():
        meta = session / 'session.json'
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(int(info.get('owner', 0))):
            continue
        name = str(info.get('machine', ''))
        if any(name in _cmdline(pid) for pid in _nspawn_pids()):
            logger.warning('%s: owner gone but its systemd-nspawn still runs; leaving it', session)
            continue
        logger.warning('removing the stale session %s', session)
        for cgroup in info.get('cgroups', []):
            for sub, _, _ in sorted(os.walk(cgroup), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(sub)
        _remove_tree(session)


def _nspawn_pids() -> list[int]:
    pids: list[int] = []
    for entry in pathlib.Path('/proc').iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / 'comm').read_text().strip() == 'systemd-nspawn':
                    pids.append(int(entry.name))
    return pids


def _cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f'/proc/{pid}/cmdline').read_text().replace('\0', ' ')
    except OSError:
        return ''


# --- wheels for the container's python --------------------------------------------------------


def _platform_tags() -> list[str]:
    arch = platform.machine()
    # pip does not expand --platform to older manylinux tags; bookworm has glibc 2.36.
    tags = [f'manylinux_2_{minor}_{arch}' for minor in range(36, 4, -1)]
    return [*tags, f'manylinux2014_{arch}', f'manylinux2010_{arch}', f'manylinux1_{arch}']


def download_wheels(
    dest: pathlib.Path, requirements: Sequence[str], *, python_version: str = '3.11'
) -> None:
    """``pip download`` binary wheels for the container's Python into ``dest``.

    Raises:
        ContainerError: pip failed (output in the message).
    """
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, '-m', 'pip', 'download', '--quiet', '--only-binary=:all:']
    cmd += ['--python-version', python_version, '--implementation', 'cp', '-d', str(dest)]
    for tag in _platform_tags():
        cmd += ['--platform', tag]
    result = _run_host([*cmd, *requirements])
    if result.returncode != 0:
        raise ContainerError(f'pip download {list(requirements)} failed:\n{result.stderr[-3000:]}')


def build_project_wheel(dest: pathlib.Path, project: pathlib.Path) -> pathlib.Path:
    """``pip wheel --no-deps`` the project into ``dest``; return the wheel.

    Raises:
        ContainerError: the build failed (e.g. the library is mid-edit).
    """
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob('*.whl'))
    result = _run_host(
        [
            sys.executable,
            '-m',
            'pip',
            'wheel',
            '--quiet',
            '--no-deps',
            '-w',
            str(dest),
            str(project),
        ]
    )
    built = sorted(set(dest.glob('*.whl')) - before)
    if result.returncode != 0 or not built:
        raise ContainerError(f'pip wheel {project} failed:\n{result.stderr[-3000:]}')
    return built[0]
