# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A second process waits for the unit's state lock, and never runs the same step."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest
from test_flow import DictFlags

from charm_upgrade import (
    Migration,
    Migrations,
    SeriesUpgradeFlow,
    StateLockTimeout,
    Step,
    SystemdServices,
    _lock,
)
from charm_upgrade._flags import (
    APPLICATION_DISABLED,
    APPLICATION_STARTED,
    UPGRADE_SERIES_IN_PROGRESS,
)
from charm_upgrade._migrations import SERIES
from charm_upgrade.testing._kill import HookKilled, LineCounter, close_what_the_kill_left

if TYPE_CHECKING:
    import pathlib

    from charm_upgrade.testing._fake_systemd import FakeSystemd

# A charm process running one slow, non-idempotent migration with a backup:
# it says when it has started, then waits for the test's go-ahead.
SLOW_CHARM = """
import os, pathlib, sys, time
from charm_upgrade import Migration, MigrationError, Migrations

DATA = pathlib.Path(sys.argv[1])
NAME = sys.argv[2]

def convert(ctx):
    with open(DATA.parent / 'attempts', 'a') as f:
        f.write(NAME + '\\n')
    (DATA.parent / f'started-{NAME}').touch()
    while not (DATA.parent / 'go').exists():
        time.sleep(0.01)
    DATA.write_text(DATA.read_text() + 'converted\\n')
    if NAME == 'failing':
        raise RuntimeError('disk full')

migrations = Migrations([Migration('1', 'convert', kind='series', up=convert, backup=[DATA])])
try:
    print(migrations.run('series', old='ubuntu@22.04', new='ubuntu@24.04'))
except MigrationError as e:
    print('failed:', e)
"""


