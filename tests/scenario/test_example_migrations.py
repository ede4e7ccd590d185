# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The example charm's migrations, journal timeline and refresh preview, under ops.testing."""

from __future__ import annotations

import json
import pathlib
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

import _demo
from _demo import App

DATA = '20260301-data-format'


def deploy(units: int) -> App:
    app = _demo.deploy(units)
    app.install()
    return app


@pytest.fixture
def app() -> Iterator[App]:
    app = deploy(1)
    yield app
    app.close()


def state_file(app: App, name: str, unit: int = 0) -> pathlib.Path:
    return app.harness(unit).state_dir / name


def stages(app: App, unit: int = 0) -> list[str]:
    path = state_file(app, 'journal.jsonl', unit)
    return [f'{r["stage"]} {r["event"]}' for r in map(json.loads, path.read_text().splitlines())]


def test_install_records_both_migrations_as_applied(app: App):
    record = json.loads(state_file(app, 'migrations.json').read_text())

    assert {i: (e['how'], e['new']) for i, e in record['applied'].items()} == {
        '20260110-series-config': ('installed', 'ubuntu@22.04'),
        DATA: ('installed', '2'),
    }


def test_units_older_than_the_migrations_run_up_at_refresh_and_down_at_rollback():
    app = deploy(3)
    try:
        app.make_migration_pending()  # every unit deployed before the charm had migrations

        app.refresh('1/1.1.0', '3', workload='1.1')  # unit 2 refreshes, then it pauses

        assert app.refresh_order == [2]
        assert stages(app, 2).index(f'migration:{DATA} ended') < stages(app, 2).index(
            'snap-refresh ended'
        )
        applied = json.loads(state_file(app, 'migrations.json', 2).read_text())['applied']
        assert applied[DATA]['new'] == '3'
        journal = state_file(app, 'journal.jsonl', 2).read_text().splitlines()
        (ended,) = [
            r
            for r in map(json.loads, journal)
            if (r['stage'], r['event']) == (f'migration:{DATA}', 'ended')
        ]
        # The declared data was backed up first: unit 2's own (absent: it wrote none).
        data = app.machine_path(2, '/var/snap/upgrade-demo/common/data')
        assert ended['details']['backup']['absent'] == [str(data)]

        app.refresh('1/1.0.0', '2', workload='1.0', charm_revision=1)  # the rollback

        assert app.revision(2) == '2'
        assert stages(app, 2).count(f'migration:{DATA}:down ended') == 1
        applied = json.loads(state_file(app, 'migrations.json', 2).read_text())['applied']
        assert DATA not in applied
    finally:
        app.close()


def test_upgrade_journal_timeline(app: App):
    app.refresh('1/1.1.0', '3', workload='1.1')

    result: dict[str, Any] = app.run_action(0, 'upgrade-journal', {'timeline': True}).results
    lines = result['timeline'].splitlines()

    assert lines[0].split() == ['START', '(UTC)', 'STAGE', 'DURATION', 'RESULT']
    rows = {line.split()[2]: line.split()[-1] for line in lines[1:]}
    assert rows['snap-refresh'] == 'ended'
    assert rows['migrations'] == 'ended'
    assert rows['health'] == 'ended'
    last = app.run_action(0, 'upgrade-journal', {'timeline': True, 'last': 1}).results
    assert len(last['timeline'].splitlines()) == 2


def test_preview_upgrade_of_a_refresh(app: App):
    preview = app.run_action(0, 'preview-upgrade', {'refresh': True})

    data = json.loads(preview.results['json'])
    assert data['step'] == 'snap-refresh'
    assert (data['revision_from'], data['revision_to']) == ('2', '2')
    assert data['disruption'] == 'none'
    assert 'snap revision: 2 -> 2' in preview.results['preview']
