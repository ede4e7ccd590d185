# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""CharmSpecificMachines.install_snap in the example charm, with the real charm-refresh."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import TYPE_CHECKING, Any

import pytest

from charm_upgrade.snapd import Snapd

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

import _demo
from _demo import SNAP, App, charm
from charm import DemoRefresh


@dataclasses.dataclass(eq=False)
class PluggedRefresh(DemoRefresh):
    plugs: Sequence[str] = dataclasses.field(default=('network-observe',), kw_only=True)


def deploy(units: int = 2, **kwargs: Any) -> App:
    return _demo.deploy(units, installed=False, **kwargs)


@pytest.fixture
def plugged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charm, 'DemoRefresh', PluggedRefresh)


@pytest.fixture
def app(plugged: None) -> Iterator[App]:
    app = deploy(plugs=['network-observe'])
    app.install()
    yield app
    app.close()


def state_file(app: App, unit: int, name: str) -> pathlib.Path:
    return app.harness(unit).state_dir / name


def test_each_unit_installs_the_pinned_revision_holds_it_and_connects_its_plugs(app: App):
    for unit in app.units:
        snapd = app.snapd(unit)
        assert snapd.revision(SNAP) == '2'  # the revision this charm code pins
        assert snapd.hold(SNAP)  # automatic refreshes held
        assert (f'{SNAP}:network-observe', 'snapd:network-observe') in snapd.connections()
        assert json.loads(app.unit_data(unit)['installed_snap_revision']) == '2'
        record = json.loads(state_file(app, unit, 'migrations.json').read_text())
        assert {entry['how'] for entry in record['applied'].values()} == {'installed'}
        assert app.unit_status(unit).name == 'active'


def unhold(app: App, unit: int) -> None:
    """What an operator's `snap refresh --unhold` does."""
    snapd = Snapd(socket=app.snapd(unit).socket_path)
    snapd.wait_done(snapd.unhold(SNAP))


def test_the_hold_is_kept_across_a_refresh(app: App):
    for unit in app.units:
        unhold(app, unit)
    app.refresh('1/1.1.0', '3', workload='1.1')
    app.run_action(0, 'resume-refresh')

    for unit in app.units:
        assert app.snapd(unit).revision(SNAP) == '3'
        assert app.snapd(unit).hold(SNAP)


def test_a_second_call_reconnects_and_rehold_what_an_operator_undid(app: App):
    unhold(app, 0)
    snapd = Snapd(socket=app.snapd(0).socket_path)
    snapd.wait_done(snapd.disconnect(SNAP, 'network-observe'))
    assert not app.snapd(0).hold(SNAP)

    app.update_status()

    assert app.snapd(0).hold(SNAP)
    assert (f'{SNAP}:network-observe', 'snapd:network-observe') in app.snapd(0).connections()
    installs = [r for r in app.snapd(0).requests if r.body and r.body.get('action') == 'install']
    assert len(installs) == 1  # never installed twice


def test_snapd_that_cannot_hold_still_installs(plugged: None, caplog: pytest.LogCaptureFixture):
    app = deploy(units=1, snapd_version='2.57', plugs=['network-observe'])
    try:
        app.install()
        assert app.snapd(0).revision(SNAP) == '2'
        assert not app.snapd(0).hold(SNAP)
        assert app.unit_status(0).name == 'active'
        assert 'Cannot hold the automatic refreshes' in caplog.text
    finally:
        app.close()
