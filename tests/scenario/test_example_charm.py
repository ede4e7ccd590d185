# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The example charm (examples/charm) under ops.testing, with the real charm-refresh.

Every test goes through charm_upgrade.testing: RollingRefresh gives each unit its own fake
snapd, stand-in systemctl, os-release file and charm directory, and answers charm-refresh's
hook tools from the ops.testing State. Statuses and action results are charm-refresh's exact
texts (the design page, "What charm-refresh asks of a machine charm").
"""

from __future__ import annotations

import json
import pathlib
from typing import TYPE_CHECKING, Any

import charm_refresh
import pytest
import yaml
from ops import testing

from charm_upgrade import SnapRefreshError
from charm_upgrade.testing import (
    CHARM_REFRESH_META,
    FakeSnapd,
    RefreshHarness,
    RefreshVersions,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

import _demo
from _demo import CHARM_DIR, SNAP, App
from charm import DemoRefresh, UpgradeDemoCharm

ACTIVE = testing.ActiveStatus()
ROLLBACK_1 = 'To rollback, `juju refresh --revision 1`'
PAUSED_AT_1 = (
    f'Refreshing. Check units >=2 are healthy & run `resume-refresh` on unit 1. {ROLLBACK_1}'
)
RUNNING_NEW = 'Demo 1.1 running; Snap revision 3; Charm revision 2'
RUNNING_OLD = 'Demo 1.0 running; Snap revision 2 (outdated); Charm revision 2'
SERVING = {'server': (True, True)}
STOPPED = {'server': (False, False)}


def deploy(units: int, **kwargs: Any) -> App:
    return _demo.deploy(units, revisions=('3', '4'), **kwargs)


@pytest.fixture
def make_app() -> Iterator[Callable[..., App]]:
    made: list[App] = []

    def make(units: int = 3, **kwargs: Any) -> App:
        made.append(deploy(units, **kwargs))
        made[-1].install()
        return made[-1]

    yield make
    for app in made:
        app.close()


@pytest.fixture
def app3(make_app: Callable[..., App]) -> App:
    return make_app(3)


def journal(app: App, unit: int) -> list[dict[str, Any]]:
    path = app.harness(unit).state_dir / 'journal.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()]


def stages(app: App, unit: int) -> list[str]:
    return [f'{r["stage"]} {r["event"]}' for r in journal(app, unit)]


def contains(declared: object, wanted: object) -> bool:
    """Whether ``declared`` has every key and value of ``wanted`` (descriptions may add)."""
    if isinstance(wanted, dict):
        return isinstance(declared, dict) and all(
            key in declared and contains(declared[key], value) for key, value in wanted.items()
        )
    return declared == wanted


def juju_log(app: App, unit: int) -> list[str]:
    return [line.message for line in app.harness(unit).ctx.juju_log]


# What the charm declares


def test_charmcraft_yaml_declares_what_charm_refresh_requires():
    meta = yaml.safe_load((CHARM_DIR / 'charmcraft.yaml').read_text())

    assert meta['peers']['refresh-v-three'] == {'interface': 'refresh'}
    option = meta['config']['options']['pause-after-unit-refresh']
    assert (option['type'], option['default']) == ('string', 'first')
    actions = meta['actions']
    for name in ('pre-refresh-check', 'force-refresh-start', 'resume-refresh'):
        assert actions[name]['additionalProperties'] is False, name
    assert 'params' not in actions['pre-refresh-check']
    # Machines read all three (charm_refresh._main, _ForceRefreshStartAction), by key.
    force = actions['force-refresh-start']['params']
    assert {k: (v['type'], v['default']) for k, v in force.items()} == {
        'check-compatibility': ('boolean', True),
        'run-pre-refresh-checks': ('boolean', True),
        'check-workload-container': ('boolean', True),
    }
    resume = actions['resume-refresh']['params']
    assert {k: (v['type'], v['default']) for k, v in resume.items()} == {
        'check-health-of-refreshed-units': ('boolean', True)
    }
    # The example charm declares everything in the kit's copy of what charm-refresh needs.
    assert contains(meta, CHARM_REFRESH_META)
    versions = RefreshVersions.load(CHARM_DIR / 'refresh_versions.toml', charm='1/1.0.0')
    assert versions.snap == SNAP
    assert set(versions.revisions) == {'x86_64', 'aarch64'}


# Install


def test_install_installs_the_pinned_revision_from_the_store(tmp_path: pathlib.Path):
    with FakeSnapd(change_duration=0.005) as snapd:
        snapd.add_store_snap(SNAP, revisions=['2', '3'], services=['server'])
        versions = RefreshVersions.load(CHARM_DIR / 'refresh_versions.toml', charm='1/1.0.0')
        harness = RefreshHarness(UpgradeDemoCharm, versions=versions, charm_dir=tmp_path / 'u0')
        state = testing.State(leader=True, relations=[testing.PeerRelation('refresh-v-three')])

        state = harness.run(harness.ctx.on.install(), state)

        assert snapd.revision(SNAP) == '2'
        assert snapd.service_state(SNAP) == SERVING
        assert snapd.hold(SNAP)  # automatic refreshes held
        records = (harness.state_dir / 'journal.jsonl').read_text()
        events = [f'{r["stage"]} {r["event"]}' for r in map(json.loads, records.splitlines())]
        assert events[:2] == ['snap-install start', 'snap-install ended']
        assert state.unit_status == ACTIVE
        assert state.app_status == ACTIVE
        assert state.workload_version == '1.0'
        harness.close()


def test_install_three_units(app3: App):
    for unit in app3.units:
        assert app3.unit_status(unit) == ACTIVE
        assert app3.revision(unit) == '2'
        assert app3.snapd(unit).service_state(SNAP) == SERVING
        assert testing.WaitingStatus('Waiting for the peer relation') in (
            app3.harness(unit).ctx.unit_status_history
        )  # charm-refresh raised PeerRelationNotReady until every unit joined
    assert app3.app_status == ACTIVE
    assert app3.app_data['original_charm_version'] == '"1/1.0.0"'
    assert all(record.error is None for record in app3.events)

    check = app3.run_action(0, 'pre-refresh-check')
    assert check.results == {
        'result': (
            'Charm is ready for refresh. For refresh instructions, see '
            'https://charmhub.io/upgrade-demo/docs/refresh/1/1.0.0\n\n'
            'After the refresh has started, use this command to rollback:\n'
            '`juju refresh upgrade-demo --revision 1`\n\n'
            'The refresh will pause for your manual confirmation after the first unit '
            'refreshes. To change this, set the `pause-after-unit-refresh` config option. '
            'Run `juju config upgrade-demo` for more information'
        )
    }


# Refreshes


def test_single_unit_refresh(make_app: Callable[..., App]):
    app = make_app(1)

    app.refresh('1/1.1.0', '3', workload='1.1')

    assert app.refresh_order == [0]
    assert app.revision(0) == '3'
    assert app.snapd(0).service_state(SNAP) == SERVING
    assert testing.MaintenanceStatus(f'Refreshing. {ROLLBACK_1}') in (
        app.harness(0).ctx.app_status_history
    )
    assert app.app_status == ACTIVE
    assert app.unit_status(0) == ACTIVE
    assert app.unit_state(0).workload_version == '1.1'
    refresh = [r for r in journal(app, 0) if r['stage'] == 'snap-refresh']
    assert [r['event'] for r in refresh] == ['start', 'ended']
    details = refresh[-1]['details']
    assert (details['revision_before'], details['revision_after']) == ('2', '3')
    assert details['downtime'] >= details['refresh'] > 0


def test_three_units_pause_after_first_then_resume(app3: App):
    assert app3.unit_state(0).config.get('pause-after-unit-refresh', 'first') == 'first'

    app3.refresh('1/1.1.0', '3', workload='1.1')

    assert app3.refresh_order == [2]
    assert app3.app_status == testing.BlockedStatus(PAUSED_AT_1)
    assert app3.unit_status(2) == testing.ActiveStatus(RUNNING_NEW)
    for unit in (1, 0):
        assert app3.unit_status(unit) == testing.ActiveStatus(RUNNING_OLD)
        assert app3.revision(unit) == '2'
        assert app3.snapd(unit).service_state(SNAP) == SERVING
    assert app3.unit_data(2)['installed_snap_revision'] == '"3"'

    wrong = app3.run_action(0, 'resume-refresh')
    assert wrong.failure == 'Must run action on unit 1'

    resumed = app3.run_action(1, 'resume-refresh')

    assert resumed.results == {'result': 'Refresh resumed. Unit 1 has refreshed'}
    assert resumed.logs == ['Refresh resumed. Refreshing unit 1']
    assert app3.refresh_order == [2, 1, 0]  # 'first': unit 0 followed on its own
    assert [app3.revision(unit) for unit in app3.units] == ['3', '3', '3']
    assert app3.app_status == ACTIVE
    assert all(app3.unit_status(unit) == ACTIVE for unit in app3.units)
    assert (
        testing.MaintenanceStatus(
            'Refreshing. To pause refresh, run '
            '`juju config upgrade-demo pause-after-unit-refresh=all`'
        )
        in app3.harness(0).ctx.app_status_history
    )


def test_failed_pre_refresh_check_then_force_refresh_start(
    app3: App, monkeypatch: pytest.MonkeyPatch
):
    def backup_running() -> None:
        raise charm_refresh.PrecheckFailed('Backup in progress')

    monkeypatch.setattr(
        DemoRefresh, 'run_pre_refresh_checks_after_1_unit_refreshed', staticmethod(backup_running)
    )
    check = app3.run_action(0, 'pre-refresh-check')
    assert check.failure == (
        'Charm is not ready for refresh. Pre-refresh check failed: Backup in progress'
    )

    app3.refresh('1/1.1.0', '3', workload='1.1')

    assert app3.refresh_order == []
    assert app3.unit_status(2) == testing.BlockedStatus(
        'Rollback with `juju refresh`. Pre-refresh check failed: Backup in progress'
    )
    nothing_false = app3.run_action(2, 'force-refresh-start')
    assert nothing_false.failure == (
        'Must run with at least one of `check-compatibility`, `run-pre-refresh-checks`, or '
        '`check-workload-container` parameters `=false`'
    )
    wrong = app3.run_action(1, 'force-refresh-start', {'run-pre-refresh-checks': False})
    assert wrong.failure == 'Must run action on unit 2'

    forced = app3.run_action(2, 'force-refresh-start', {'run-pre-refresh-checks': False})

    assert forced.results == {'result': 'Refreshed unit 2'}
    assert 'Skipping pre-refresh checks' in forced.logs
    assert forced.logs[-1] == 'Refreshing unit 2'
    assert app3.refresh_order == [2]
    assert app3.revision(2) == '3'
    assert app3.unit_status(2) == testing.ActiveStatus(RUNNING_NEW)
    assert app3.app_status == testing.BlockedStatus(PAUSED_AT_1)


def test_refresh_failure_then_rollback(app3: App):
    app3.snapd(2).fail_next_refresh()  # snapd undoes it: revision 2 again

    with pytest.raises(testing.errors.UncaughtCharmError) as failed:
        app3.refresh('1/1.1.0', '3', workload='1.1')

    error = failed.value.__cause__
    assert isinstance(error, SnapRefreshError)
    assert (error.revision_before, error.revision_requested, error.revision_after) == (
        '2',
        '3',
        '2',
    )
    assert app3.failing(2) == 'upgrade_charm'
    assert app3.revision(2) == '2'
    assert app3.snapd(2).service_state(SNAP) == SERVING  # started again after the failure
    # The failure is converged before it is raised: the services are back as they were.
    assert stages(app3, 2)[-4:] == [
        'snap-refresh start',
        'refresh-finish start',
        'refresh-finish ended',
        'snap-refresh failed',
    ]
    assert [app3.revision(unit) for unit in (1, 0)] == ['2', '2']

    # juju refresh --revision 1. Juju upgrades no unit in error: it retries the failed hook
    # (old code: snap revision 3) first, then runs the rollback's upgrade-charm.
    app3.refresh('1/1.0.0', '2', workload='1.0', charm_revision=1)

    assert app3.failing(2) is None
    assert app3.refresh_order == [2, 2]
    assert [app3.revision(unit) for unit in app3.units] == ['2', '2', '2']
    assert all(app3.snapd(unit).service_state(SNAP) == SERVING for unit in app3.units)
    assert app3.app_status == ACTIVE
    assert all(app3.unit_status(unit) == ACTIVE for unit in app3.units)
    assert app3.app_data['original_charm_revision'] == '"ch:amd64/jammy/upgrade-demo-1"'
    assert (
        'Refreshed Demo on this unit from 1.1 (snap revision 3) to 1.0 (snap revision 2) '
        'because this unit is the first unit to refresh'
    ) in juju_log(app3, 2)


def test_refresh_failure_then_forced_rollback(app3: App):
    app3.snapd(2).fail_next_refresh()
    with pytest.raises(testing.errors.UncaughtCharmError):
        app3.refresh('1/1.1.0', '3', workload='1.1')

    # juju refresh --revision 1 --force-units: the failed hook is retried with the old code.
    app3.refresh('1/1.0.0', '2', workload='1.0', charm_revision=1, force_units=True)

    assert app3.refresh_order == []  # no snap ever changed
    assert [app3.revision(unit) for unit in app3.units] == ['2', '2', '2']
    assert app3.app_status == ACTIVE
    assert all(app3.unit_status(unit) == ACTIVE for unit in app3.units)


# Series upgrade


def test_series_upgrade_on_one_unit_while_the_others_serve(app3: App):
    assert [app3.base(unit) for unit in app3.units] == ['ubuntu@22.04'] * 3

    app3.prepare_series_upgrade(1, 'ubuntu@24.04')

    assert app3.series_upgrading == {1: 'ubuntu@24.04'}
    assert app3.unit_status(1) == testing.BlockedStatus(
        'Services stopped and disabled for the OS upgrade; when it is done, '
        'run `juju upgrade-machine 1 complete`'
    )
    assert app3.snapd(1).service_state(SNAP) == STOPPED
    assert app3.systemd(1).held() == [f'snap.{SNAP}.server.service']
    for unit in (0, 2):
        assert app3.snapd(unit).service_state(SNAP) == SERVING
        assert app3.systemd(unit).held() == []
        assert app3.unit_status(unit) == ACTIVE
    prepared = stages(app3, 1)
    assert (prepared[0], prepared[-1]) == ('series-prepare start', 'series-prepare ended')
    assert 'services-down ended' in prepared
    prepare = journal(app3, 1)[0]
    assert prepare['details']['target_base'] == 'ubuntu@24.04'

    # While the machine upgrades, Juju runs nothing on unit 1; the others go on.
    app3.update_status()
    app3.update_status()
    assert app3.pending == {0: [], 1: ['update_status'], 2: []}
    with pytest.raises(RuntimeError, match='prepared for a series upgrade'):
        app3.run_action(1, 'upgrade-journal')
    for unit in (0, 2):
        assert app3.snapd(unit).service_state(SNAP) == SERVING

    app3.complete_series_upgrade(1)

    assert app3.series_upgrading == {}
    assert app3.base(1) == 'ubuntu@24.04'
    assert app3.snapd(1).service_state(SNAP) == SERVING
    assert app3.systemd(1).held() == []
    assert app3.unit_status(1) == ACTIVE
    assert app3.pending == {0: [], 1: [], 2: []}
    assert [r.event for r in app3.events if r.unit == 1][-2:] == [
        'post_series_upgrade',
        'update_status',
    ]
    assert 'series-migrate ended' in stages(app3, 1)
    assert stages(app3, 1)[-2:] == ['services-up ended', 'series-complete ended']


def test_juju_refresh_during_a_series_upgrade_reaches_the_unit_after_complete(app3: App):
    app3.prepare_series_upgrade(0, 'ubuntu@24.04')

    app3.refresh('1/1.1.0', '3', workload='1.1')
    app3.run_action(1, 'resume-refresh')

    assert app3.refresh_order == [2, 1]  # unit 0 is next, but runs nothing
    assert app3.revision(0) == '2'
    assert app3.harness(0).charm_revision == 1  # Juju has not even fetched the charm
    assert app3.snapd(0).service_state(SNAP) == STOPPED

    app3.complete_series_upgrade(0)

    events = [r.event for r in app3.events if r.unit == 0]
    after = events[events.index('post_series_upgrade') :]
    assert after[:3] == ['post_series_upgrade', 'upgrade_charm', 'config_changed']
    assert app3.refresh_order == [2, 1, 0]
    assert [app3.revision(unit) for unit in app3.units] == ['3', '3', '3']
    assert app3.snapd(0).service_state(SNAP) == SERVING
    assert app3.app_status == ACTIVE
    assert all(app3.unit_status(unit) == ACTIVE for unit in app3.units)


# The charm's own actions


def test_upgrade_journal_action(make_app: Callable[..., App]):
    app = make_app(1)
    app.refresh('1/1.1.0', '3', workload='1.1')

    everything = app.run_action(0, 'upgrade-journal')
    last = app.run_action(0, 'upgrade-journal', {'last': 1})

    lines = everything.results['records'].splitlines()
    stages_shown = [line.split(' ', 1)[1].split(' (')[0] for line in lines]
    start = stages_shown.index('snap-refresh start')
    assert 'snap-refresh ended' in stages_shown[start:]
    ended = lines[start + stages_shown[start:].index('snap-refresh ended')]
    assert ended.endswith(' s)')  # with its duration
    assert len(lines) == len(journal(app, 0))
    assert last.results['records'] == lines[-1]
    none = app.run_action(0, 'upgrade-journal', {'last': 0})
    assert none.results == {'records': ''}


def test_preview_upgrade_action(app3: App):
    preview = app3.run_action(0, 'preview-upgrade', {'base': 'ubuntu@24.04'})

    text = preview.results['preview']
    assert text.splitlines()[:3] == [
        'series-prepare: stop the services and hold them down until complete',
        'base: ubuntu@22.04 -> ubuntu@24.04',
        f'  {SNAP}.server (running, enabled): stop, disable, hold',
    ]
    data = json.loads(preview.results['json'])
    assert (data['step'], data['current_base'], data['target_base']) == (
        'series-prepare',
        'ubuntu@22.04',
        'ubuntu@24.04',
    )
    assert app3.snapd(0).service_state(SNAP) == SERVING  # a preview changes nothing


def test_unhealthy_unit_holds_the_refresh_until_healthy(
    app3: App, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(DemoRefresh, 'workload_healthy', lambda self: False)

    app3.refresh('1/1.1.0', '3', workload='1.1')

    assert app3.refresh_order == [2]
    assert app3.unit_status(2) == testing.WaitingStatus(
        'Snap refresh: Demo not healthy; next unit waits'
    )
    refused = app3.run_action(1, 'resume-refresh')
    assert refused.failure == 'Unit 2 is unhealthy. Refresh will not resume.'
    assert app3.refresh_order == [2]

    monkeypatch.undo()
    app3.update_status()  # the every-event retry (docs step 25) lets unit 1 go next

    assert app3.unit_status(2) == testing.ActiveStatus(RUNNING_NEW)
    assert app3.app_status == testing.BlockedStatus(PAUSED_AT_1)
    resumed = app3.run_action(1, 'resume-refresh')
    assert resumed.results == {'result': 'Refresh resumed. Unit 1 has refreshed'}
    assert app3.refresh_order == [2, 1, 0]
