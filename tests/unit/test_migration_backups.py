# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Migration(backup=...): copies taken before a migration, put back when it fails or dies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import struct
from typing import TYPE_CHECKING, Any

import pytest
from test_migrations import run_charm

from charm_upgrade import Journal, Migration, MigrationContext, MigrationError, Migrations, _backup
from charm_upgrade._migrations import REFRESH, SERIES

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable


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


# Symlinks -------------------------------------------------------------------------


def half_migrating(write: Callable[[], None], attempts: list[bool]) -> Any:
    """A migration that changes something, then fails on its first run."""

    def up(ctx: MigrationContext) -> None:
        attempts.append(ctx.interrupted)
        write()
        if len(attempts) == 1:
            raise RuntimeError('half way')

    return up


def test_a_declared_symlink_is_followed_and_what_it_leads_to_is_put_back(
    tmp_path: pathlib.Path, state_dir: pathlib.Path
):
    real = tmp_path / 'srv' / 'app.conf'
    real.parent.mkdir()
    real.write_text('format=1\n')
    link = tmp_path / 'app.conf'
    link.symlink_to(real)
    attempts: list[bool] = []
    migration = Migration(
        '1',
        'x',
        kind=SERIES,
        up=half_migrating(lambda: link.write_text('format=2, half\n'), attempts),
        backup=[link],
    )
    journal = Journal(state_dir / 'journal.jsonl')

    with pytest.raises(MigrationError, match='backup paths were put back'):
        Migrations([migration]).run(SERIES, old='a', new='b', journal=journal)

    assert real.read_text() == 'format=1\n'  # not only the link: the data it leads to
    assert link.is_symlink() and os.readlink(link) == str(real)
    backup = journal.read()[-1]['details']['backup']
    assert backup['resolved'] == {str(link): str(real)}
    assert backup['bytes'] == len('format=1\n')


def test_a_symlink_on_the_way_that_changed_is_refused_until_put_back(
    tmp_path: pathlib.Path, state_dir: pathlib.Path
):
    # The declared path leads through `current`, and the migration repoints it.
    (tmp_path / 'x1').mkdir()
    (tmp_path / 'x2').mkdir()
    (tmp_path / 'x1' / 'data').write_text('1\n')
    (tmp_path / 'x2' / 'data').write_text('other\n')
    current = tmp_path / 'current'
    current.symlink_to('x1')
    attempts: list[bool] = []

    def repoint() -> None:
        (tmp_path / 'x1' / 'data').write_text('2, half\n')
        current.unlink()
        current.symlink_to('x2')

    migrations = Migrations(
        [
            Migration(
                '1',
                'x',
                kind=SERIES,
                up=half_migrating(repoint, attempts),
                backup=[current / 'data'],
            )
        ]
    )

    with pytest.raises(MigrationError, match=r'now leads to .*x2/data, but to .*x1/data') as e:
        migrations.run(SERIES, old='a', new='b')

    assert 'Putting back its backup failed too' in str(e.value)
    assert (tmp_path / 'x1' / 'data').read_text() == '2, half\n'  # nothing touched
    assert (tmp_path / 'x2' / 'data').read_text() == 'other\n'  # not overwritten
    assert record(state_dir)['started']['id'] == '1'

    current.unlink()
    current.symlink_to('x1')  # as the error says
    assert migrations.run(SERIES, old='a', new='b') == ['1']
    assert attempts == [False, False]  # restored first: not an interrupted run
    assert (tmp_path / 'x1' / 'data').read_text() == '2, half\n'  # the retry's own work


# Whatever stands at the path now ----------------------------------------------------


@pytest.mark.parametrize('becomes', ['a file', 'a symlink', 'an empty directory'])
def test_restore_clears_whatever_the_migration_left_at_the_path(
    data: pathlib.Path, tmp_path: pathlib.Path, state_dir: pathlib.Path, becomes: str
):
    before = snapshot(data)
    (tmp_path / 'elsewhere').mkdir()

    def flatten() -> None:
        shutil.rmtree(data / 'db')
        if becomes == 'a file':
            (data / 'db').write_text('flattened')
        elif becomes == 'a symlink':
            (data / 'db').symlink_to(tmp_path / 'elsewhere')
        else:
            (data / 'db').mkdir()
        (data / 'app.conf').unlink()
        (data / 'app.conf').mkdir()  # and the file became a directory

    attempts: list[bool] = []
    migrations = Migrations(
        [
            Migration(
                '1',
                'x',
                kind=SERIES,
                up=half_migrating(flatten, attempts),
                backup=[data / 'db', data / 'app.conf'],
            )
        ]
    )

    with pytest.raises(MigrationError, match='backup paths were put back'):
        migrations.run(SERIES, old='a', new='b')

    assert snapshot(data) == before
    assert list((tmp_path / 'elsewhere').iterdir()) == []
    assert migrations.run(SERIES, old='a', new='b') == ['1']  # and the retry goes through


