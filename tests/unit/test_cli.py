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
