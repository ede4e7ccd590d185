# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The real charm_refresh.Machines under ops.testing: RefreshHarness and RollingRefresh."""

from __future__ import annotations

import dataclasses
import importlib
import os
import pathlib
import platform
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import charm_refresh
import ops
import pytest
from ops import testing

from charm_upgrade import _bases
from charm_upgrade.snapd import Snapd
from charm_upgrade.testing._fake_snapd import FakeSnapd
from charm_upgrade.testing._refresh_harness import (
    CHARM_REFRESH_META,
    CharmT,
    RefreshHarness,
    RefreshVersions,
)
from charm_upgrade.testing._rolling import RollingRefresh

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SNAP = 'tiny'
META: dict[str, Any] = {'name': 'tiny', **CHARM_REFRESH_META}
V1 = RefreshVersions(
    charm='1/1.0.0', workload='1.0', snap=SNAP, revisions={platform.machine(): '10'}
)

ROLLBACK_6 = 'To rollback, `juju refresh --revision 6`'
PAUSED_AT_1 = (
    f'Refreshing. Check units >=2 are healthy & run `resume-refresh` on unit 1. {ROLLBACK_6}'
)


@dataclasses.dataclass(eq=False)
class TinyRefresh(charm_refresh.CharmSpecificMachines):
    """The smallest honest refresh_snap: refresh, wait, record, allow the next unit."""

    precheck_failure: ClassVar[str | None] = None

    @staticmethod
    def run_pre_refresh_checks_after_1_unit_refreshed() -> None:
        if TinyRefresh.precheck_failure:
            raise charm_refresh.PrecheckFailed(TinyRefresh.precheck_failure)

    @classmethod
    def is_compatible(
        cls,
        *,
        old_charm_version: charm_refresh.CharmVersion,
        new_charm_version: charm_refresh.CharmVersion,
        old_workload_version: str,
        new_workload_version: str,
    ) -> bool:
        return super().is_compatible(
            old_charm_version=old_charm_version,
            new_charm_version=new_charm_version,
            old_workload_version=old_workload_version,
            new_workload_version=new_workload_version,
        )

    def refresh_snap(
        self, *, snap_name: str, snap_revision: str, refresh: charm_refresh.Machines
    ) -> None:
        snapd = Snapd(change_timeout=5)
        change = snapd.wait_change(snapd.refresh(snap_name, snap_revision))
        refresh.update_snap_revision()
        if change.status != 'Done':
            raise RuntimeError(f'snap refresh failed: {change.err}')
        refresh.next_unit_allowed_to_refresh = True


