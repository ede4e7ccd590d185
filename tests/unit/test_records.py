# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Damaged, lost and unwritable state files: never read as "nothing recorded"."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import tempfile
from typing import TYPE_CHECKING, Any

import pytest
from test_flow import DictFlags

from charm_upgrade import (
    Journal,
    Migration,
    MigrationContext,
    Migrations,
    SeriesUpgradeFlow,
    StateFileError,
    SystemdServices,
    _bases,
    _state,
)
from charm_upgrade._flags import APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS
from charm_upgrade._migrations import SERIES

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

    from charm_upgrade.testing._fake_systemd import FakeSystemd


@pytest.fixture
def flow(fake_systemd: FakeSystemd) -> SeriesUpgradeFlow:
    # The operator disabled and stopped cron before the upgrade.
    fake_systemd.add_unit('web.service')
    fake_systemd.add_unit('cron.service', enabled='disabled', active=False)
    return SeriesUpgradeFlow(
        SystemdServices(['web', 'cron']), flags=DictFlags(APPLICATION_STARTED)
    )


def prepare(flow: SeriesUpgradeFlow) -> None:
    flow.flags.set(UPGRADE_SERIES_IN_PROGRESS)
    flow.run(target_base='ubuntu@24.04')


def complete(flow: SeriesUpgradeFlow) -> None:
    flow.flags.clear(UPGRADE_SERIES_IN_PROGRESS)
    flow.run()


# series-upgrade.json ---------------------------------------------------------------

GOOD_UNITS = {
    'web.service': {'id': 'web.service', 'is_enabled': 'enabled', 'running': True},
    'cron.service': {'id': 'cron.service', 'is_enabled': 'disabled', 'running': False},
}


def series_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        'v': 1,
        'phase': 'prepared',
        'recorded_at': '2026-01-01T00:00:00.000000Z',
        'old_base': 'ubuntu@22.04',
        'target_base': 'ubuntu@24.04',
        'migrated': False,
        'services': {'systemd:web.service,cron.service': {'kind': 'systemd', 'units': GOOD_UNITS}},
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ('content', 'problem'),
    [
        (b'null', 'holds null where a JSON object belongs'),
        (b'[]', 'holds a JSON array where a JSON object belongs'),
        (b'"prepared"', 'holds a string where a JSON object belongs'),
        (b'{"v": 1, "phase": "prepared"', 'is not valid JSON'),
        (b'\xff\xfe{}', 'is not UTF-8 (byte 0xff at offset 0)'),
        (json.dumps(series_record(phase='done')).encode(), "has 'phase' = 'done'"),
        (json.dumps(series_record(services=[])).encode(), 'has services = [], expected'),
        (json.dumps(series_record(v=2)).encode(), 'is format 2, written by a newer'),
        (
            json.dumps(
                series_record(
                    services={
                        'systemd:web.service,cron.service': {
                            'kind': 'systemd',
                            'units': {**GOOD_UNITS, 'cron.service': {'id': 'cron.service'}},
                        }
                    }
                )
            ).encode(),
            "has no services['systemd:web.service,cron.service'].units['cron.service'].is_enabled",
        ),
        (
            json.dumps(
                series_record(
                    services={
                        'systemd:web.service,cron.service': {
                            'kind': 'systemd',
                            'units': {
                                **GOOD_UNITS,
                                'cron.service': {
                                    'id': 'cron.service',
                                    'is_enabled': 'disabled',
                                    'running': 'no',
                                },
                            },
                        }
                    }
                )
            ).encode(),
            ".units['cron.service'].running = 'no', expected true or false",
        ),
        (
            json.dumps({k: v for k, v in series_record().items() if k != 'services'}).encode(),
            "has no 'services'",
        ),
    ],
)
def test_a_damaged_before_state_stops_complete_with_the_units_left_down(
    flow: SeriesUpgradeFlow, fake_systemd: FakeSystemd, content: bytes, problem: str
):
    prepare(flow)
    flow.record_path.write_bytes(content)

    with pytest.raises(StateFileError) as caught:
        complete(flow)

    message = str(caught.value)
    assert message.startswith(str(flow.record_path))
    assert problem in message
    assert 'removing it makes complete bring nothing back' in message
    assert caught.value.path == str(flow.record_path)
    # Not read as "nothing recorded": the operator's disabled, stopped unit is
    # not brought back enabled and running; nothing is touched.
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert sorted(fake_systemd.held()) == ['cron.service', 'web.service']


def test_a_fixed_before_state_lets_complete_go_on(
    flow: SeriesUpgradeFlow, fake_systemd: FakeSystemd
):
    prepare(flow)
    good = flow.record_path.read_bytes()
    flow.record_path.write_bytes(b'null')
    with pytest.raises(StateFileError):
        complete(flow)

    flow.record_path.write_bytes(good)
    complete(flow)

    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}


