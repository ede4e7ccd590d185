# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the integration tier: one real systemd + snapd container per distribution.

The session's tests run once per distribution (Debian bookworm with snapd 2.57
and trixie with snapd 2.68; ``$CHARM_UPGRADE_IT_DISTROS`` picks some, such as
``trixie``): the ``container`` fixture is parametrised by it, so each test id
ends in ``[bookworm]`` or ``[trixie]`` and pytest runs all of one
distribution's tests before it boots the next container.

Every test in this directory gets the ``integration`` marker. When the container
cannot be built or booted, the tests fail (error at setup) with the reason; they
are never skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import _rootfs
import _snaps
import pytest
from _container import Container, ContainerError, build_project_wheel, download_wheels
from _refresh_driver import refresh_versions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
# What runs inside with /opt/venv/bin/python, besides the repository's own wheel.
INSIDE_REQUIREMENTS = ('pytest>=8', 'ops>=2.17,<4', 'charm-refresh~=3.1.1')
TIMINGS: dict[str, float] = {}
NOTES: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``integration``."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the harness timings; also write them to $CHARM_UPGRADE_IT_TIMINGS if set."""
    if not TIMINGS and not NOTES:
        return
    terminalreporter.section('charm-upgrade integration harness')
    for key, value in TIMINGS.items():
        terminalreporter.write_line(f'{key:>38}: {value:7.2f} s')
    for note in NOTES:
        terminalreporter.write_line(f'note: {note}')
    target = os.environ.get('CHARM_UPGRADE_IT_TIMINGS')
    if target:
        pathlib.Path(target).write_text(json.dumps({'timings': TIMINGS, 'notes': NOTES}))


def _sigterm_to_interrupt() -> None:
    """Turn SIGTERM into KeyboardInterrupt so fixture teardown stops the container."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f'signal {signum}')

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)


def distros() -> list[str]:
    """The distributions to run on: ``$CHARM_UPGRADE_IT_DISTROS`` (comma-separated) or all."""
    chosen = os.environ.get('CHARM_UPGRADE_IT_DISTROS', '')
    names = [n.strip() for n in chosen.split(',') if n.strip()] or list(_rootfs.DEFAULT_DISTROS)
    unknown = sorted(set(names) - set(_rootfs.DISTROS))
    if unknown:
        raise pytest.UsageError(
            f'CHARM_UPGRADE_IT_DISTROS names {unknown}: known are {sorted(_rootfs.DISTROS)}'
        )
    return names


@pytest.fixture(scope='session', params=distros())
def container(request: pytest.FixtureRequest) -> Iterator[Container]:
    """The booted container of one distribution, shared by its tests and always stopped."""
    _sigterm_to_interrupt()
    distro: str = request.param
    box = Container(distro=distro)
    began = time.monotonic()
    try:
        box.start()
    except ContainerError as error:
        _add_timings(distro, box.timings)
        pytest.fail(f'cannot run the {distro} integration container: {error}', pytrace=False)
    try:
        yield box
    finally:
        box.stop()
        _add_timings(distro, box.timings)
        TIMINGS[f'{distro}: tier'] = time.monotonic() - began


def _add_timings(distro: str, timings: dict[str, float]) -> None:
    TIMINGS.update({f'{distro}: {key}': value for key, value in timings.items()})


@dataclasses.dataclass(frozen=True)
class InsidePython:
    """/opt/venv inside the container; ``project_error`` says why the repo wheel is absent."""

    project_wheel: str | None
    project_error: str | None


@pytest.fixture(scope='session')
def container_python(container: Container) -> InsidePython:
    """/opt/venv inside with pytest, ops, charm-refresh and the repo's wheel.

    Building the repository's wheel is allowed to fail (the library may be mid-edit);
    the failure is recorded, the third-party wheels are installed anyway.
    """
    started = time.monotonic()
    wheels = container.share_dir / 'wheels'
    project_wheel: pathlib.Path | None = None
    project_error: str | None = None
    try:
        project_wheel = build_project_wheel(wheels, REPO)
    except ContainerError as error:
        project_error = str(error)
        NOTES.append(f'the repository wheel did not build: {error}')
    requirements = [*INSIDE_REQUIREMENTS]
    if project_wheel is not None:
        requirements.append(str(project_wheel))  # its dependencies, as pyproject says now
    try:
        download_wheels(wheels, requirements, python_version=container.distro.python)
    except ContainerError as error:
        pytest.fail(str(error), pytrace=False)
    TIMINGS[f'{container.distro.suite}: wheels_host'] = time.monotonic() - started
    container.install_python_packages(wheels)
    return InsidePython(project_wheel.name if project_wheel else None, project_error)


@pytest.fixture
def snapd_socket(container: Container, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the library (CHARM_UPGRADE_SNAPD_SOCKET) and _snaps at the container's snapd."""
    monkeypatch.setenv('CHARM_UPGRADE_SNAPD_SOCKET', container.snapd_socket)
    return container.snapd_socket


