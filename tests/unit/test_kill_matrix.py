# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""SIGKILL at every step of series prepare, series complete and a migration with a backup.

Each scenario runs in a child process (the hook), against the test kit's
FakeSystemd and FakeSnapd. The child counts its *steps*: every call that
changes something (a file written, renamed, removed or created, a
``systemctl`` command, a snapd start or stop) and the commit of its flags at
the end of the hook. A first run counts them; then, for each step ``k``, the
scenario starts again from the same state, a child is killed with SIGKILL
just before its step ``k`` (or just after a ``systemctl`` command or a snapd
request, whose effect is then done and unrecorded), and a second child (the
retried hook) runs to the end. Every kill point must converge on the same end
state as a run that was never killed: the services as they were before, each
migration applied exactly once to the original data, nothing held, no backup,
staging or temporary file left behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from charm_upgrade import Migration, Migrations
from charm_upgrade._migrations import SERIES
from charm_upgrade._systemd import HOLD_DROPIN_NAME
from charm_upgrade.testing import FakeSnapd

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

    from charm_upgrade.testing._fake_systemd import FakeSystemd

pytestmark = pytest.mark.matrix

CHILD = r'''
import json, os, pathlib, signal, subprocess, sys

WORK = pathlib.Path(sys.argv[1])
PHASE = sys.argv[2]
KILL_AT = int(sys.argv[3])  # 0: count the steps
DATA = WORK / 'data'
steps = [0]


def step(what):
    steps[0] += 1
    if steps[0] == KILL_AT:
        (WORK / 'killed-at').write_text(what)
        os.kill(os.getpid(), signal.SIGKILL)


def wrap(owner, name, *, after=False):
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        step(f'{name} {args[0] if args else ""}'[:200])
        result = real(*args, **kwargs)
        if after:
            step(f'after {name} {args[0] if args else ""}'[:200])
        return result

    setattr(owner, name, wrapper)


for name in ('write', 'replace', 'rename', 'unlink', 'rmdir', 'mkdir', 'symlink', 'link',
             'sendfile'):
    wrap(os, name)
# What a SIGKILL leaves is the page cache: fsync matters for a power cut, not
# here, and skipping it keeps the matrix quick.
os.fsync = lambda fd: None
wrap(subprocess, 'run', after=True)  # systemctl

from charm_upgrade import (
    MigrationError, Migration, Migrations, SeriesUpgradeFlow, SnapServices, SystemdServices,
)
from charm_upgrade.snapd import Snapd

wrap(Snapd, 'stop', after=True)
wrap(Snapd, 'start', after=True)


class Flags:
    """The hook's flags, with values: committed only when the hook ends well, as Juju does."""

    def __init__(self):
        self.path = WORK / 'flags.json'
        self.flags = json.loads(self.path.read_text())

    def is_set(self, flag):
        return flag in self.flags

    def set(self, flag, value=None):
        self.flags[flag] = value

    def clear(self, flag):
        self.flags.pop(flag, None)

    def value(self, flag):
        return self.flags.get(flag)

    def commit(self):
        tmp = self.path.with_suffix('.tmp')
        tmp.write_text(json.dumps(self.flags, sort_keys=True))
        os.replace(tmp, self.path)


def rewrite_config(ctx):
    # Not idempotent: it appends. The backup makes a retry start from the original.
    conf = DATA / 'app.conf'
    conf.write_text(conf.read_text() + 'migrated\n')
    step('inside the migration')
    (DATA / 'db' / 'format').write_text('2\n')
    (DATA / 'db' / 'shards' / 'a').unlink()
    (DATA / 'db' / 'shards' / 'b').write_text('new shard')
    if PHASE == 'migrate':
        attempts = WORK / 'attempts'
        seen = attempts.read_text() if attempts.exists() else ''
        attempts.write_text(seen + 'x')
        if not seen:
            raise RuntimeError('the first attempt fails')


def append_line(ctx):
    # Resumable: it checks the started mark's flag instead of a backup.
    log = DATA / 'log'
    lines = log.read_text().splitlines() if log.exists() else []
    if ctx.interrupted and lines and lines[-1] == 'v2':
        return
    log.write_text('\n'.join(lines + ['v2']) + '\n')
    step('after the append')


MIGRATIONS = Migrations([
    Migration('0-base', 'installed', kind='series', up=lambda ctx: None),
    Migration('1-config', 'rewrite the config', kind='series', up=rewrite_config,
              backup=[DATA / 'app.conf', DATA / 'db']),
    Migration('2-log', 'append v2', kind='series', up=append_line),
])

if PHASE == 'migrate':
    try:
        MIGRATIONS.run('series', old='ubuntu@22.04', new='ubuntu@24.04')
    except MigrationError:
        MIGRATIONS.run('series', old='ubuntu@22.04', new='ubuntu@24.04')  # the next hook
else:
    flags = Flags()
    flow = SeriesUpgradeFlow(
        [SystemdServices(['web', 'cron']), SnapServices('demo', snapd=Snapd(poll_interval=0.002))],
        flags=flags,
        migrations=MIGRATIONS,
    )
    if PHASE == 'prepare':
        flags.set('upgrade.series.in-progress')
        flow.run(target_base='ubuntu@24.04')
    else:
        flags.clear('upgrade.series.in-progress')
        flow.run()
    flags.commit()
if KILL_AT == 0:
    (WORK / 'steps').write_text(str(steps[0]))
'''

