# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""python -m charm_upgrade journal PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from charm_upgrade import Journal
from charm_upgrade.__main__ import main

if TYPE_CHECKING:
    import pathlib


@pytest.fixture
def journal(tmp_path: pathlib.Path) -> Journal:
    journal = Journal(tmp_path / 'journal.jsonl')
    with journal.stage('series-prepare'):
        pass
    with pytest.raises(ValueError):
        with journal.stage('migration:2'):
            raise ValueError('bad')
    journal.write('snap-refresh', 'start')
    return journal


def test_prints_a_timeline_table(journal: Journal, capsys: pytest.CaptureFixture[str]):
    assert main(['journal', str(journal.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ['START', '(UTC)', 'STAGE', 'DURATION', 'RESULT']
    assert [line.split()[2] for line in lines[1:]] == [
        'series-prepare',
        'migration:2',
        'snap-refresh',
    ]
    assert lines[2].endswith('failed: ValueError: bad')
    assert lines[3].endswith('interrupted')


def test_last_and_json(journal: Journal, capsys: pytest.CaptureFixture[str]):
    assert main(['journal', str(journal.path), '--last', '1', '--json']) == 0
    (line,) = capsys.readouterr().out.splitlines()
    entry = json.loads(line)
    assert (entry['stage'], entry['result'], entry['duration']) == (
        'snap-refresh',
        'interrupted',
        None,
    )


def test_a_missing_journal_says_so(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]):
    assert main(['journal', str(tmp_path / 'nope.jsonl')]) == 2
    assert 'no journal at' in capsys.readouterr().err


def test_runs_as_a_module_without_importing_ops(journal: Journal):
    probe = (
        'import runpy, sys; sys.argv = ["x", "journal", sys.argv[1]]\n'
        'try:\n    runpy.run_module("charm_upgrade", run_name="__main__")\n'
        'except SystemExit as e:\n    assert e.code == 0, e.code\n'
        'heavy = ("ops", "charm_refresh", "http.client", "httpx")\n'
        'heavy = [m for m in heavy if m in sys.modules]\n'
        'print("HEAVY", heavy)\n'
    )
    out = subprocess.run(
        [sys.executable, '-c', probe, str(journal.path)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    ).stdout
    assert 'series-prepare' in out
    assert out.splitlines()[-1] == 'HEAVY []'


def test_a_directory_at_the_path_is_an_error_message_not_a_traceback(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / 'journal.jsonl'
    path.mkdir()
    assert main(['journal', str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f'error: cannot read {path}: Is a directory\n'
    assert captured.out == ''


def test_a_torn_line_is_a_warning_and_the_rest_is_printed(
    journal: Journal, capsys: pytest.CaptureFixture[str]
):
    with journal.path.open('a') as f:
        f.write('{"v": 1, "st')
    journal.write('health', 'start')

    assert main(['journal', str(journal.path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == f'warning: skipping unreadable line 6 of {journal.path}\n'
    assert captured.out.splitlines()[-1].split()[2] == 'health'


SNAPD_ERROR = (
    'ChangeFailed: snapd change 42 of myapp ended Error: cannot perform the following tasks:\n'
    '- Start snap "myapp" (3) services ([start snap.myapp.daemon.service] failed with exit '
    'status 1: Job for snap.myapp.daemon.service failed.\n'
    'See "systemctl status snap.myapp.daemon.service" and "journalctl -xeu '
    'snap.myapp.daemon.service" for details.\n)'
)


def test_a_multi_line_error_keeps_the_table_one_row_per_stage_and_the_json_whole(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
):
    journal = Journal(tmp_path / 'journal.jsonl')
    upgrade = 'series upgrade ubuntu@22.04 -> ubuntu@24.04'
    journal.write('services-up', 'start', details={'group': 'snap:myapp', 'upgrade': upgrade})
    journal.write('services-up', 'failed', duration=0.5, error=SNAPD_ERROR)
    journal.write('snap-refresh', 'failed', duration=1.0, error='SnapdTimeout: late\n')

    assert main(['journal', str(journal.path)]) == 0
    rows = capsys.readouterr().out.splitlines()

    assert len(rows) == 3  # the header and one row per stage
    assert f'services-up snap:myapp ({upgrade})' in rows[1]
    assert rows[1].endswith(
        'failed: ChangeFailed: snapd change 42 of myapp ended Error: cannot perform the '
        'following tasks: / - Start snap "myapp" (3) services ([start '
        'snap.myapp.daemon.service] failed with exit status 1: Job for '
        'snap.myapp.daemon.service failed. / See "systemctl status snap.myapp.daemon.service" '
        'and "journalctl -xeu snap.myapp.daemon.service" for details. / )'
    )
    assert rows[2].endswith('failed: SnapdTimeout: late')

    assert main(['journal', str(journal.path), '--json']) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first['error'] == SNAPD_ERROR  # the record keeps the full text
