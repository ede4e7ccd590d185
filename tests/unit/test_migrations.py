# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Migrations: order, the applied record, failures, crashes, rollbacks, fresh installs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from charm_upgrade import Journal, Migration, MigrationContext, MigrationError, Migrations
from charm_upgrade._migrations import REFRESH, SERIES

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable

Log = list[tuple[str, str, str | None, str | None, bool]]


def recorder(log: Log, name: str, *, fail: Exception | None = None) -> Callable[..., None]:
    def run(ctx: MigrationContext) -> None:
        log.append((name, ctx.direction, ctx.old, ctx.new, ctx.interrupted))
        if fail is not None:
            raise fail

    return run


def mig(
    migration_id: str,
    log: Log,
    *,
    kind: Any = SERIES,
    fail_up: Exception | None = None,
    down: bool = True,
) -> Migration:
    return Migration(
        migration_id,
        f'migration {migration_id}',
        kind=kind,
        up=recorder(log, migration_id, fail=fail_up),
        down=recorder(log, migration_id) if down else None,
    )


def record(state_dir: pathlib.Path) -> dict[str, Any]:
    return json.loads((state_dir / 'migrations.json').read_text())


# Ids and order ---------------------------------------------------------------


@pytest.mark.parametrize('bad', ['', 'move-config', '-1', '12 x', '12-', 'v2'])
def test_an_id_must_start_with_a_number(bad: str):
    with pytest.raises(ValueError, match='start it with a number'):
        Migration(bad, 'x', kind=SERIES, up=lambda ctx: None)


def test_kind_must_be_series_or_refresh():
    with pytest.raises(ValueError, match="use 'series' or 'refresh'"):
        Migration('1', 'x', kind='charm', up=lambda ctx: None)  # pyright: ignore[reportArgumentType]


def test_two_ids_with_one_number_are_refused():
    with pytest.raises(ValueError, match='share the number 7'):
        Migrations([mig('0007-a', []), mig('7-b', [])])


def test_pending_ups_run_in_number_order_and_are_recorded(state_dir: pathlib.Path):
    log: Log = []
    migrations = Migrations([mig('10-c', log), mig('9-b', log), mig('0001-a', log)])

    ran = migrations.run(SERIES, old='ubuntu@22.04', new='ubuntu@24.04')

    assert ran == ['0001-a', '9-b', '10-c']  # by number: 9 before 10
    assert [entry[0] for entry in log] == ran
    assert log[0] == ('0001-a', 'up', 'ubuntu@22.04', 'ubuntu@24.04', False)
    applied = record(state_dir)['applied']
    assert list(applied) == ['0001-a', '9-b', '10-c']
    assert applied['9-b']['how'] == 'ran'
    assert record(state_dir)['started'] is None


def test_a_second_run_runs_nothing_and_writes_nothing(state_dir: pathlib.Path):
    log: Log = []
    migrations = Migrations([mig('1', log)])
    migrations.run(SERIES, old='a', new='b')
    before = (state_dir / 'migrations.json').stat().st_mtime_ns

    assert migrations.run(SERIES, old='a', new='b') == []
    assert len(log) == 1
    assert (state_dir / 'migrations.json').stat().st_mtime_ns == before


def test_kinds_run_apart():
    log: Log = []
    migrations = Migrations([mig('1', log), mig('2', log, kind=REFRESH)])

    assert migrations.run(REFRESH, old='1', new='2') == ['2']
    assert [m.id for m in migrations.pending(SERIES)] == ['1']
    assert migrations.run(SERIES, old='a', new='b') == ['1']


