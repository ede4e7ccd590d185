# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The test kit catches the charm bugs a real unit would hit, with the example charm.

Each test here is a mistake a charm author makes, or a step of a real deployment that the
kit must not leave out: a bad pin in ``refresh_versions.toml``, a migration added in a later
revision, a forgotten ``reconcile()``, machine paths two units would share.
"""

from __future__ import annotations

import json
import pathlib
import platform
import subprocess
from typing import TYPE_CHECKING, Any

import ops
import pytest
import yaml
from ops import testing

import charm_upgrade
import charm_upgrade.snapd
from charm_upgrade.testing import ReconcileNotCalledError, RefreshVersions, RollingRefresh

if TYPE_CHECKING:
    from collections.abc import Iterator

import _demo
from _demo import CHARM_DIR, SNAP, App, UpgradeDemoCharm

DATA = '20260301-data-format'
SERIES = '20260110-series-config'


def write_toml(path: pathlib.Path, revision: str) -> pathlib.Path:
    source = (CHARM_DIR / 'refresh_versions.toml').read_text()
    path.write_text(
        source.replace(f'{platform.machine()} = "2"', f'{platform.machine()} = {revision}')
    )
    return path


# refresh_versions.toml


def test_rolling_refresh_loads_the_charms_own_refresh_versions_toml(tmp_path: pathlib.Path):
    with RollingRefresh(
        UpgradeDemoCharm,
        units=2,
        refresh_versions=CHARM_DIR / 'refresh_versions.toml',
        charm_version='1/1.0.0',
        revisions=['3'],
        services=['server'],
        root=tmp_path,
    ) as app:
        app.install()
        assert app.snap == SNAP
        assert [app.revision(u) for u in app.units] == ['2', '2']
        assert app.unit_state(0).workload_version == '1.0'


def test_an_integer_revision_fails_at_load_as_the_real_unit_fails(tmp_path: pathlib.Path):
    bad = write_toml(tmp_path / 'refresh_versions.toml', '2')

    with pytest.raises(ValueError, match=r'snap revisions are strings, e\.g\. .* = "2"'):
        RefreshVersions.load(bad, charm='1/1.0.0')
    with pytest.raises(ValueError, match='snap revisions are strings'):
        RollingRefresh(UpgradeDemoCharm, refresh_versions=bad, charm_version='1/1.0.0')
    with pytest.raises(ValueError, match='snap revisions are strings'):
        RefreshVersions(charm='1/1.0.0', workload='1', snap=SNAP, revisions={'x86_64': 3})  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match='not a snap revision'):
        RefreshVersions(charm='1/1.0.0', workload='1', snap=SNAP, revisions={'x86_64': '03'})
    with pytest.raises(ValueError, match='invalid charm version'):
        RefreshVersions.load(CHARM_DIR / 'refresh_versions.toml', charm='1.0.0')
    (tmp_path / 'no-snap.toml').write_text('workload = "1.0"\n')
    with pytest.raises(KeyError, match='required key missing'):
        RefreshVersions.load(tmp_path / 'no-snap.toml', charm='1/1.0.0')
    other_arch = write_toml(tmp_path / 'other.toml', '"2"').read_text()
    (tmp_path / 'other.toml').write_text(other_arch.replace(platform.machine(), 'riscv64'))
    with pytest.raises(KeyError, match='Snap revision missing for architecture'):
        RefreshVersions.load(tmp_path / 'other.toml', charm='1/1.0.0')


def test_the_real_unit_refuses_an_integer_revision_at_its_refresh():
    # What the kit's check stands for: the built charm with `x86_64 = 3` in its file, on a
    # real unit with the real charm-refresh, fails its first upgrade-charm.
    with _demo.deploy(1) as app:
        app.install()
        app.refresh('1/1.1.0', '3', workload='1.1', settle=False)
        toml = app.harness(0).charm_dir / 'refresh_versions.toml'
        toml.write_text(toml.read_text().replace('= "3"', '= 3'))

        with pytest.raises(testing.errors.UncaughtCharmError) as caught:
            app.settle()

        assert isinstance(caught.value.__cause__, ValueError)
        assert 'invalid snap revision 3' in str(caught.value.__cause__)
        assert app.revision(0) == '2'


# Migrations added in a later revision


def test_make_migration_pending_runs_a_new_refresh_migration_at_the_next_refresh():
    with _demo.deploy(2) as app:
        app.install()
        record = app.harness(1).state_dir / 'migrations.json'
        assert DATA in json.loads(record.read_text())['applied']  # a fresh install

        app.make_migration_pending(DATA)  # deployed by a revision without it

        applied = json.loads(record.read_text())['applied']
        assert DATA not in applied and SERIES in applied
        app.refresh('1/1.1.0', '3', workload='1.1')
        assert app.refresh_order == [1]
        applied = json.loads(record.read_text())['applied']
        assert applied[DATA]['how'] == 'ran' and applied[DATA]['new'] == '3'
        assert (
            DATA
            not in json.loads((app.harness(0).state_dir / 'migrations.json').read_text())[
                'applied'
            ]
        )  # unit 0 has not refreshed yet

        with pytest.raises(ValueError, match='no applied migration nope'):
            app.make_migration_pending('nope')


def test_make_migration_pending_before_install_says_to_install_first(app_not_installed: App):
    with pytest.raises(ValueError, match='run the install first'):
        app_not_installed.make_migration_pending(DATA)


@pytest.fixture
def app_not_installed() -> Iterator[App]:
    with _demo.deploy(1) as app:
        yield app


# A charm that forgets reconcile()


def test_a_charm_that_never_calls_reconcile_fails_its_test_loudly(
    monkeypatch: pytest.MonkeyPatch,
):
    with _demo.deploy(2) as app:
        app.install()  # no refresh in progress: nothing to reconcile yet
        monkeypatch.setattr(_demo.charm.DemoRefresh, 'reconcile', lambda self, refresh: None)

        never = r'never called DemoRefresh\.reconcile\(\)'
        with pytest.raises(ReconcileNotCalledError, match=never):
            app.refresh('1/1.1.0', '3', workload='1.1')

        # Turned off, the same charm passes, and its refresh goes no further than unit 1.
        for unit in app.units:
            app.harness(unit).check_reconcile = False
        app.settle()
        assert app.refresh_order == [1]


# Machine paths: each unit its own


EXPORTER = """\
[Unit]
Description=mydb exporter for {unit}
[Service]
ExecStart=/usr/bin/mydb-exporter
[Install]
WantedBy=multi-user.target
"""
DATA_DIR = f'/var/snap/{SNAP}/common/data'


class ExporterCharm(UpgradeDemoCharm):
    """The example charm, plus a systemd unit and a data file it writes itself."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        framework.observe(self.on.config_changed, self._write_machine_files)

    def _write_machine_files(self, _: ops.EventBase) -> None:
        unit_file = charm_upgrade.machine_path('/etc/systemd/system/mydb-exporter.service')
        unit_file.write_text(EXPORTER.format(unit=self.unit.name))
        owner = charm_upgrade.machine_path(f'{DATA_DIR}/owner')
        owner.parent.mkdir(parents=True, exist_ok=True)
        owner.write_text(self.unit.name)
        subprocess.run(['systemctl', 'daemon-reload'], check=True)
        subprocess.run(['systemctl', 'enable', '--now', 'mydb-exporter.service'], check=True)


