# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Migration(backup=...): copies taken before a migration, put back when it fails or dies."""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest
from test_migrations import run_charm

from charm_upgrade import Journal, Migration, MigrationContext, MigrationError, Migrations, _backup
from charm_upgrade._migrations import REFRESH, SERIES

if TYPE_CHECKING:
    import pathlib


@pytest.fixture
def data(tmp_path: pathlib.Path) -> pathlib.Path:
    """A workload's data: a config file, a directory tree with a symlink, modes and times."""
    root = tmp_path / 'data'
    (root / 'db' / 'shards').mkdir(parents=True)
    (root / 'app.conf').write_text('path=/var/old\n')
    (root / 'db' / 'format').write_text('1\n')
    (root / 'db' / 'shards' / 'a').write_bytes(b'\x00' * 4096)
    (root / 'db' / 'current').symlink_to('format')
    (root / 'db' / 'format').chmod(0o640)
    os.utime(root / 'app.conf', ns=(1_000_000_000, 1_000_000_000))
    return root


def snapshot(root: pathlib.Path) -> dict[str, Any]:
    """Everything a restore must bring back: kinds, contents, link targets, modes, mtimes."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob('*')):
        info = path.lstat()
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = ('link', os.readlink(path))
        elif path.is_dir():
            out[key] = ('dir', oct(info.st_mode & 0o7777))
        else:
            out[key] = ('file', path.read_bytes(), oct(info.st_mode & 0o7777), info.st_mtime_ns)
    return out


def record(state_dir: pathlib.Path) -> dict[str, Any]:
    return json.loads((state_dir / 'migrations.json').read_text())


def breaker(root: pathlib.Path, attempts: list[bool], *, fail: bool = True) -> Any:
    """A migration that rewrites, removes and creates, then raises if asked to."""

    def up(ctx: MigrationContext) -> None:
        attempts.append(ctx.interrupted)
        (root / 'app.conf').write_text('path=/var/new\n')
        (root / 'db' / 'format').write_text('2\n')
        (root / 'db' / 'shards' / 'a').unlink()
        (root / 'db' / 'shards' / 'b').write_text('new shard')
        (root / 'new.conf').write_text('created by the migration')
        if fail and len(attempts) == 1:
            raise RuntimeError('disk full')

    return up


def test_backup_paths_must_be_absolute():
    with pytest.raises(ValueError, match='give absolute paths'):
        Migration('1', 'x', kind=SERIES, up=lambda ctx: None, backup=['etc/myapp'])


def test_backup_must_be_a_list_of_paths():
    with pytest.raises(ValueError, match='give a list of paths'):
        Migration('1', 'x', kind=SERIES, up=lambda ctx: None, backup='/etc/myapp')  # pyright: ignore[reportArgumentType]


def test_a_failed_migration_puts_its_paths_back_exactly(
    data: pathlib.Path, state_dir: pathlib.Path
):
    before = snapshot(data)
    attempts: list[bool] = []
    migration = Migration(
        '1-format',
        'Data format 2',
        kind=SERIES,
        up=breaker(data, attempts),
        backup=[data / 'app.conf', data / 'db', data / 'new.conf'],
    )
    migrations = Migrations([migration])
    journal = Journal(state_dir / 'journal.jsonl')

    with pytest.raises(MigrationError, match='backup paths were put back') as caught:
        migrations.run(SERIES, old='ubuntu@22.04', new='ubuntu@24.04', journal=journal)

    assert caught.value.migration_id == '1-format'
    assert snapshot(data) == before  # new.conf, absent before, is gone again
    assert not migrations.backup_dir(migration, 'up').exists()
    state = record(state_dir)
    assert state['started'] is None  # the data is as before: not an interrupted run
    assert state['failed']['error'] == 'RuntimeError: disk full'
    failed = journal.read()[-1]
    assert failed['event'] == 'failed'
    assert failed['details']['backup']['paths'] == [
        str(data / 'app.conf'),
        str(data / 'db'),
        str(data / 'new.conf'),
    ]
    assert failed['details']['backup']['absent'] == [str(data / 'new.conf')]
    assert failed['details']['backup']['bytes'] == len('path=/var/old\n') + 2 + 4096
    assert failed['details']['restored'] == failed['details']['backup']['paths']

    # The retry starts from the old data, and is not told it was interrupted.
    assert migrations.run(SERIES, old='ubuntu@22.04', new='ubuntu@24.04') == ['1-format']
    assert attempts == [False, False]
    assert (data / 'db' / 'format').read_text() == '2\n'
    assert not migrations.backup_dir(migration, 'up').exists()
    assert list(record(state_dir)['applied']) == ['1-format']


def test_a_successful_migration_drops_its_backup(data: pathlib.Path, state_dir: pathlib.Path):
    attempts: list[bool] = []
    migration = Migration(
        '1', 'x', kind=SERIES, up=breaker(data, attempts, fail=False), backup=[data]
    )
    migrations = Migrations([migration])

    migrations.run(SERIES, old='a', new='b')

    assert (data / 'new.conf').exists()
    assert not (state_dir / 'migration-backups' / '1-up').exists()
    assert list((state_dir / 'migration-backups').iterdir()) == []


def test_a_down_is_backed_up_apart_from_its_up(data: pathlib.Path, state_dir: pathlib.Path):
    def down(ctx: MigrationContext) -> None:
        (data / 'app.conf').write_text('half undone')
        raise OSError('read-only file system')

    migration = Migration(
        '1', 'x', kind=REFRESH, up=lambda ctx: None, down=down, backup=[data / 'app.conf']
    )
    migrations = Migrations([migration])
    migrations.run(REFRESH, old='5', new='6')

    with pytest.raises(MigrationError, match='failed down'):
        migrations.run(REFRESH, old='6', new='5')

    assert (data / 'app.conf').read_text() == 'path=/var/old\n'
    assert migrations.applied() == ['1']


def test_a_backup_that_cannot_be_taken_changes_nothing(
    tmp_path: pathlib.Path, state_dir: pathlib.Path
):
    ran: list[str] = []
    fifo = tmp_path / 'pipe'
    os.mkfifo(fifo)
    migration = Migration(
        '1', 'x', kind=SERIES, up=lambda ctx: ran.append(ctx.migration_id), backup=[fifo]
    )
    migrations = Migrations([migration])

    with pytest.raises(MigrationError, match=r'cannot back up .*pipe.*Nothing was changed'):
        migrations.run(SERIES, old='a', new='b')

    assert ran == []
    assert not (state_dir / 'migrations.json').exists() or record(state_dir)['started'] is None
    assert not migrations.backup_dir(migration, 'up').exists()
    assert not migrations.backup_dir(migration, 'up').with_name('.1-up.partial').exists()


def test_a_restore_that_fails_keeps_the_backup_and_the_mark_for_the_retry(
    data: pathlib.Path, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    attempts: list[bool] = []
    migration = Migration('1', 'x', kind=SERIES, up=breaker(data, attempts), backup=[data / 'db'])
    migrations = Migrations([migration])
    real_restore = _backup.restore

    def broken_restore(backup: pathlib.Path) -> list[str]:
        raise OSError('input/output error')

    monkeypatch.setattr(_backup, 'restore', broken_restore)
    with pytest.raises(MigrationError, match='Putting back its backup failed too'):
        migrations.run(SERIES, old='a', new='b')
    assert migrations.backup_dir(migration, 'up').exists()
    assert record(state_dir)['started']['id'] == '1'

    # The cause is fixed: the retry restores first, then runs on the old data.
    monkeypatch.setattr(_backup, 'restore', real_restore)
    attempts_before = len(attempts)
    (data / 'db' / 'shards' / 'c').write_text('written after the failure')
    assert migrations.run(SERIES, old='a', new='b') == ['1']
    assert attempts[attempts_before:] == [False]
    assert not (data / 'db' / 'shards' / 'c').exists()
    assert (data / 'db' / 'format').read_text() == '2\n'
    assert {p.name for p in (data / 'db' / 'shards').iterdir()} == {'b'}


# A process killed while the migration runs ---------------------------------------

KILLED_CHARM = """
import os, pathlib, signal, sys
from charm_upgrade import Migration, Migrations