# Declared paths checked before anything is copied -----------------------------------


@pytest.mark.parametrize(
    ('declared', 'refusal'),
    [
        (lambda tmp, state: [tmp], r"contains the unit's state directory"),
        (lambda tmp, state: [state / 'journal.jsonl'], r"is inside the unit's state directory"),
        (
            lambda tmp, state: [tmp / 'data', tmp / 'data' / 'app.conf'],
            r'data contains .*app\.conf',
        ),
        (lambda tmp, state: [tmp / 'data', tmp / 'data'], r'is the same as'),
        (lambda tmp, state: [tmp / 'alias', tmp / 'data' / 'db'], r'leads to .*data\) contains'),
    ],
)
def test_overlapping_declared_paths_are_refused_before_anything_is_copied(
    data: pathlib.Path,
    tmp_path: pathlib.Path,
    state_dir: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    declared: Callable[[pathlib.Path, pathlib.Path], list[pathlib.Path]],
    refusal: str,
):
    (tmp_path / 'alias').symlink_to(data)
    state_dir.mkdir(parents=True, exist_ok=True)
    ran: list[str] = []
    copied: list[str] = []
    monkeypatch.setattr(shutil, 'copyfile', lambda *a, **k: copied.append(str(a[0])))  # pyright: ignore[reportUnknownLambdaType,reportUnknownArgumentType]
    monkeypatch.setattr(os, 'sendfile', lambda *a: copied.append('sendfile'))  # pyright: ignore[reportUnknownLambdaType,reportUnknownArgumentType]
    migration = Migration(
        '1',
        'x',
        kind=SERIES,
        up=lambda ctx: ran.append('ran'),
        backup=declared(tmp_path, state_dir),
    )

    with pytest.raises(MigrationError, match=refusal) as e:
        Migrations([migration]).run(SERIES, old='a', new='b')

    assert 'Nothing was changed' in str(e.value)
    assert ran == []
    assert copied == []
    assert not (state_dir / 'migration-backups' / '1-up').exists()
    assert not (state_dir / 'migration-backups' / '.1-up.partial').exists()


# Secrets and metadata ----------------------------------------------------------------