def deploy_exporter(root: pathlib.Path, units: int = 2) -> RollingRefresh[ExporterCharm]:
    meta: dict[str, Any] = yaml.safe_load((CHARM_DIR / 'charmcraft.yaml').read_text())
    return RollingRefresh(
        ExporterCharm,
        units=units,
        refresh_versions=CHARM_DIR / 'refresh_versions.toml',
        charm_version='1/1.0.0',
        revisions=['3'],
        services=['server'],
        meta=meta,
        root=root,
        change_duration=0.005,
    )


def test_two_units_writing_the_same_machine_path_do_not_share_it(tmp_path: pathlib.Path):
    with deploy_exporter(tmp_path / 'app') as app:
        app.install()

        owners = [app.machine_path(u, f'{DATA_DIR}/owner') for u in app.units]
        assert [o.read_text() for o in owners] == ['upgrade-demo/0', 'upgrade-demo/1']
        assert all(tmp_path in o.parents for o in owners)  # this test's own
        for unit in app.units:
            # The unit file it wrote is a unit of its own machine, enabled and started.
            systemd = app.systemd(unit)
            assert systemd.unit('mydb-exporter') == {'enabled': 'enabled', 'active': 'active'}
            unit_file = systemd.config_dir / 'mydb-exporter.service'
            assert f'for upgrade-demo/{unit}' in unit_file.read_text()
            assert app.machine_path(unit, '/etc/os-release') == app.os_release(unit)
        # Outside the events, machine_path() is the identity again.
        assert charm_upgrade.machine_path(DATA_DIR) == pathlib.Path(DATA_DIR)


def test_backup_paths_are_the_units_own(tmp_path: pathlib.Path):
    with deploy_exporter(tmp_path / 'app') as app:
        app.install()
        app.make_migration_pending(DATA)

        app.refresh('1/1.1.0', '3', workload='1.1')  # unit 1 refreshes: its migration runs

        journal = (app.harness(1).state_dir / 'journal.jsonl').read_text().splitlines()
        (ended,) = [
            r
            for r in map(json.loads, journal)
            if (r['stage'], r['event']) == (f'migration:{DATA}', 'ended')
        ]
        backup = ended['details']['backup']
        assert backup['paths'] == [str(app.machine_path(1, DATA_DIR))]
        assert backup['absent'] == []
        assert backup['bytes'] == len('upgrade-demo/1')


# A charm that starts its workload during a series upgrade


class EagerCharm(UpgradeDemoCharm):
    """The example charm, plus a handler that wrongly starts the snap at prepare."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        framework.observe(self.on.pre_series_upgrade, self._start_anyway)

    def _start_anyway(self, _: ops.EventBase) -> None:
        snapd = charm_upgrade.snapd.Snapd()
        snapd.wait_done(snapd.start([f'{SNAP}.server'], enable=True))
        subprocess.run(['systemctl', 'start', f'snap.{SNAP}.server.service'], check=True)


def test_a_held_service_stays_down_whatever_the_charm_starts(tmp_path: pathlib.Path):
    meta: dict[str, Any] = yaml.safe_load((CHARM_DIR / 'charmcraft.yaml').read_text())
    with RollingRefresh(
        EagerCharm,
        units=1,
        refresh_versions=CHARM_DIR / 'refresh_versions.toml',
        charm_version='1/1.0.0',
        services=['server'],
        meta=meta,
        root=tmp_path,
    ) as app:
        app.install()

        app.prepare_series_upgrade(0, 'ubuntu@24.04')

        # Both starts "succeed", as systemd skips a held unit: the server stays down.
        assert app.systemd(0).held() == [f'snap.{SNAP}.server.service']
        assert app.snapd(0).service_state(SNAP) == {'server': (True, False)}
        app.complete_series_upgrade(0)
        assert app.snapd(0).service_state(SNAP) == {'server': (True, True)}