@dataclasses.dataclass(frozen=True)
class Probe:
    """The cu-probe builds: x1 is version '1.0', x2 is version '2.0'."""

    first: str
    second: str
    revisions: tuple[str, str]

    def version(self, revision: str) -> str:
        """The version (and web page) of a revision."""
        return {'x1': '1.0', 'x2': '2.0'}[revision]


@pytest.fixture(scope='session')
def probe(container: Container) -> Probe:
    """cu-probe installed twice: local revisions x1 ('1.0') then x2 ('2.0'), both on disk."""
    first = container.build_test_snap('1.0')
    second = container.build_test_snap('2.0')
    container.exec(['snap', 'install', '--dangerous', first])
    after_first = _snaps.revision_inside(container)
    container.exec(['snap', 'install', '--dangerous', second])
    return Probe(first, second, (after_first, _snaps.revision_inside(container)))


@dataclasses.dataclass
class RefreshRun:
    """A ``refresh_snap`` run in its own process (see _refresh_driver.py)."""

    process: subprocess.Popen[str]
    charm_dir: pathlib.Path

    def result(self, timeout: float = 120) -> dict[str, Any]:
        """Wait for the process; its JSON outcome (``killed`` if it died by a signal)."""
        out, err = self.process.communicate(timeout=timeout)
        if self.process.returncode < 0:
            return {'killed': -self.process.returncode}
        assert self.process.returncode == 0, f'driver failed:\n{out}\n{err}'
        return json.loads(out.splitlines()[-1])

    def kill9(self) -> None:
        """SIGKILL the process, by its PID."""
        self.process.kill()
        self.process.wait(30)

    @property
    def records(self) -> list[dict[str, Any]]:
        """What RecordingRefresh wrote: one line per update_snap_revision() or flag set."""
        path = self.charm_dir / 'records.jsonl'
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    @property
    def journal(self) -> list[dict[str, Any]]:
        """The library's journal records, oldest first."""
        path = self.charm_dir / 'state' / 'journal.jsonl'
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


PROBE_UNITS = [f'snap.{_snaps.PROBE}.web.service', f'snap.{_snaps.PROBE}.worker.service']
"""The service units of the probe snap."""


class Machine:
    """The host's way into the container's systemd, for drivers that run on the host.

    The library's ``systemctl`` is a shim that runs the container's own systemctl in the
    container's namespaces, and its drop-ins go to the container's ``/etc/systemd/system``.
    """

    def __init__(self, container: Container, directory: pathlib.Path) -> None:
        self.container = container
        self.bin = directory / 'bin'
        self.bin.mkdir(parents=True)
        self.pid_file = directory / 'leader.pid'
        self.pid_file.write_text(str(container.leader_pid))
        shim = self.bin / 'systemctl'
        # The container's PID 1 changes at each boot: read it at each call.
        shim.write_text(
            '#!/bin/sh\n'
            f'exec nsenter --target="$(cat {self.pid_file})" --mount --uts --ipc --net --pid '
            '--cgroup --root --wd env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl "$@"\n'
        )
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)

    def rebooted(self) -> None:
        self.container.reboot()
        self.pid_file.write_text(str(self.container.leader_pid))

    @property
    def env(self) -> dict[str, str]:
        return {
            'PATH': f'{self.bin}{os.pathsep}{os.environ["PATH"]}',
            'CHARM_UPGRADE_SYSTEMD_DIR': str(self.container.host_path('/etc/systemd/system')),
            'CU_IT_UNIT_STATES': ' '.join(PROBE_UNITS),
        }

    def held(self) -> list[str]:
        """The units that have the library's hold drop-in now."""
        root = self.container.host_path('/etc/systemd/system')
        return [
            unit for unit in PROBE_UNITS if any((root / f'{unit}.d').glob('*charm-upgrade-hold*'))
        ]

    def active(self) -> dict[str, str]:
        out = self.container.exec(['systemctl', 'show', '-p', 'Id,ActiveState', *PROBE_UNITS])
        states: dict[str, str] = {}
        for block in out.stdout.strip().split('\n\n'):
            props = dict(line.split('=', 1) for line in block.splitlines())
            states[props['Id']] = props['ActiveState']
        return states