def test_no_copy_is_readable_by_others_before_it_has_its_mode(
    data: pathlib.Path, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    secret = data / 'db' / 'secret.key'
    secret.write_text('hunter2')
    secret.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(secret, 584788, 584788)
    modes_at_data: dict[str, tuple[int, int]] = {}
    real_sendfile = os.sendfile

    def watching(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        info = os.fstat(out_fd)
        name = os.readlink(f'/proc/self/fd/{in_fd}')
        modes_at_data.setdefault(name, (stat.S_IMODE(info.st_mode), info.st_uid))
        return real_sendfile(out_fd, in_fd, offset, count)  # pyright: ignore[reportArgumentType]

    monkeypatch.setattr(os, 'sendfile', watching)

    def up(ctx: MigrationContext) -> None:
        secret.unlink()
        secret.write_text('rotated')
        raise RuntimeError('half way')

    migrations = Migrations([Migration('1', 'x', kind=SERIES, up=up, backup=[data / 'db'])])
    with pytest.raises(MigrationError):
        migrations.run(SERIES, old='a', new='b')

    backup_copy = str(state_dir / 'migration-backups' / '1-up' / '0' / 'secret.key')
    # The backup copy is read when it is restored: from the backup, with the
    # secret's mode and owner already set when its data went in.
    owner = 584788 if os.geteuid() == 0 else os.geteuid()
    assert modes_at_data[str(secret)] == (0o600, owner)  # taking the backup
    assert modes_at_data[backup_copy] == (0o600, owner)  # putting it back
    assert secret.read_text() == 'hunter2'
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def acl_granting_read(uid: int) -> bytes:
    """A POSIX access ACL (the kernel's xattr form): owner rw, user ``uid`` r, others none."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 6, undefined), (0x02, 4, uid), (0x04, 4, undefined), (0x10, 4, undefined)]
    entries.append((0x20, 0, undefined))
    return struct.pack('<I', 2) + b''.join(struct.pack('<HHI', *e) for e in entries)


def test_extended_attributes_acls_and_capabilities_are_put_back(
    data: pathlib.Path, state_dir: pathlib.Path
):
    conf, tool = data / 'app.conf', data / 'db' / 'tool'
    tool.write_bytes(b'#!/bin/sh\n')
    tool.chmod(0o755)
    os.setxattr(conf, 'user.origin', b'charm')
    os.setxattr(data / 'db', 'user.tier', b'gold')
    os.setxattr(conf, 'system.posix_acl_access', acl_granting_read(1234))
    capability = bytes.fromhex('0100000200200000000000000000000000000000')  # cap_net_bind_service
    if os.geteuid() == 0:
        os.setxattr(tool, 'security.capability', capability)
    before = {p: sorted(os.listxattr(p)) for p in (conf, tool, data / 'db')}

    def up(ctx: MigrationContext) -> None:
        for path in (conf, tool):
            path.unlink()
            path.write_text('new')
        os.removexattr(data / 'db', 'user.tier')
        raise RuntimeError('half way')

    migrations = Migrations([Migration('1', 'x', kind=SERIES, up=up, backup=[conf, data / 'db'])])
    with pytest.raises(MigrationError):
        migrations.run(SERIES, old='a', new='b')

    assert {p: sorted(os.listxattr(p)) for p in (conf, tool, data / 'db')} == before
    assert os.getxattr(conf, 'user.origin') == b'charm'
    assert os.getxattr(data / 'db', 'user.tier') == b'gold'
    assert os.getxattr(conf, 'system.posix_acl_access') == acl_granting_read(1234)
    if os.geteuid() == 0:
        assert os.getxattr(tool, 'security.capability') == capability


def test_hard_links_within_a_declared_tree_stay_links(data: pathlib.Path, state_dir: pathlib.Path):
    shard = data / 'db' / 'shards' / 'a'
    os.link(shard, data / 'db' / 'current-shard')

    def up(ctx: MigrationContext) -> None:
        shard.unlink()
        shard.write_text('rewritten')
        raise RuntimeError('half way')

    migrations = Migrations([Migration('1', 'x', kind=SERIES, up=up, backup=[data / 'db'])])
    with pytest.raises(MigrationError):
        migrations.run(SERIES, old='a', new='b')

    assert shard.stat().st_ino == (data / 'db' / 'current-shard').stat().st_ino
    assert shard.stat().st_nlink == 2
    assert shard.read_bytes() == b'\x00' * 4096


# A kill between recording and dropping the backup ------------------------------------

ORPHANING_CHARM = """
import os, pathlib, signal, sys
from charm_upgrade import Migration, Migrations, _backup

DATA = pathlib.Path(sys.argv[1])

def convert(ctx):
    with open(DATA.parent / 'attempts', 'a') as f:
        f.write('ran\\n')
    DATA.write_text(DATA.read_text() + 'converted\\n')

if sys.argv[2] == 'crash':
    # Killed once the migration is recorded, before its backup is dropped
    # (the first discard clears the way for the backup to be taken).
    real_discard, calls = _backup.discard, []

    def discard(backup):
        calls.append(backup)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        real_discard(backup)

    _backup.discard = discard

migrations = Migrations([Migration('1', 'convert', kind='series', up=convert, backup=[DATA])])
print(migrations.run('series', old='ubuntu@22.04', new='ubuntu@24.04'))
"""


def test_a_backup_orphaned_by_a_kill_is_dropped_by_the_next_run(
    tmp_path: pathlib.Path, state_dir: pathlib.Path
):
    script = tmp_path / 'charm.py'
    script.write_text(ORPHANING_CHARM)
    data = tmp_path / 'data.txt'
    data.write_text('original\n')

    crashed = run_charm(script, data, 'crash')
    assert crashed.returncode == -signal.SIGKILL
    assert list(record(state_dir)['applied']) == ['1']
    assert (state_dir / 'migration-backups' / '1-up').is_dir()  # the orphan

    again = run_charm(script, data, 'ok')

    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == '[]'
    assert list((state_dir / 'migration-backups').iterdir()) == []
    assert data.read_text() == 'original\nconverted\n'  # dropped, not put back
    assert (tmp_path / 'attempts').read_text() == 'ran\n'
