# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json
import logging
import os
import pathlib

import pytest

from charm_upgrade import Journal
from charm_upgrade._journal import read_journal


def test_a_stage_writes_start_and_ended_with_details(tmp_path: pathlib.Path):
    journal = Journal(tmp_path / 'j.jsonl')
    with journal.stage('services-down', services=['a.service']) as stage:
        stage.details['stopped'] = 1
    start, ended = journal.read()
    assert (start['stage'], start['event'], start['details']) == (
        'services-down',
        'start',
        {'services': ['a.service']},
    )
    assert ended['event'] == 'ended'
    assert ended['details'] == {'stopped': 1}
    assert ended['duration'] >= 0
    assert start['ts'].endswith('Z')


def test_a_failing_stage_writes_an_explicit_failed_record(tmp_path: pathlib.Path):
    journal = Journal(tmp_path / 'j.jsonl')
    with pytest.raises(RuntimeError):
        with journal.stage('migrate'):
            raise RuntimeError('boom')
    failed = journal.read()[-1]
    assert failed['event'] == 'failed'
    assert failed['error'] == 'RuntimeError: boom'


def test_a_torn_line_is_skipped_and_the_next_record_survives(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / 'j.jsonl'
    journal = Journal(path)
    journal.write('a', 'start')
    with path.open('a') as f:
        f.write('{"v": 1, "stage": "b", "ev')  # a crash mid-line
    journal.write('c', 'start')
    journal.write('d', 'start')
    with caplog.at_level(logging.WARNING):
        records = journal.read()
    assert [r['stage'] for r in records] == ['a', 'c', 'd']
    assert 'skipping unreadable line 2' in caplog.text
    # The torn fragment stays a line of its own.
    assert path.read_text().splitlines()[1] == '{"v": 1, "stage": "b", "ev'


def test_an_unwritable_journal_warns_and_never_raises(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
):
    journal = Journal(tmp_path / 'missing-dir' / 'j.jsonl')
    with caplog.at_level(logging.WARNING):
        journal.write('a', 'start', details={'x': object()})
        with journal.stage('b'):
            pass
    assert 'Could not write to the upgrade journal' in caplog.text


def test_each_record_is_one_line_of_json(tmp_path: pathlib.Path):
    journal = Journal(tmp_path / 'j.jsonl')
    journal.write('a', 'ended', details={'text': 'two\nlines'}, duration=0.5)
    (line,) = (tmp_path / 'j.jsonl').read_text().splitlines()
    assert json.loads(line)['details']['text'] == 'two\nlines'


def test_default_journal_lives_in_the_state_dir(state_dir: pathlib.Path):
    Journal().write('a', 'start')
    assert (state_dir / 'journal.jsonl').exists()


# Rotation, timeline, versions -------------------------------------------------


def test_the_journal_rotates_and_keeps_the_newest_entries(tmp_path: pathlib.Path):
    journal = Journal(tmp_path / 'j.jsonl', max_bytes=2000)
    for n in range(100):
        journal.write('stage', 'start', details={'n': n})

    assert (tmp_path / 'j.jsonl').stat().st_size <= 2000
    assert (tmp_path / 'j.jsonl.1').stat().st_size <= 2000
    numbers = [r['details']['n'] for r in journal.read()]
    assert numbers[-1] == 99
    assert numbers == list(range(numbers[0], 100))  # the newest, in order, no gap
    assert len(numbers) > 10


def test_max_bytes_zero_means_no_bound(tmp_path: pathlib.Path):
    journal = Journal(tmp_path / 'j.jsonl', max_bytes=0)
    for _ in range(50):
        journal.write('s', 'start')
    assert not (tmp_path / 'j.jsonl.1').exists()
    assert len(journal.read()) == 50


def test_the_timeline_pairs_nested_stages_and_reads_a_dangling_start_as_interrupted(
    tmp_path: pathlib.Path,
):
    journal = Journal(tmp_path / 'j.jsonl')
    with journal.stage('series-prepare'):
        with journal.stage('services-down'):
            pass
    journal.write('snap-refresh', 'start', details={'revision_requested': '3'})  # then killed
    with journal.stage('snap-refresh') as stage:  # the retry
        stage.details['revision_after'] = '3'
    with pytest.raises(RuntimeError):
        with journal.stage('health'):
            raise RuntimeError('unhealthy')

    timeline = journal.timeline()

    assert [(e.stage, e.result) for e in timeline] == [
        ('series-prepare', 'ended'),
        ('services-down', 'ended'),
        ('snap-refresh', 'interrupted'),
        ('snap-refresh', 'ended'),
        ('health', 'failed'),
    ]
    interrupted, retried = timeline[2], timeline[3]
    assert interrupted.duration is None
    assert interrupted.details == {'revision_requested': '3'}
    assert retried.details == {'revision_after': '3'}
    assert timeline[4].error == 'RuntimeError: unhealthy'
    assert all(e.start and e.start.endswith('Z') for e in timeline)
    assert timeline[0].duration is not None and timeline[0].duration >= timeline[1].duration  # pyright: ignore[reportOperatorIssue]


def test_the_timeline_reads_old_records_and_ignores_what_it_does_not_know(tmp_path: pathlib.Path):
    t = '2026-01-01T10:00:'
    path = tmp_path / 'j.jsonl'
    lines = [
        # version 1 without "v" (the oldest), an event from a newer version, an
        # end whose start was rotated away, a torn line.
        {'ts': '2026-01-01T10:00:00.000000Z', 'stage': 'a', 'event': 'start'},
        {'v': 2, 'ts': '2026-01-01T10:00:01.000000Z', 'stage': 'a', 'event': 'progress'},
        {'v': 1, 'ts': t + '02.000000Z', 'stage': 'a', 'event': 'ended', 'duration': 2},
        {'v': 1, 'ts': t + '05.000000Z', 'stage': 'b', 'event': 'ended', 'duration': 1.5},
    ]
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines) + '{"v": 1, "st')

    timeline = Journal(path).timeline()

    assert [(e.stage, e.start, e.duration, e.result) for e in timeline] == [
        ('a', '2026-01-01T10:00:00.000000Z', 2.0, 'ended'),
        ('b', '2026-01-01T10:00:03.500000Z', 1.5, 'ended'),
    ]