def test_keys_a_newer_version_wrote_are_kept(flow: SeriesUpgradeFlow):
    prepare(flow)
    record = json.loads(flow.record_path.read_text())
    record['future'] = {'kept': True}
    flow.record_path.write_text(json.dumps(record))

    complete(flow)

    completed = json.loads(flow.record_path.read_text())
    assert completed['phase'] == 'completed'
    assert completed['future'] == {'kept': True}


# migrations.json ---------------------------------------------------------------------


def appending(data: pathlib.Path, line: str) -> Any:
    """A migration that is not idempotent: it appends its line."""

    def up(ctx: MigrationContext) -> None:
        with data.open('a') as f:
            f.write(line + '\n')

    return up


def registry(data: pathlib.Path, count: int) -> Migrations:
    return Migrations(
        [
            Migration(str(n), f'to v{n}', kind=SERIES, up=appending(data, f'v{n}'))
            for n in range(1, count + 1)
        ]
    )


@pytest.mark.parametrize(
    ('content', 'problem'),
    [
        (b'null', 'holds null where a JSON object belongs'),
        (b'[]', 'holds a JSON array where a JSON object belongs'),
        (
            b'{"v": 1, "applied": {"1": {"kind": "series"}, "2": "yes"}}',
            "has applied['2'] = 'yes'",
        ),
        (b'{"v": 1, "applied": {"1": {"kind": "mystery"}}}', "has applied['1'].kind = 'mystery'"),
        (b'{"v": 1, "applied": {}, "started": []}', 'has started = [], expected a JSON object'),
        (b'{"v": 1, "applied": {}, "failed": {"id": 2}}', 'has failed.id = 2, expected a string'),
        (b'{"v": 1, "applied": {}, "revision": 12}', "has 'revision' = 12"),
        (b'{"v": 1}', "has no 'applied'"),
        (b'{"v": 1, "applied": {"1": {"kind": "series"}}} \xe9', 'is not UTF-8 (byte 0xe9'),
    ],
)
def test_a_damaged_migrations_record_runs_nothing_and_says_not_to_remove_it(
    tmp_path: pathlib.Path, state_dir: pathlib.Path, content: bytes, problem: str
):
    data = tmp_path / 'data'
    registry(data, 2).run(SERIES, old='a', new='b')
    (state_dir / 'migrations.json').write_bytes(content)

    with pytest.raises(StateFileError) as caught:
        registry(data, 3).run(SERIES, old='b', new='c')

    message = str(caught.value)
    assert message.startswith(str(state_dir / 'migrations.json'))
    assert problem in message
    assert 'do not remove it: without it every migration runs again' in message
    assert '"applied": {"<id>": {"kind": "series" or "refresh"' in message  # the shape
    assert data.read_text() == 'v1\nv2\n'  # not v1 v2 v1 v2 v3, not v1 v2 v2 v3


def test_a_migrations_record_deleted_after_migrations_ran_is_not_taken_for_a_fresh_unit(
    tmp_path: pathlib.Path, state_dir: pathlib.Path
):
    # The journal says migrations 1 and 2 ran here; the record is gone.
    data = tmp_path / 'data'
    registry(data, 2).run(SERIES, old='a', new='b', journal=Journal())
    (state_dir / 'migrations.json').unlink()

    with pytest.raises(StateFileError) as caught:
        registry(data, 3).run(SERIES, old='b', new='c', journal=Journal())

    message = str(caught.value)
    assert 'migrations.json is missing, but the journal records migrations 1, 2 as applied' in (
        message
    )
    assert '{"v": 1, "applied": {}}' in message  # the way out if none really ran
    assert data.read_text() == 'v1\nv2\n'

    # The operator rebuilds it from the journal: the run goes on from there.
    (state_dir / 'migrations.json').write_text(
        json.dumps({'v': 1, 'applied': {'1': {'kind': 'series'}, '2': {'kind': 'series'}}})
    )
    assert registry(data, 3).run(SERIES, old='b', new='c') == ['3']
    assert data.read_text() == 'v1\nv2\nv3\n'


def test_a_migrations_record_lost_after_a_series_upgrade_is_not_taken_for_a_fresh_unit(
    flow: SeriesUpgradeFlow,
    tmp_path: pathlib.Path,
    state_dir: pathlib.Path,
    os_release: pathlib.Path,
):
    data = tmp_path / 'data'
    flow.migrations = registry(data, 2)
    flow.migrations.mark_installed(base='ubuntu@22.04')  # the install hook
    prepare(flow)
    (state_dir / 'migrations.json').unlink()  # and the journal rotated away
    (state_dir / 'journal.jsonl').unlink()
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    with pytest.raises(StateFileError, match=r'series-upgrade\.json \(recorded .*\) was written'):
        complete(flow)

    assert not data.exists()  # the migrations the install recorded did not run