ORIGINAL_DATA = {
    'app.conf': 'path=/var/old\n',
    'db/format': '1\n',
    'db/shards/a': 'old shard',
}
MIGRATED_DATA = {
    'app.conf': 'path=/var/old\nmigrated\n',
    'db/format': '2\n',
    'db/shards/b': 'new shard',
    'log': 'v2\n',
}
BEFORE_UNITS = {
    'web.service': {'enabled': 'enabled', 'active': 'active'},
    'cron.service': {'enabled': 'disabled', 'active': 'inactive'},
}
BEFORE_SNAP = {'web': (True, True), 'worker': (False, False)}


def files(root: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob('*'))
        if p.is_file() or p.is_symlink()
    }


@dataclasses.dataclass
class Machine:
    """The unit's world: the state directory, the data, the flags, systemd, snapd."""

    work: pathlib.Path
    state_dir: pathlib.Path
    systemd: FakeSystemd
    snapd: FakeSnapd

    @property
    def data(self) -> pathlib.Path:
        return self.work / 'data'

    def run(self, phase: str, kill_at: int = 0) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, CHARM_UPGRADE_OS_RELEASE=str(self.work / 'os-release'))
        return subprocess.run(
            [sys.executable, str(self.work / 'child.py'), str(self.work), phase, str(kill_at)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )

    def steps(self, phase: str) -> int:
        counted = self.run(phase)
        assert counted.returncode == 0, counted.stderr
        return int((self.work / 'steps').read_text())

    def snapshot(self, name: str) -> None:
        self.snapd.wait_idle()
        target = self.work.parent / f'snapshot-{name}'
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for source in (self.state_dir, self.data, self.systemd.config_dir):
            if source.exists():
                shutil.copytree(source, target / source.name, symlinks=True)
        for path in (self.work / 'flags.json', self.systemd.directory / 'state.json'):
            shutil.copy2(path, target / path.name)
        (target / 'snapd.json').write_text(json.dumps(self.snapd.service_state('demo')))

    def restore(self, name: str) -> None:
        self.snapd.wait_idle()
        source = self.work.parent / f'snapshot-{name}'
        for target in (self.state_dir, self.data, self.systemd.config_dir):
            shutil.rmtree(target, ignore_errors=True)
            if (source / target.name).exists():
                shutil.copytree(source / target.name, target, symlinks=True)
        shutil.copy2(source / 'flags.json', self.work / 'flags.json')
        shutil.copy2(source / 'state.json', self.systemd.directory / 'state.json')
        for app, (enabled, active) in json.loads((source / 'snapd.json').read_text()).items():
            self.snapd.set_service_state('demo', app, enabled=enabled, active=active)
        for leftover in ('killed-at', 'attempts'):
            (self.work / leftover).unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """Backups, staging copies and temporary files nobody will clean up."""
        records = {'series-upgrade.json', 'migrations.json', 'journal.jsonl', 'lock'}
        backups = self.state_dir / 'migration-backups'
        found = [
            p.name for p in self.state_dir.iterdir() if p.name not in {*records, backups.name}
        ]
        found += [p.name for p in backups.iterdir()] if backups.exists() else []
        found += [
            str(p)
            for drop_ins in self.systemd.config_dir.glob('*.d')
            for p in drop_ins.iterdir()
            if p.name != HOLD_DROPIN_NAME
        ]
        return found  # and the data is compared whole, staging copies included


@pytest.fixture
def machine(
    tmp_path: pathlib.Path, state_dir: pathlib.Path, fake_systemd: FakeSystemd
) -> Iterator[Machine]:
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'child.py').write_text(CHILD)
    (work / 'os-release').write_text('ID=ubuntu\nVERSION_ID="22.04"\n')
    (work / 'flags.json').write_text(json.dumps({'charm.application.started': None}))
    for name, text in ORIGINAL_DATA.items():
        (work / 'data' / name).parent.mkdir(parents=True, exist_ok=True)
        (work / 'data' / name).write_text(text)
    for unit, state in BEFORE_UNITS.items():
        fake_systemd.add_unit(unit, enabled=state['enabled'], active=state['active'] == 'active')
    # The install hook recorded the first migration; the two others came with a later revision.
    Migrations(
        [Migration('0-base', 'installed', kind=SERIES, up=lambda ctx: None)]
    ).mark_installed(base='ubuntu@22.04')
    with FakeSnapd(change_duration=0.001) as snapd:
        snapd.attach(fake_systemd)  # the snap's services are the machine's units
        snapd.add_snap('demo', services=['web', 'worker'])
        snapd.set_service_state('demo', 'worker', enabled=False, active=False)
        yield Machine(work, state_dir, fake_systemd, snapd)