def test_format_timeline_is_a_table(tmp_path: pathlib.Path):
    from charm_upgrade._journal import format_timeline

    journal = Journal(tmp_path / 'j.jsonl')
    with journal.stage('services-down'):
        pass
    journal.write('snap-refresh', 'start')

    header, first, second = format_timeline(journal.timeline()).splitlines()

    assert header.split() == ['START', '(UTC)', 'STAGE', 'DURATION', 'RESULT']
    assert first.split()[2:4] == ['services-down', '0.000']
    assert second.endswith('-  interrupted')


# Short writes and journals that cannot be read -----------------------------------------


def test_a_short_write_is_reported_and_costs_only_its_own_record(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / 'j.jsonl'
    journal = Journal(path)
    journal.write('a', 'start')
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # a disk that filled up mid-line
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, 'write', half)
    with caplog.at_level(logging.WARNING):
        journal.write('b', 'start', details={'lost': True})
    monkeypatch.setattr(os, 'write', real_write)
    journal.write('c', 'start')
    journal.write('d', 'start')

    assert 'short write' in caplog.text
    assert [r['stage'] for r in journal.read()] == ['a', 'c', 'd']


def test_a_directory_at_the_journal_path_is_reported_not_raised(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / 'j.jsonl'
    path.mkdir()
    journal = Journal(path)

    with caplog.at_level(logging.WARNING):
        journal.write('a', 'start')
        assert journal.read() == []
        assert journal.timeline() == []

    assert f'cannot read {path}: Is a directory' in caplog.text
    assert 'Could not write to the upgrade journal' in caplog.text


def test_an_unreadable_journal_is_reported_and_the_rotated_file_still_read(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / 'j.jsonl'
    journal = Journal(path, max_bytes=300)
    for n in range(4):
        journal.write('s', 'start', details={'n': n})
    assert journal.rotated_path.exists()
    real_read_bytes = pathlib.Path.read_bytes

    def denied(self: pathlib.Path) -> bytes:
        if self == path:  # as for a journal root made 0600 and read by another user
            raise PermissionError(13, 'Permission denied', str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(pathlib.Path, 'read_bytes', denied)
    read = read_journal(journal)

    assert read.unreadable == [f'cannot read {path}: Permission denied']
    assert read.records and all(r['stage'] == 's' for r in read.records)


def test_format_timeline_keeps_one_row_per_stage_and_names_the_group(tmp_path: pathlib.Path):
    from charm_upgrade._journal import format_timeline

    journal = Journal(tmp_path / 'j.jsonl')
    for group in ('systemd:web.service,cron.service', 'snap:myapp'):
        with journal.stage('services-up', group=group, services=['x']):
            pass
    journal.write(
        'snap-refresh',
        'failed',
        duration=1.0,
        error='ChangeFailed: cannot perform the following tasks:\n'
        '- Run post-refresh hook of "myapp" snap if present (exit status 1)\n',
    )

    rows = format_timeline(journal.timeline()).splitlines()

    assert len(rows) == 4
    assert rows[1].split()[2:4] == ['services-up', 'systemd:web.service,cron.service']
    assert rows[2].split()[2:4] == ['services-up', 'snap:myapp']
    assert rows[3].endswith(
        'failed: ChangeFailed: cannot perform the following tasks: / '
        '- Run post-refresh hook of "myapp" snap if present (exit status 1)'
    )


def test_format_record_is_one_line_with_the_group_and_the_upgrade(tmp_path: pathlib.Path):
    from charm_upgrade._journal import format_record

    journal = Journal(tmp_path / 'j.jsonl')
    journal.write(
        'services-down',
        'failed',
        duration=2,
        error='ChangeFailed: cannot perform the following tasks:\n- Stop snap "myapp"\n',
        details={'group': 'snap:myapp', 'upgrade': 'series upgrade ubuntu@22.04 -> ?'},
    )
    (record,) = journal.read()

    line = format_record(record)

    assert '\n' not in line
    assert line == (
        f'{record["ts"]} services-down snap:myapp (series upgrade ubuntu@22.04 -> ?) failed '
        '(2.000 s): ChangeFailed: cannot perform the following tasks: / - Stop snap "myapp"'
    )


def test_a_preview_is_one_line_per_item_whatever_its_text(tmp_path: pathlib.Path):
    from charm_upgrade import Preview, ServicePreview

    preview = Preview(
        step='snap-refresh',
        summary='refused: Migration 1 failed (ChangeFailed: cannot perform:\n- Start "myapp")',
        services=(ServicePreview('myapp.daemon', 'enabled', True, 'stop,\nrefresh'),),
        disruption='every service\nof myapp',
    )

    assert preview.format().splitlines() == [
        'snap-refresh: refused: Migration 1 failed (ChangeFailed: cannot perform: / '
        '- Start "myapp")',
        '  myapp.daemon (running, enabled): stop, / refresh',
        'disruption: every service / of myapp',
    ]