def test_a_unit_that_never_had_a_migrations_record_runs_them_all(
    flow: SeriesUpgradeFlow, tmp_path: pathlib.Path, os_release: pathlib.Path
):
    # A charm revision that adds its first migrations to a deployed unit.
    data = tmp_path / 'data'
    prepare(flow)
    complete(flow)  # an earlier upgrade, before the charm had migrations
    flow.migrations = registry(data, 2)
    prepare(flow)
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    complete(flow)

    assert data.read_text() == 'v1\nv2\n'


def test_the_records_are_read_once_per_step(
    flow: SeriesUpgradeFlow,
    tmp_path: pathlib.Path,
    os_release: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
):
    flow.migrations = registry(tmp_path / 'data', 3)
    flow.migrations.mark_installed(base='ubuntu@20.04')  # the install hook
    flow.migrations.add(Migration('4', 'to v4', kind=SERIES, up=appending(tmp_path / 'd', 'v4')))
    reads: list[str] = []
    real = _state.read_document

    def counting(path: pathlib.Path, *, advice: str) -> Any:
        reads.append(path.name)
        return real(path, advice=advice)

    monkeypatch.setattr(_state, 'read_document', counting)
    prepare(flow)
    assert reads == ['series-upgrade.json']
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    reads.clear()

    complete(flow)

    assert sorted(reads) == ['migrations.json', 'series-upgrade.json']
    assert (tmp_path / 'd').read_text() == 'v4\n'  # it did run a migration


# os-release ---------------------------------------------------------------------------


def test_os_release_that_is_not_utf8_names_the_file(os_release: pathlib.Path):
    os_release.write_bytes(b'ID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="\xff"\n')
    with pytest.raises(
        StateFileError, match=r'os-release is not UTF-8 \(byte 0xff at offset'
    ) as e:
        _bases.current_base()
    assert e.value.path == str(os_release)


# Writes that fail ---------------------------------------------------------------------


@pytest.mark.parametrize('error', [errno.ENOSPC, errno.EROFS])
def test_a_record_that_cannot_be_written_names_the_file_and_touches_nothing(
    flow: SeriesUpgradeFlow,
    fake_systemd: FakeSystemd,
    monkeypatch: pytest.MonkeyPatch,
    error: int,
):
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(error, os.strerror(error))  # as the kernel says it: no file name

    monkeypatch.setattr(tempfile, 'mkstemp', failing)

    with pytest.raises(StateFileError) as caught:
        prepare(flow)

    assert str(caught.value).startswith(
        f'{flow.record_path} cannot be written ({os.strerror(error)})'
    )
    assert 'the file as it was before is unchanged' in str(caught.value)
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}


def test_atomic_write_names_the_file_and_leaves_no_temporary(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / 'r.json'
    _state.write_json(path, {'a': 1})

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, 'write', full)
    with pytest.raises(OSError, match=r'No space left on device') as caught:
        _state.write_json(path, {'a': 2})

    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(path)
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {'a': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['r.json']


@contextlib.contextmanager
def tiny_file_system(path: pathlib.Path) -> Iterator[pathlib.Path]:
    path.mkdir()
    try:
        subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=32k', 'tmpfs', str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f'cannot mount a tmpfs here: {e}')
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason='mounting a small file system needs root')
def test_a_full_and_a_read_only_state_directory_name_the_record(
    tmp_path: pathlib.Path, fake_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
):
    # A real ENOSPC and a real EROFS, from the kernel.
    fake_systemd.add_unit('web.service')
    with tiny_file_system(tmp_path / 'small') as small:
        monkeypatch.setenv('CHARM_UPGRADE_STATE_DIR', str(small))
        flow = SeriesUpgradeFlow(SystemdServices(['web']), flags=DictFlags(APPLICATION_STARTED))
        filler = small / 'filler'
        with contextlib.suppress(OSError), filler.open('wb') as f:
            while True:
                f.write(b'\0' * 4096)
                f.flush()

        with pytest.raises(
            StateFileError, match=r'series-upgrade\.json cannot be written \(No space'
        ):
            prepare(flow)

        filler.unlink()
        subprocess.run(['mount', '-o', 'remount,ro', str(small)], check=True)
        with pytest.raises(
            StateFileError, match=r'series-upgrade\.json cannot be written \(Read-only'
        ):
            prepare(flow)

    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
