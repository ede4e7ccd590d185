# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from charm_upgrade import Journal

if TYPE_CHECKING:
    import pathlib


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


def test_a_torn_line_is_skipped_with_a_warning(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / 'j.jsonl'
    journal = Journal(path)
    journal.write('a', 'start')
    with path.open('a') as f:
        f.write('{"v": 1, "stage": "b", "ev')  # a crash mid-line
    journal.write('c', 'start')
    with caplog.at_level(logging.WARNING):
        records = journal.read()
    assert [r['stage'] for r in records] == ['a']
    assert 'Skipping unreadable line 2' in caplog.text


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