def start_charm(script: pathlib.Path, data: pathlib.Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), str(data), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def wait_for(path: pathlib.Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f'{path} never appeared'
        time.sleep(0.01)


def test_a_second_process_waits_and_does_not_run_the_migration_again(tmp_path: pathlib.Path):
    script = tmp_path / 'charm.py'
    script.write_text(SLOW_CHARM)
    data = tmp_path / 'data.txt'
    data.write_text('original\n')

    first = start_charm(script, data, 'first')
    wait_for(tmp_path / 'started-first')
    second = start_charm(script, data, 'second')  # an action, a `juju exec`
    time.sleep(0.5)  # long enough for it to run the migration if it were not waiting
    (tmp_path / 'go').touch()
    out_first, err_first = first.communicate(timeout=60)
    out_second, err_second = second.communicate(timeout=60)

    assert first.returncode == 0, err_first
    assert second.returncode == 0, err_second
    assert out_first.strip() == "['1']"
    assert out_second.strip() == '[]'  # it read the record after the first one's run
    assert (tmp_path / 'attempts').read_text() == 'first\n'
    assert data.read_text() == 'original\nconverted\n'


def test_a_failing_second_run_cannot_wipe_the_first_ones_work(tmp_path: pathlib.Path):
    # The failing one's restore would put back the data it backed up while
    # the first one ran, over the first one's recorded work.
    script = tmp_path / 'charm.py'
    script.write_text(SLOW_CHARM)
    data = tmp_path / 'data.txt'
    data.write_text('original\n')

    first = start_charm(script, data, 'first')
    wait_for(tmp_path / 'started-first')
    failing = start_charm(script, data, 'failing')
    time.sleep(0.5)
    (tmp_path / 'go').touch()
    first.communicate(timeout=60)
    out, err = failing.communicate(timeout=60)

    assert failing.returncode == 0, err
    assert out.strip() == '[]'
    assert (tmp_path / 'attempts').read_text() == 'first\n'
    assert data.read_text() == 'original\nconverted\n'


HOLDER = """
import pathlib, sys, time
from charm_upgrade import _lock

with _lock.unit_lock(pathlib.Path(sys.argv[1]), step='series-complete'):
    print('held', flush=True)
    if sys.argv[2] == 'die':
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
"""


def hold_lock(tmp_path: pathlib.Path, state_dir: pathlib.Path, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / 'holder.py'
    script.write_text(HOLDER)
    holder = subprocess.Popen(
        [sys.executable, str(script), str(state_dir), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == 'held\n'
    return holder


def test_the_wait_is_bounded_and_the_error_names_the_holder(
    tmp_path: pathlib.Path, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    ran: list[str] = []
    migrations = Migrations(
        [Migration('1', 'x', kind=SERIES, up=lambda ctx: ran.append(ctx.migration_id))]
    )
    holder = hold_lock(tmp_path, state_dir, 'hold')
    monkeypatch.setattr(_lock, 'DEFAULT_TIMEOUT', 0.3)
    try:
        began = time.monotonic()
        with pytest.raises(StateLockTimeout) as caught:
            migrations.run(SERIES, old='a', new='b')
        waited = time.monotonic() - began
    finally:
        holder.kill()
        holder.communicate()

    assert 0.3 <= waited < 10
    assert ran == []
    error = caught.value
    assert error.path == str(state_dir / 'lock')
    assert error.holder.startswith(f'pid {holder.pid}, series-complete, since ')
    assert f'pid {holder.pid}, series-complete' in str(error)
    assert 'Nothing was changed' in str(error)
    assert not (state_dir / 'migrations.json').exists()


def test_a_holder_killed_by_sigkill_leaves_the_unit_unlocked(
    tmp_path: pathlib.Path, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    holder = hold_lock(tmp_path, state_dir, 'die')
    holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    monkeypatch.setattr(_lock, 'DEFAULT_TIMEOUT', 0.3)

    assert Migrations([Migration('1', 'x', kind=SERIES, up=lambda ctx: None)]).run(
        SERIES, old='a', new='b'
    ) == ['1']


def test_the_lock_is_reentrant_within_a_process_and_exclusive_between_threads(
    state_dir: pathlib.Path,
):
    order: list[str] = []
    inner_entered = threading.Event()

    def other_thread() -> None:
        with _lock.unit_lock(state_dir, step='other'):
            order.append('other')

    with _lock.unit_lock(state_dir, step='outer'):
        with _lock.unit_lock(state_dir, step='inner'):  # the flow, then its migrations
            inner_entered.set()
            thread = threading.Thread(target=other_thread)
            thread.start()
            time.sleep(0.2)
            order.append('inner')
        time.sleep(0.1)
        order.append('outer')
    thread.join(timeout=10)

    assert inner_entered.is_set()
    assert order == ['inner', 'outer', 'other']


def test_a_lock_that_fails_on_entry_leaves_nothing_held_in_the_process(
    state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    def broken(directory: pathlib.Path) -> None:
        raise PermissionError(13, 'Permission denied', str(directory))

    monkeypatch.setattr(_lock._state, 'drop_temporaries', broken)
    with pytest.raises(PermissionError):
        with _lock.unit_lock(state_dir, step='first'):
            pass
    monkeypatch.undo()

    # The flock went with the failed entry: the next step does not wait for itself.
    with _lock.unit_lock(state_dir, step='second', timeout=0):
        pass


def test_forgetting_the_process_locks_frees_a_descriptor_a_simulated_kill_left(
    state_dir: pathlib.Path,
):
    held = _lock.unit_lock(state_dir, step='killed')
    held.__enter__()  # its exit never runs, as in a killed hook

    _lock.forget_process_locks()

    with _lock.unit_lock(state_dir, step='next', timeout=0):
        # The killed block's exit, run late (by the garbage collector), must not close
        # the descriptor of the lock held now, which may have the same number.
        held.__exit__(None, None, None)
        with open(state_dir / _lock.LOCK_NAME, 'rb') as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still ours


def test_a_kill_at_any_line_of_the_lock_leaves_it_free_once_the_process_is_gone(
    state_dir: pathlib.Path,
):
    def locked_step() -> None:
        with _lock.unit_lock(state_dir, step='killed'):
            pass

    with LineCounter() as counting:
        locked_step()
    assert counting.count > 10

    for line in range(1, counting.count + 1):
        try:
            with LineCounter(kill_at=line):
                locked_step()
        except HookKilled as killed:
            close_what_the_kill_left(killed)  # what the end of the process does
        else:
            pytest.fail(f'no kill at line {line}')

        with _lock.unit_lock(state_dir, step=f'after a kill at line {line}', timeout=0):
            pass


def test_a_second_complete_touches_nothing(fake_systemd: FakeSystemd):
    # Two processes both saw the flags call for complete (their flags are
    # their own until the hook ends): the one that got the lock second finds
    # the record completed and does nothing.
    fake_systemd.add_unit('web.service')
    services = SystemdServices(['web'])

    first_flags = DictFlags(APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS)
    SeriesUpgradeFlow(services, flags=first_flags).run()
    first_flags.clear(UPGRADE_SERIES_IN_PROGRESS)
    second_flags = DictFlags()
    second_flags.values = dict(first_flags.values)  # the same view, in another process

    assert SeriesUpgradeFlow(services, flags=first_flags).run() is Step.BROUGHT_BACK
    fake_systemd.add_unit('web.service', enabled='enabled', active=False)  # stopped since
    fake_systemd.clear_calls()
    # Once it has the lock, it reads the record: completed, by the token in its
    # flag the library's own upgrade. It touches nothing and clears the flag.
    assert SeriesUpgradeFlow(services, flags=second_flags).run() is Step.NOTHING

    assert fake_systemd.calls == []
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'inactive'}
    assert not second_flags.is_set(APPLICATION_DISABLED)