def test_the_record_is_written_atomically_through_a_temporary_file(
    state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        replaced.append((os.path.basename(src), os.path.basename(dst)))
        real_replace(src, dst)

    fsynced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, 'fsync', lambda fd: (fsynced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(os, 'replace', spy)
    Migrations([mig('1', [])]).run(SERIES, old='a', new='b')

    assert replaced and all(dst == 'migrations.json' for _, dst in replaced)
    assert all(src.startswith('.migrations.json.') for src, _ in replaced)
    assert fsynced  # file and directory
    assert not [p for p in state_dir.iterdir() if p.name.startswith('.migrations.json.')]


# Out of order ------------------------------------------------------------------


def test_an_unapplied_id_older_than_an_applied_one_runs_once(caplog: pytest.LogCaptureFixture):
    log: Log = []
    Migrations([mig('2', log)]).run(SERIES, old='a', new='b')  # code without '1'
    both = Migrations([mig('1', log), mig('2', log)])  # '1' merged later

    with caplog.at_level(logging.WARNING):
        assert both.run(SERIES, old='b', new='c') == ['1']
    assert both.run(SERIES, old='c', new='d') == []
    assert [entry[0] for entry in log] == ['2', '1']  # '2' never again (osup re-ran it)
    assert 'Migration 1 runs after the newer 2' in caplog.text


# Failures ----------------------------------------------------------------------


def test_a_failure_stops_keeps_earlier_ones_journals_and_names_the_migration(
    state_dir: pathlib.Path,
):
    log: Log = []
    journal = Journal()
    migrations = Migrations(
        [mig('1', log), mig('2-bad', log, fail_up=RuntimeError('disk full')), mig('3', log)]
    )

    with pytest.raises(
        MigrationError, match=r'migration 2-bad \(migration 2-bad\) failed up'
    ) as e:
        migrations.run(SERIES, old='a', new='b', journal=journal)

    assert e.value.migration_id == '2-bad'
    assert isinstance(e.value.__cause__, RuntimeError)
    assert [entry[0] for entry in log] == ['1', '2-bad']  # '3' did not run
    state = record(state_dir)
    assert list(state['applied']) == ['1']
    assert state['failed']['id'] == '2-bad'
    assert state['failed']['error'] == 'RuntimeError: disk full'
    failed = [r for r in journal.read() if r['event'] == 'failed']
    assert [(r['stage'], r['error']) for r in failed] == [
        ('migration:2-bad', 'RuntimeError: disk full')
    ]
    assert migrations.blocked_message() == (
        'Migration 2-bad failed (RuntimeError: disk full); see upgrade-journal'
    )


def test_the_retry_of_a_failed_migration_is_told_it_was_interrupted(state_dir: pathlib.Path):
    log: Log = []
    attempts: list[bool] = []

    def flaky(ctx: MigrationContext) -> None:
        attempts.append(ctx.interrupted)
        if len(attempts) == 1:
            raise OSError('transient')

    migrations = Migrations([Migration('1', 'flaky', kind=SERIES, up=flaky), mig('2', log)])
    with pytest.raises(MigrationError):
        migrations.run(SERIES, old='a', new='b')

    assert migrations.run(SERIES, old='a', new='b') == ['1', '2']
    assert attempts == [False, True]
    assert migrations.failure is None
    assert migrations.blocked_message() is None
    assert record(state_dir)['started'] is None


# Crashes -------------------------------------------------------------------------

CRASHING_CHARM = """
import os, pathlib, signal, sys
from charm_upgrade import Migration, Migrations

DATA = pathlib.Path(sys.argv[1])

def append_line(ctx):
    # Not idempotent by itself: it appends. It uses the started mark instead.
    lines = DATA.read_text().splitlines() if DATA.exists() else []
    if ctx.interrupted and lines and lines[-1] == 'v2':
        return  # the half-run one got this far: done
    DATA.write_text('\\n'.join(lines + ['v2']) + '\\n')
    if sys.argv[2] == 'crash':
        os.kill(os.getpid(), signal.SIGKILL)  # after the work, before the record

def idempotent(ctx):
    DATA.with_suffix('.conf').write_text('path=/etc/new\\n')

migrations = Migrations([
    Migration('1-append', 'append v2', kind='series', up=append_line),
    Migration('2-conf', 'rewrite the config', kind='series', up=idempotent),
])
print(migrations.run('series', old='ubuntu@22.04', new='ubuntu@24.04'))
"""


def run_charm(
    script: pathlib.Path, data: pathlib.Path, mode: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), str(data), mode],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )


def test_a_kill_between_running_and_recording_reruns_with_interrupted(
    tmp_path: pathlib.Path, state_dir: pathlib.Path
):
    script = tmp_path / 'charm.py'
    script.write_text(CRASHING_CHARM)
    data = tmp_path / 'data.txt'

    crashed = run_charm(script, data, 'crash')

    assert crashed.returncode == -signal.SIGKILL
    state = record(state_dir)
    assert state['applied'] == {}
    assert state['started']['id'] == '1-append'  # the mark went to disk first
    assert data.read_text() == 'v2\n'

    again = run_charm(script, data, 'ok')

    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "['1-append', '2-conf']"
    assert data.read_text() == 'v2\n'  # not appended twice
    assert list(record(state_dir)['applied']) == ['1-append', '2-conf']
    assert run_charm(script, data, 'ok').stdout.strip() == '[]'


def test_an_idempotent_migration_converges_after_a_crash(state_dir: pathlib.Path):
    # The other way to keep the contract: ignore the mark, converge anyway.
    target = state_dir.parent / 'conf'

    def rewrite(ctx: MigrationContext) -> None:
        target.write_text('path=/etc/new\n')

    migrations = Migrations([Migration('1', 'rewrite', kind=SERIES, up=rewrite)])
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / 'migrations.json').write_text(
        json.dumps({'v': 1, 'applied': {}, 'started': {'id': '1', 'direction': 'up'}})
    )

    assert migrations.run(SERIES, old='a', new='b') == ['1']
    assert target.read_text() == 'path=/etc/new\n'


# Data newer than code ------------------------------------------------------------


def test_applied_ids_unknown_to_the_code_refuse_runs_of_their_kind(state_dir: pathlib.Path):
    log: Log = []
    Migrations([mig('1', log), mig('2-new', log)]).run(SERIES, old='a', new='b')
    old_code = Migrations([mig('1', log), mig('3', log, kind=REFRESH)])

    with pytest.raises(MigrationError, match=r'2-new are applied .* unknown to this charm code'):
        old_code.run(SERIES, old='a', new='b')
    assert len(log) == 2
    # A series migration the code does not know does not hold a refresh.
    assert old_code.run(REFRESH, old='1', new='2') == ['3']
    blocked = (
        'Migration 2-new applied here is unknown to this charm revision; '
        'refresh to the revision that has it'
    )
    assert old_code.blocked_message() == blocked
    assert old_code.blocked_message(SERIES) == blocked
    assert old_code.blocked_message(REFRESH) is None


def test_a_series_run_leaves_a_standing_refresh_failure_and_its_started_mark_alone(
    state_dir: pathlib.Path,
):
    # A refresh migration failed (no backup: its retry must be told it may be half done),
    # then the machine's series upgrade completes and runs a series migration. That run is
    # the series upgrade's: the refresh migration's failure and mark are not its to clear.
    attempts: list[bool] = []

    def flaky(ctx: MigrationContext) -> None:
        attempts.append(ctx.interrupted)
        if len(attempts) == 1:
            raise OSError('disk full')

    log: Log = []
    migrations = Migrations(
        [mig('1-config', log), Migration('2-format', 'format', kind=REFRESH, up=flaky)]
    )
    with pytest.raises(MigrationError):
        migrations.run(REFRESH, old='1', new='2')

    assert migrations.run(SERIES, old='ubuntu@22.04', new='ubuntu@24.04') == ['1-config']

    assert migrations.blocked_message(REFRESH) == (
        'Migration 2-format failed (OSError: disk full); see upgrade-journal'
    )
    assert migrations.blocked_message(SERIES) is None
    assert record(state_dir)['started']['id'] == '2-format'
    assert migrations.run(REFRESH, old='1', new='2') == ['2-format']
    assert attempts == [False, True]
    assert migrations.failure is None
    assert record(state_dir)['started'] is None


# Fresh install ----------------------------------------------------------------------