DATA = pathlib.Path(sys.argv[1])

def convert(ctx):
    with open(DATA.parent / 'attempts', 'a') as f:
        f.write(f'{ctx.interrupted}\\n')
    # Not idempotent: it appends, and a half-run leaves a half-converted file.
    DATA.write_text(DATA.read_text() + 'converted\\n')
    if sys.argv[2] == 'crash':
        os.kill(os.getpid(), signal.SIGKILL)

migrations = Migrations([Migration('1', 'convert', kind='series', up=convert, backup=[DATA])])
print(migrations.run('series', old='ubuntu@22.04', new='ubuntu@24.04'))
"""


def test_a_kill_while_it_runs_restores_the_backup_before_the_retry(
    tmp_path: pathlib.Path, state_dir: pathlib.Path
):
    script = tmp_path / 'charm.py'
    script.write_text(KILLED_CHARM)
    data = tmp_path / 'data.txt'
    data.write_text('original\n')

    crashed = run_charm(script, data, 'crash')
    assert crashed.returncode == -signal.SIGKILL
    assert data.read_text() == 'original\nconverted\n'  # half done, unrecorded
    assert record(state_dir)['started']['id'] == '1'

    again = run_charm(script, data, 'ok')

    assert again.returncode == 0, again.stderr
    assert 'restored' in again.stderr  # the warning names what it put back
    # Converted once, from the original: the backup undid the half-run.
    assert data.read_text() == 'original\nconverted\n'
    assert (tmp_path / 'attempts').read_text() == 'False\nFalse\n'
    assert record(state_dir)['started'] is None
    assert not (state_dir / 'migration-backups' / '1-up').exists()


@pytest.mark.skipif(os.geteuid() != 0, reason='chown to another user needs root')
def test_owners_are_kept_through_the_backup_and_the_restore(
    data: pathlib.Path, state_dir: pathlib.Path
):
    # Snap data belongs to snap_daemon or the like; a restore as root must not take it.
    os.chown(data / 'db', 584788, 584788)
    os.chown(data / 'db' / 'format', 584788, 584788)
    os.chown(data / 'db' / 'current', 1000, 1000, follow_symlinks=False)

    def up(ctx: MigrationContext) -> None:
        (data / 'db' / 'format').unlink()
        (data / 'db' / 'format').write_text('2\n')  # now owned by root
        raise RuntimeError('half way')

    migrations = Migrations([Migration('1', 'x', kind=SERIES, up=up, backup=[data / 'db'])])
    with pytest.raises(MigrationError):
        migrations.run(SERIES, old='a', new='b')

    owners = {
        name: ((data / 'db' / name).lstat().st_uid, (data / 'db' / name).lstat().st_gid)
        for name in ('format', 'current')
    }
    assert owners == {'format': (584788, 584788), 'current': (1000, 1000)}
    assert ((data / 'db').stat().st_uid, (data / 'db').stat().st_gid) == (584788, 584788)
    assert (data / 'db' / 'format').read_text() == '1\n'