@pytest.fixture
def machine(container: Container, tmp_path: pathlib.Path) -> Iterator[Machine]:
    yield Machine(container, tmp_path / 'machine')
    # A test that failed half-way must not leave the probe held for the next one.
    root = container.host_path('/etc/systemd/system')
    for unit in PROBE_UNITS:
        for left in (root / f'{unit}.d').glob('*charm-upgrade-*'):  # drop-in, release flag
            left.unlink()
    container.exec(['systemctl', 'daemon-reload'])


class RefreshRunner:
    """Starts ``refresh_snap`` processes that share one charm directory (one unit)."""

    def __init__(self, charm_dir: pathlib.Path, socket: str, machine: Machine) -> None:
        self.charm_dir = charm_dir
        self.socket = socket
        self.machine = machine
        self.processes: list[subprocess.Popen[str]] = []
        charm_dir.mkdir(parents=True, exist_ok=True)
        (charm_dir / 'refresh_versions.toml').write_text(refresh_versions(_snaps.PROBE))

    def start(
        self, revision: str, *, kill_at_record: bool = False, env: dict[str, str] | None = None
    ) -> RefreshRun:
        """Start one refresh_snap(snap_revision=revision) process, with ``env`` added."""
        env = {
            **os.environ,
            **self.machine.env,
            **(env or {}),
            'CHARM_UPGRADE_SNAPD_SOCKET': self.socket,
            'CHARM_UPGRADE_STATE_DIR': str(self.charm_dir / 'state'),
            'CU_IT_KILL_AT_RECORD': '1' if kill_at_record else '0',
            'PYTHONWARNINGS': 'error',
        }
        cmd = [sys.executable, str(HERE / '_refresh_driver.py'), _snaps.PROBE, revision]
        cmd.append(str(self.charm_dir / 'records.jsonl'))
        process = subprocess.Popen(
            cmd,
            cwd=self.charm_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        return RefreshRun(process, self.charm_dir)

    def kill_all(self) -> None:
        """SIGKILL every driver still running (ours, by PID)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=30)

    def run(
        self, revision: str, *, env: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], RefreshRun]:
        """Run one process to its end."""
        run = self.start(revision, env=env)
        return run.result(), run


@pytest.fixture
def refresh_runner(
    tmp_path: pathlib.Path, snapd_socket: str, container: Container, machine: Machine
) -> Iterator[RefreshRunner]:
    """A charm directory with refresh_versions.toml; every driver is killed at the end."""
    runner = RefreshRunner(tmp_path / 'charm', snapd_socket, machine)
    try:
        yield runner
    finally:
        runner.kill_all()


@pytest.fixture
def record_timing(container: Container) -> Callable[[str, float], None]:
    """Add a measured figure, named with the distribution, to the terminal summary."""

    def record(key: str, seconds: float) -> None:
        TIMINGS[f'{container.distro.suite}: {key}'] = seconds

    return record


@pytest.fixture
def record_note(container: Container) -> Callable[[str], None]:
    """Add a line, naming the distribution, to the terminal summary."""

    def note(text: str) -> None:
        NOTES.append(f'{container.distro.suite}: {text}')

    return note


@pytest.fixture
def run_step(
    container: Container, inside_driver: str, request: pytest.FixtureRequest
) -> Callable[[str, list[dict[str, Any]]], dict[str, Any]]:
    """Run a series step (prepare, complete) inside, in a new process; return what it printed.

    Each test has its own state directory, so its record and flags start empty
    (a container per distribution, so no parameter in the name).
    """
    state_dir = f'/var/lib/cu-it-state/{request.node.originalname}'
    container.exec(['rm', '-rf', state_dir])

    def step(name: str, spec: list[dict[str, Any]]) -> dict[str, Any]:
        python = ['/opt/venv/bin/python', '-W', 'error', inside_driver]
        result = container.exec(
            [*python, 'series', name, json.dumps(spec)],
            env={'CHARM_UPGRADE_STATE_DIR': state_dir},
            timeout=300,
        )
        return json.loads(result.stdout.splitlines()[-1])

    return step


@pytest.fixture(scope='session')
def inside_driver(container: Container, container_python: InsidePython) -> str:
    """_inside.py copied into the share; the path of it inside the container.

    The tests that run the library inside need the repository's wheel there:
    they fail, with the build's error, when it did not build.
    """
    if container_python.project_wheel is None:
        pytest.fail(
            f'the repository wheel did not build: {container_python.project_error}',
            pytrace=False,
        )
    shutil.copy2(HERE / '_inside.py', container.share_dir / '_inside.py')
    return f'{container.share_inside}/_inside.py'