def assert_taken_down(machine: Machine) -> None:
    record = json.loads((machine.state_dir / 'series-upgrade.json').read_text())
    units = record['services']['systemd:web.service,cron.service']['units']
    assert {n: (u['is_enabled'], u['running']) for n, u in units.items()} == {
        'web.service': ('enabled', True),
        'cron.service': ('disabled', False),
    }, 'the before-state is the state before the upgrade'
    snap = record['services']['snap:demo']['services']
    assert {n: (s['enabled'], s['active']) for n, s in snap.items()} == {
        'demo.web': (True, True),
        'demo.worker': (False, False),
    }
    assert {u: machine.systemd.unit(u)['active'] for u in BEFORE_UNITS} == {
        'web.service': 'inactive',
        'cron.service': 'inactive',
    }
    assert sorted(machine.systemd.held()) == [
        'cron.service',
        'snap.demo.web.service',
        'snap.demo.worker.service',
        'web.service',
    ]
    assert machine.snapd.service_state('demo') == {'web': (False, False), 'worker': (False, False)}
    assert machine.leftovers() == []


def assert_brought_back_and_migrated_once(machine: Machine) -> None:
    assert {u: machine.systemd.unit(u) for u in BEFORE_UNITS} == BEFORE_UNITS
    assert machine.systemd.held() == []
    assert machine.snapd.service_state('demo') == BEFORE_SNAP
    assert_migrated_once(machine)
    record = json.loads((machine.state_dir / 'series-upgrade.json').read_text())
    assert (record['phase'], record['migrated']) == ('completed', True)
    assert 'charm.application.disabled' not in json.loads(
        (machine.work / 'flags.json').read_text()
    )


def assert_migrated_once(machine: Machine) -> None:
    assert files(machine.data) == MIGRATED_DATA
    record = json.loads((machine.state_dir / 'migrations.json').read_text())
    assert list(record['applied']) == ['0-base', '1-config', '2-log']
    assert (record['started'], record['failed']) == (None, None)
    assert machine.leftovers() == []


def kill_at_every_step(
    machine: Machine, phase: str, start: str, then: list[str], check: Any
) -> int:
    """Kill ``phase`` at each of its steps from snapshot ``start``; retry; run ``then``; check."""
    machine.restore(start)
    count = machine.steps(phase)
    for phase_after in then:
        assert machine.run(phase_after).returncode == 0
    check(machine)
    failures: list[str] = []
    for kill_at in range(1, count + 1):
        machine.restore(start)
        killed = machine.run(phase, kill_at)
        where = (machine.work / 'killed-at').read_text() if killed.returncode < 0 else '?'
        try:
            assert killed.returncode == -signal.SIGKILL, killed.stderr
            for retry in [phase, *then]:
                result = machine.run(retry)
                assert result.returncode == 0, result.stderr[-2000:]
            check(machine)
        except AssertionError as e:
            failures.append(f'killed at step {kill_at} ({where}): {e}')
    assert failures == [], '\n'.join(failures)
    return count


def test_a_kill_at_any_step_of_prepare_converges(machine: Machine):
    machine.snapshot('installed')

    count = kill_at_every_step(
        machine,
        'prepare',
        'installed',
        then=[],
        check=assert_taken_down,
    )

    assert count > 20  # records, holds, systemctl, snapd, journal, flags: every one
    # And the upgrade completes from there, with nothing lost.
    (machine.work / 'os-release').write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    assert machine.run('complete').returncode == 0
    assert_brought_back_and_migrated_once(machine)


def test_a_kill_at_any_step_of_complete_converges(machine: Machine):
    assert machine.run('prepare').returncode == 0
    (machine.work / 'os-release').write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    machine.snapshot('prepared')

    count = kill_at_every_step(
        machine, 'complete', 'prepared', then=[], check=assert_brought_back_and_migrated_once
    )

    assert count > 40


def test_a_kill_at_any_step_of_a_failing_migration_with_a_backup_converges(machine: Machine):
    # The first attempt fails after its changes: the backup is put back, and
    # the next run (the next hook) applies it to the original data.
    machine.snapshot('installed')

    count = kill_at_every_step(
        machine, 'migrate', 'installed', then=[], check=assert_migrated_once
    )

    assert count > 40