class TinyCharm(ops.CharmBase):
    """charm-refresh's statuses in every event, and its own otherwise."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.refresh: charm_refresh.Machines | None = None
        try:
            self.refresh = charm_refresh.Machines(
                TinyRefresh(workload_name='Tiny', charm_name='tiny')
            )
        except charm_refresh.PeerRelationNotReady:
            self.unit.status = ops.WaitingStatus('Waiting for peers')
            return
        self.unit.status = (
            self.refresh.unit_status_higher_priority
            or self.refresh.unit_status_lower_priority()
            or ops.ActiveStatus()
        )
        if self.unit.is_leader():
            self.app.status = self.refresh.app_status_higher_priority or ops.ActiveStatus()


@pytest.fixture
def snapd() -> Iterator[FakeSnapd]:
    with FakeSnapd(change_duration=0.005) as fake:
        fake.add_snap(SNAP, revision='10', revisions=['11'])
        yield fake


@pytest.fixture
def make_harness(
    tmp_path: pathlib.Path, snapd: FakeSnapd
) -> Iterator[Callable[..., RefreshHarness[TinyCharm]]]:
    made: list[RefreshHarness[TinyCharm]] = []

    def make(name: str = 'unit-0', **kwargs: Any) -> RefreshHarness[TinyCharm]:
        made.append(
            RefreshHarness(TinyCharm, meta=META, versions=V1, charm_dir=tmp_path / name, **kwargs)
        )
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def harness(make_harness: Callable[..., RefreshHarness[TinyCharm]]) -> RefreshHarness[TinyCharm]:
    return make_harness(charm_revision=6)


def rolling(units: int, charm: type[CharmT] = TinyCharm, **kwargs: Any) -> RollingRefresh[CharmT]:
    return RollingRefresh(
        charm,
        units=units,
        snap=SNAP,
        revision='10',
        revisions=['11'],
        charm_version='1/1.0.0',
        meta=META,
        charm_revision=6,
        change_duration=0.005,
        **kwargs,
    )


@pytest.fixture
def app3() -> Iterator[RollingRefresh[TinyCharm]]:
    with rolling(3) as app:
        app.install()
        yield app


def installed(harness: RefreshHarness[TinyCharm]) -> testing.State:
    state = testing.State(leader=True, relations=[testing.PeerRelation('refresh-v-three')])
    return harness.run(harness.ctx.on.install(), state)


# RefreshHarness: one unit


def test_harness_prepares_the_charm_directory(harness: RefreshHarness[TinyCharm]):
    charm_dir = harness.charm_dir
    assert (charm_dir / '.juju-charm').read_text() == 'ch:amd64/jammy/tiny-6\n'
    assert (charm_dir / '.juju-charm').stat().st_mtime == harness.mtime
    assert RefreshVersions.load(charm_dir / 'refresh_versions.toml', charm='1/1.0.0') == V1
    assert '\ncharm = "1/1.0.0"\n' in (charm_dir / 'refresh_versions.toml').read_text()


def test_install_single_unit_records_original_versions(harness: RefreshHarness[TinyCharm]):
    state = installed(harness)

    assert state.unit_status == testing.ActiveStatus()
    assert state.app_status == testing.ActiveStatus()
    assert state.workload_version == '1.0'  # charm-refresh's application-version-set
    app_data = state.get_relations('refresh-v-three')[0].local_app_data
    assert app_data['original_charm_version'] == '"1/1.0.0"'
    assert app_data['original_workload_container_version'] == '"10"'
    assert app_data['original_charm_revision'] == '"ch:amd64/jammy/tiny-6"'
    calls = harness.last_calls
    assert calls['goal-state'] == 1 and calls['application-version-set'] == 1
    assert harness.calls[-1].event == 'install' and harness.calls[-1].total == sum(calls.values())
    assert (harness.charm_dir / '.charm_refresh_v3').is_dir()


def test_pre_refresh_check_on_the_leader(harness: RefreshHarness[TinyCharm]):
    state = installed(harness)

    harness.run(harness.ctx.on.action('pre-refresh-check'), state)

    assert harness.ctx.action_results == {
        'result': (
            'Charm is ready for refresh. For refresh instructions, see '
            'https://charmhub.io/tiny/docs/refresh/1/1.0.0\n\n'
            'After the refresh has started, use this command to rollback:\n'
            '`juju refresh tiny --revision 6`\n\n'
            'The refresh will pause for your manual confirmation after the first unit '
            'refreshes. To change this, set the `pause-after-unit-refresh` config option. '
            'Run `juju config tiny` for more information'
        )
    }


def test_single_unit_refresh(harness: RefreshHarness[TinyCharm], snapd: FakeSnapd):
    state = installed(harness)

    harness.simulate_juju_refresh('1/1.1.0', '11', workload='1.1')
    assert harness.upgrade_charm_pending
    assert (harness.charm_dir / '.juju-charm').read_text() == 'ch:amd64/jammy/tiny-7\n'
    state = harness.upgrade_charm(state)

    assert snapd.revision(SNAP) == '11'
    assert not harness.upgrade_charm_pending
    # While the snap refreshed the app status said so; the refresh is over by the end.
    assert testing.MaintenanceStatus(f'Refreshing. {ROLLBACK_6}') in harness.ctx.app_status_history
    assert state.app_status == testing.ActiveStatus()
    assert state.unit_status == testing.ActiveStatus()
    assert state.workload_version == '1.1'
    logs = [line.message for line in harness.ctx.juju_log]
    assert (
        'Refreshed Tiny on this unit from 1.0 (snap revision 10) to 1.1 (snap revision 11) '
        'because this unit is the first unit to refresh'
    ) in logs
    app_data = state.get_relations('refresh-v-three')[0].local_app_data
    assert app_data['original_charm_version'] == '"1/1.1.0"'
    assert harness.last_calls['status-set'] >= 1


def test_refresh_without_upgrade_charm_waits(harness: RefreshHarness[TinyCharm]):
    state = installed(harness)
    harness.simulate_juju_refresh('1/1.1.0', '11')

    # Juju skipped upgrade-charm (LP#2068500): charm-refresh waits for it.
    state = harness.run(harness.ctx.on.update_status(), state)

    assert state.unit_status == testing.MaintenanceStatus(
        'Waiting for Juju upgrade-charm or config-changed event. See `juju debug-log`'
    )
    assert harness.upgrade_charm_pending
    state = harness.run(harness.ctx.on.config_changed(), state)
    assert state.unit_status == testing.ActiveStatus()


def test_local_charm_rollback_hint(make_harness: Callable[..., RefreshHarness[TinyCharm]]):
    harness = make_harness('local', charmhub=False)
    assert (harness.charm_dir / '.juju-charm').read_text() == 'local:tiny-1\n'
    state = installed(harness)
    harness.simulate_juju_refresh('1/1.1.0', '11')
    harness.upgrade_charm(state)
    assert (
        testing.MaintenanceStatus('Refreshing. To rollback, `juju refresh --revision None`')
        in harness.ctx.app_status_history
    )


def test_action_defaults_come_from_the_charm(harness: RefreshHarness[TinyCharm]):
    state = installed(harness)
    # No refresh in progress: the action reads its parameters, then fails.
    with pytest.raises(testing.ActionFailed) as failed:
        harness.run(harness.ctx.on.action('resume-refresh'), state)
    assert failed.value.message == 'No refresh in progress'
    assert harness.last_calls['action-get'] == 1


def test_patched_restores_everything(harness: RefreshHarness[TinyCharm], snapd: FakeSnapd):
    main = importlib.import_module('charm_._main')
    refresh_main = importlib.import_module('charm_refresh._main')
    before = (main.subprocess, refresh_main.httpx, os.getcwd())
    principal = os.environ.get('JUJU_PRINCIPAL_UNIT')

    with pytest.raises(ZeroDivisionError), harness.patched():
        assert os.getcwd() == str(harness.charm_dir)
        assert os.environ['JUJU_PRINCIPAL_UNIT'] == ''
        assert os.environ['CHARM_UPGRADE_SNAPD_SOCKET'] == snapd.socket_path
        with pytest.raises(RuntimeError, match='outside a RefreshHarness run'):
            main.subprocess.run(['is-leader', '--format', 'json'])
        with pytest.raises(FileNotFoundError):
            main.subprocess.run(['leader-get'])
        _ = 1 / 0

    after = (main.subprocess, refresh_main.httpx, os.getcwd())
    assert after == before
    assert os.environ.get('JUJU_PRINCIPAL_UNIT') == principal


def test_hook_tool_errors_are_juju_like(make_harness: Callable[..., RefreshHarness[TinyCharm]]):
    harness = make_harness()
    state = testing.State(leader=False, relations=[testing.PeerRelation('refresh-v-three')])
    state = harness.run(harness.ctx.on.install(), state)  # a non-leader: no app status
    assert state.app_status == testing.UnknownStatus()
    assert harness.last_calls['status-set'] == 0

    # The manager form runs the charm's __init__ on entry: patch around it.
    with harness.patched(), harness.ctx(harness.ctx.on.update_status(), state) as manager:
        tools = importlib.import_module('charm_._status').subprocess
        denied = tools.run(['status-get', '--application', '--format', 'json'])
        assert denied.returncode == 1
        with pytest.raises(subprocess.CalledProcessError) as error:
            tools.run(['status-set', '--application', 'active', ''], check=True, text=True)
        assert 'not the leader' in error.value.stderr
        goal = tools.run(['goal-state', '--format', 'json'], capture_output=True, text=True)
        assert goal.stdout.startswith('{"units": {"tiny/0": {"status": "active"')
        manager.run()


def test_importing_the_kit_does_not_import_pytest():
    code = (
        'import sys, charm_upgrade.testing._refresh_harness, charm_upgrade.testing._rolling;'
        'sys.exit("pytest" in sys.modules)'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


# RollingRefresh: three units, one at a time


def test_install_three_units():
    with rolling(3) as app:
        app.install()

        for unit in app.units:
            assert app.unit_status(unit) == testing.ActiveStatus()
            assert (
                app.harness(unit).ctx.unit_status_history.count(
                    testing.WaitingStatus('Waiting for peers')
                )
                >= 1
            )  # charm-refresh raised PeerRelationNotReady until every unit joined
        assert app.app_status == testing.ActiveStatus()
        assert app.app_data['original_charm_version'] == '"1/1.0.0"'
        assert app.unit_data(2)['installed_snap_revision'] == '"10"'
        assert all(record.error is None for record in app.events)
        assert [r.event for r in app.events if r.unit == 0][:3] == [
            'install',
            'refresh_v_three_relation_created',
            'leader_elected',
        ]
        assert app.hook_tool_calls == sum(r.total_calls for r in app.events) > 0
        assert app.refresh_order == []

        outcome = app.run_action(1, 'pre-refresh-check')
        assert outcome.failure == (
            'Must run action on leader unit. (e.g. `juju run tiny/leader pre-refresh-check`)'
        )


def test_three_units_pause_after_first(app3: RollingRefresh[TinyCharm]):
    app3.refresh('1/1.1.0', '11', workload='1.1')

    assert app3.refresh_order == [2]
    assert app3.app_status == testing.BlockedStatus(PAUSED_AT_1)
    assert app3.unit_status(2) == testing.ActiveStatus(
        'Tiny 1.1 running; Snap revision 11; Charm revision 7'
    )
    for unit in (1, 0):
        assert app3.unit_status(unit) == testing.ActiveStatus(
            'Tiny 1.0 running; Snap revision 10 (outdated); Charm revision 7'
        )
        assert app3.revision(unit) == '10'
    assert app3.pending == {0: [], 1: [], 2: []}
    first = next(r for r in app3.events if r.event == 'upgrade_charm')
    assert first.unit == 2  # upgrade-charm reached the highest unit first

    wrong = app3.run_action(0, 'resume-refresh')
    assert wrong.failure == 'Must run action on unit 1'
    assert app3.refresh_order == [2]

    resumed = app3.run_action(1, 'resume-refresh')
    assert resumed.ok
    assert resumed.results == {'result': 'Refresh resumed. Unit 1 has refreshed'}
    assert resumed.logs == ['Refresh resumed. Refreshing unit 1']
    # Unit 0 followed on its own: 'first' pauses only after the first unit.
    assert app3.refresh_order == [2, 1, 0]
    assert [app3.revision(unit) for unit in app3.units] == ['11', '11', '11']
    assert app3.app_status == testing.ActiveStatus()
    assert all(app3.unit_status(unit) == testing.ActiveStatus() for unit in app3.units)
    assert app3.app_data['original_charm_version'] == '"1/1.1.0"'
    assert (
        testing.MaintenanceStatus(
            'Refreshing. To pause refresh, run `juju config tiny pause-after-unit-refresh=all`'
        )
        in app3.harness(0).ctx.app_status_history
    )


def test_incompatible_refresh_then_force(app3: RollingRefresh[TinyCharm]):
    app3.refresh('1/2.0.0', '11', workload='2.0')  # a new major version: incompatible

    assert app3.refresh_order == []
    assert app3.app_status == testing.BlockedStatus(
        'Refresh incompatible. Rollback with `juju refresh --revision 6`'
    )
    nothing_false = app3.run_action(2, 'force-refresh-start')
    assert nothing_false.failure == (
        'Must run with at least one of `check-compatibility`, `run-pre-refresh-checks`, or '
        '`check-workload-container` parameters `=false`'
    )
    wrong = app3.run_action(0, 'force-refresh-start', {'check-compatibility': False})
    assert wrong.failure == 'Must run action on unit 2'

    forced = app3.run_action(2, 'force-refresh-start', {'check-compatibility': False})

    assert forced.ok, forced.failure
    assert forced.logs == [
        'Checked that refresh is to Tiny container version that has been validated to work '
        'with the charm revision',
        'Skipping check for compatibility with previous Tiny version and charm revision',
        'Running pre-refresh checks',
        'Pre-refresh checks successful',
        'Refreshing unit 2',
    ]
    assert forced.results == {'result': 'Refreshed unit 2'}
    assert app3.refresh_order == [2]
    assert app3.app_status == testing.BlockedStatus(PAUSED_AT_1)


def test_failed_pre_refresh_check_then_force(
    app3: RollingRefresh[TinyCharm], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(TinyRefresh, 'precheck_failure', 'Backup in progress')
    check = app3.run_action(0, 'pre-refresh-check')
    assert (
        check.failure
        == 'Charm is not ready for refresh. Pre-refresh check failed: Backup in progress'
    )

    app3.refresh('1/1.1.0', '11')

    assert app3.refresh_order == []
    assert app3.unit_status(2) == testing.BlockedStatus(
        'Rollback with `juju refresh`. Pre-refresh check failed: Backup in progress'
    )
    forced = app3.run_action(2, 'force-refresh-start', {'run-pre-refresh-checks': False})
    assert forced.results == {'result': 'Refreshed unit 2'}
    assert 'Skipping pre-refresh checks' in forced.logs
    assert app3.refresh_order == [2]


def test_rollback_with_juju_refresh(app3: RollingRefresh[TinyCharm]):
    app3.refresh('1/1.1.0', '11', workload='1.1')
    assert app3.refresh_order == [2]

    app3.refresh('1/1.0.0', '10', workload='1.0', charm_revision=6)

    assert app3.refresh_order == [2]
    assert [app3.revision(unit) for unit in app3.units] == ['10', '10', '10']
    assert app3.app_status == testing.ActiveStatus()
    assert all(app3.unit_status(unit) == testing.ActiveStatus() for unit in app3.units)
    logs = [line.message for line in app3.harness(2).ctx.juju_log]
    assert (
        'Rollback detected. Automatic refresh checks skipped. Refresh started. Rolling back to '
        "Tiny 1.0 (snap revision 10) and charm revision 6 (CharmVersion('1/1.0.0'))"
    ) in logs
    assert (
        'Refreshed Tiny on this unit from 1.1 (snap revision 11) to 1.0 (snap revision 10) '
        'because this unit is the first unit to refresh'
    ) in logs
    assert app3.app_data['original_charm_revision'] == '"ch:amd64/jammy/tiny-6"'


def test_failed_snap_refresh_is_retried(app3: RollingRefresh[TinyCharm]):
    app3.snapd(2).fail_next_refresh()

    with pytest.raises(testing.errors.UncaughtCharmError, match='snap refresh failed'):
        app3.refresh('1/1.1.0', '11')

    failed = app3.events[-1]
    assert (failed.unit, failed.event) == (2, 'upgrade_charm')
    assert failed.error is not None and failed.error.startswith('RuntimeError: snap refresh')
    assert app3.revision(2) == '10'
    assert app3.pending[2][0] == 'upgrade_charm'  # Juju retries the failed hook

    app3.settle()  # the retry calls refresh_snap again, without re-running the checks

    assert app3.refresh_order == [2]
    assert app3.app_status == testing.BlockedStatus(PAUSED_AT_1)


def test_failed_snap_refresh_then_rollback(app3: RollingRefresh[TinyCharm]):
    app3.snapd(2).fail_next_refresh()
    with pytest.raises(testing.errors.UncaughtCharmError):
        app3.refresh('1/1.1.0', '11')
    assert app3.failing(2) == 'upgrade_charm'

    app3.refresh('1/1.0.0', '10', charm_revision=6)

    # Juju upgrades no unit in error: it retried the failed hook with the old code first
    # (which refreshed the snap), then ran the rollback's upgrade-charm.
    assert app3.failing(2) is None
    assert app3.refresh_order == [2, 2]
    assert [app3.revision(unit) for unit in app3.units] == ['10', '10', '10']
    assert app3.app_status == testing.ActiveStatus()
    assert all(app3.unit_status(unit) == testing.ActiveStatus() for unit in app3.units)


def test_failed_snap_refresh_then_forced_rollback(app3: RollingRefresh[TinyCharm]):
    app3.snapd(2).fail_next_refresh()
    with pytest.raises(testing.errors.UncaughtCharmError):
        app3.refresh('1/1.1.0', '11')

    # `juju refresh --force-units`: the failed hook is retried with the rollback's code.
    app3.refresh('1/1.0.0', '10', charm_revision=6, force_units=True)

    assert app3.refresh_order == []  # no unit's snap ever changed
    assert [app3.revision(unit) for unit in app3.units] == ['10', '10', '10']
    assert app3.app_status == testing.ActiveStatus()
    assert all(app3.unit_status(unit) == testing.ActiveStatus() for unit in app3.units)


def test_hook_tool_calls_are_counted_per_event(app3: RollingRefresh[TinyCharm]):
    start = len(app3.events)
    app3.update_status()

    records = app3.events[start:]
    assert [r.unit for r in records] == [2, 1, 0]
    for record in records:
        assert record.event == 'update_status'
        assert record.calls['relation-list'] > 0 and record.calls['is-leader'] > 0
        assert record.calls['goal-state'] == 0  # only until the peer relation was ready
        assert record.total_calls == app3.harness(record.unit).calls[-1].total


# RollingRefresh: series upgrades


class SeriesCharm(TinyCharm):
    """Records what each series-upgrade hook sees; warns if told to."""

    seen: ClassVar[list[tuple[str, str | None, str | None]]] = []
    other_warning: ClassVar[bool] = False

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        framework.observe(self.on.pre_series_upgrade, self._on_series)
        framework.observe(self.on.post_series_upgrade, self._on_series)
        framework.observe(self.on.update_status, self._on_series)

    def _on_series(self, event: ops.EventBase) -> None:
        if SeriesCharm.other_warning:
            warnings.warn('another deprecation', DeprecationWarning, stacklevel=1)
        target = os.environ.get('JUJU_TARGET_BASE')
        series = os.environ.get('JUJU_TARGET_SERIES')
        assert series == ('jammy' if target == 'ubuntu@22.04' else None)
        SeriesCharm.seen.append((type(event).__name__, target, _bases.current_base()))


@pytest.fixture
def series_app() -> Iterator[RollingRefresh[SeriesCharm]]:
    SeriesCharm.seen = []
    SeriesCharm.other_warning = False
    with rolling(2, SeriesCharm, base='ubuntu@20.04') as app:
        app.install()
        SeriesCharm.seen.clear()
        yield app


def test_series_upgrade_hooks_see_juju_environment(series_app: RollingRefresh[SeriesCharm]):
    assert series_app.base(0) == 'ubuntu@20.04'
    assert series_app.os_release(0).read_text().splitlines()[1:] == [
        'ID=ubuntu',
        'VERSION_ID="20.04"',
    ]

    series_app.prepare_series_upgrade(0, 'ubuntu@22.04')
    series_app.update_status()
    series_app.update_status()  # Juju coalesces what waits

    assert series_app.pending == {0: ['update_status'], 1: []}
    assert series_app.series_upgrading == {0: 'ubuntu@22.04'}
    series_app.complete_series_upgrade(0)

    assert SeriesCharm.seen == [
        ('PreSeriesUpgradeEvent', 'ubuntu@22.04', 'ubuntu@20.04'),
        ('UpdateStatusEvent', None, 'ubuntu@20.04'),  # unit 1, twice
        ('UpdateStatusEvent', None, 'ubuntu@20.04'),
        ('PostSeriesUpgradeEvent', None, 'ubuntu@22.04'),
        ('UpdateStatusEvent', None, 'ubuntu@22.04'),  # unit 0's, once, after complete
    ]
    assert (series_app.base(0), series_app.base(1)) == ('ubuntu@22.04', 'ubuntu@20.04')
    assert series_app.harness(0).extra_env.get('JUJU_TARGET_BASE') is None


def test_series_upgrade_misuse_is_refused(series_app: RollingRefresh[SeriesCharm]):
    with pytest.raises(ValueError, match='invalid base'):
        series_app.prepare_series_upgrade(0, 'jammy')
    with pytest.raises(RuntimeError, match='not prepared'):
        series_app.complete_series_upgrade(0)
    series_app.prepare_series_upgrade(1, 'ubuntu@22.04')
    with pytest.raises(RuntimeError, match='already prepared'):
        series_app.prepare_series_upgrade(1, 'ubuntu@24.04')
    with pytest.raises(RuntimeError, match='Juju runs no action on it'):
        series_app.run_action(1, 'pre-refresh-check')
    with pytest.raises(ValueError, match='invalid base'):
        RollingRefresh(TinyCharm, snap=SNAP, revision='10', charm_version='1/1.0.0', base='x@')


def test_only_the_series_deprecation_warning_is_expected(series_app: RollingRefresh[SeriesCharm]):
    # -W error: ops' warning for the series events is expected by the kit, nothing else is.
    SeriesCharm.other_warning = True
    with pytest.raises(testing.errors.UncaughtCharmError, match='another deprecation'):
        series_app.prepare_series_upgrade(0, 'ubuntu@22.04')
    assert series_app.series_upgrading == {0: 'ubuntu@22.04'}  # pre-series-upgrade retried
    assert series_app.failing(0) == 'pre_series_upgrade'
    SeriesCharm.other_warning = False
    harness = series_app.harness(0)
    with pytest.warns(DeprecationWarning, match='pre-series-upgrade events will not be emitted'):
        harness.run(harness.ctx.on.pre_series_upgrade(), series_app.unit_state(0))


def test_a_failing_unit_keeps_its_code_until_the_retry_succeeds(
    app3: RollingRefresh[TinyCharm],
):
    app3.snapd(2).fail_next_refresh()
    app3.refresh('1/1.1.0', '11', settle=False)
    app3.settle(raise_on_error=False, retry=False)
    assert app3.failing(2) == 'upgrade_charm'
    assert app3.pending[2][:2] == ['upgrade_charm', 'config_changed']
    assert app3.pending[1] == [] and app3.pending[0] == []

    app3.refresh('1/1.2.0', '11', settle=False)

    assert app3.harness(2).charm_revision == 7  # the failed hook's code, for its retry
    assert app3.harness(1).charm_revision == 8
    app3.settle()
    assert app3.harness(2).charm_revision == 8
    assert app3.failing(2) is None