def test_a_fresh_install_records_all_as_applied_without_running(state_dir: pathlib.Path):
    log: Log = []
    migrations = Migrations([mig('1', log), mig('2', log, kind=REFRESH)])

    assert migrations.mark_installed(base='ubuntu@24.04') is True
    assert migrations.mark_installed(revision='7') is False  # adds what it learned

    assert log == []
    state = record(state_dir)
    assert {i: (e['how'], e['new']) for i, e in state['applied'].items()} == {
        '1': ('installed', 'ubuntu@24.04'),
        '2': ('installed', '7'),
    }
    assert migrations.data_revision == '7'
    assert migrations.run(SERIES, old='a', new='b') == []
    assert migrations.run(REFRESH, old='7', new='8') == []


def test_install_after_migrations_ran_changes_nothing(state_dir: pathlib.Path):
    log: Log = []
    migrations = Migrations([mig('1', log), mig('2', log)])
    migrations.run(SERIES, old='a', new='b')
    before = record(state_dir)

    assert migrations.mark_installed(base='x') is False
    assert record(state_dir) == before


def test_a_unit_without_a_record_runs_every_migration():
    # Deployed before the charm had migrations: its data is the oldest format.
    log: Log = []
    assert Migrations([mig('1', log), mig('2', log)]).run(SERIES, old='a', new='b') == ['1', '2']


# Refresh rollback ---------------------------------------------------------------------


def refresh_migrations(log: Log, *, down_of_2: bool = True) -> Migrations:
    return Migrations(
        [mig('1', log, kind=REFRESH), mig('2', log, kind=REFRESH, down=down_of_2), mig('3', log)]
    )


def test_a_refresh_to_an_older_revision_runs_down_newest_first(state_dir: pathlib.Path):
    log: Log = []
    migrations = refresh_migrations(log)
    migrations.mark_installed(revision='10')
    state = record(state_dir)
    for migration_id in ('1', '2'):  # as if applied by a refresh 10 -> 12
        state['applied'][migration_id].update(how='ran', new='12')
    (state_dir / 'migrations.json').write_text(json.dumps(state))

    assert migrations.describe(REFRESH, target_revision='10') == [
        '2 (down): migration 2',
        '1 (down): migration 1',
    ]
    assert migrations.run(REFRESH, old='12', new='10') == ['2:down', '1:down']
    assert [(e[0], e[1], e[2], e[3]) for e in log] == [
        ('2', 'down', '12', '10'),
        ('1', 'down', '12', '10'),
    ]
    assert set(record(state_dir)['applied']) == {'3'}
    assert migrations.data_revision == '10'

    # Forward again: the ups run again, once.
    assert migrations.run(REFRESH, old='10', new='12') == ['1', '2']


def test_a_refresh_to_a_revision_not_older_undoes_nothing():
    log: Log = []
    migrations = refresh_migrations(log)
    migrations.run(REFRESH, old='10', new='12')

    assert migrations.to_undo('12') == []
    assert migrations.to_undo('13') == []
    assert migrations.to_undo('x1') == []  # local and store revisions are not compared
    assert [m.id for m in migrations.to_undo('11')] == ['2', '1']


def test_a_rollback_across_a_migration_without_down_is_refused_before_anything_runs():
    log: Log = []
    migrations = refresh_migrations(log, down_of_2=False)
    migrations.run(REFRESH, old='10', new='12')
    log.clear()

    with pytest.raises(MigrationError, match=r'migration 2 .* cannot be undone') as e:
        migrations.run(REFRESH, old='12', new='10')

    assert e.value.migration_id == '2'
    assert log == []


def test_a_failing_down_stops_and_keeps_the_ones_undone(state_dir: pathlib.Path):
    log: Log = []

    def bad_down(ctx: MigrationContext) -> None:
        raise RuntimeError('cannot')

    migrations = Migrations(
        [
            Migration('1', 'one', kind=REFRESH, up=recorder(log, '1'), down=bad_down),
            mig('2', log, kind=REFRESH),
        ]
    )
    migrations.run(REFRESH, old='10', new='12')

    with pytest.raises(MigrationError, match=r'migration 1 .* failed down'):
        migrations.run(REFRESH, old='12', new='10')

    assert set(record(state_dir)['applied']) == {'1'}  # '2' was undone, '1' not
