# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""SnapServices against FakeSnapd (over its unix socket) and a stand-in systemctl."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from charm_upgrade import (
    SeriesUpgradeFlow,
    ServiceError,
    SnapdError,
    SnapServices,
    Step,
    SystemdServices,
)
from charm_upgrade._flags import APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS
from charm_upgrade.snapd import Snapd
from charm_upgrade.testing import FakeSnapd
from charm_upgrade.testing._fake_systemd import FakeSystemd


@pytest.fixture
def snapd(fake_systemd: FakeSystemd) -> Iterator[FakeSnapd]:
    # The snap's services are the machine's snap.demo.*.service units, as on a machine.
    with FakeSnapd(change_duration=0.02) as fake:
        fake.attach(fake_systemd)
        fake.add_snap('demo', services=['web', 'worker', 'cron'])
        fake.set_service_state('demo', 'cron', enabled=False, active=False)
        yield fake


def test_take_down_and_bring_back_through_snapd(snapd: FakeSnapd, fake_systemd: FakeSystemd):
    services = SnapServices('demo')
    before = services.read_state()
    assert before['services'] == {
        'demo.web': {'enabled': True, 'active': True},
        'demo.worker': {'enabled': True, 'active': True},
        'demo.cron': {'enabled': False, 'active': False},
    }
    services.take_down(before)
    assert snapd.service_state('demo') == {
        'web': (False, False),
        'worker': (False, False),
        'cron': (False, False),
    }
    stop = next(r for r in snapd.requests if r.method == 'POST')
    assert stop.body == {
        'action': 'stop',
        'names': ['demo.cron', 'demo.web', 'demo.worker'],  # snapd lists apps by name
        'disable': True,
    }
    # The units are also held, against a plain `systemctl start`.
    assert sorted(fake_systemd.held()) == [
        'snap.demo.cron.service',
        'snap.demo.web.service',
        'snap.demo.worker.service',
    ]

    services.bring_back(before)
    assert fake_systemd.held() == []
    assert snapd.service_state('demo') == {
        'web': (True, True),
        'worker': (True, True),
        'cron': (False, False),
    }


def test_only_the_services_named_are_touched(snapd: FakeSnapd, fake_systemd: FakeSystemd):
    services = SnapServices('demo', ['worker'])
    before = services.read_state()
    services.take_down(before)
    assert snapd.service_state('demo')['web'] == (True, True)
    assert snapd.service_state('demo')['worker'] == (False, False)


def test_an_enabled_but_stopped_service_comes_back_enabled_and_stopped(
    snapd: FakeSnapd, fake_systemd: FakeSystemd
):
    snapd.set_service_state('demo', 'worker', enabled=True, active=False)
    services = SnapServices('demo')
    before = services.read_state()
    services.take_down(before)
    services.bring_back(before)
    assert snapd.service_state('demo')['worker'] == (True, False)


def test_a_snap_that_is_not_installed_is_named(snapd: FakeSnapd):
    with pytest.raises(ServiceError, match="snap 'ghost' is not installed"):
        SnapServices('ghost').read_state()


def test_an_unknown_service_is_named(snapd: FakeSnapd):
    with pytest.raises(ServiceError, match='has no service named nope'):
        SnapServices('demo', ['nope']).read_state()


def test_snapd_unreachable_is_a_snapd_error(fake_systemd: FakeSystemd, monkeypatch):
    monkeypatch.setenv('CHARM_UPGRADE_SNAPD_SOCKET', '/nonexistent/snapd.socket')
    services = SnapServices('demo', snapd=Snapd(restart_grace=0.2))
    with pytest.raises(SnapdError, match='cannot reach snapd') as info:
        services.read_state()
    assert info.value.kind == 'connection-error'


def test_snapd_answering_garbage_is_a_snapd_error(snapd: FakeSnapd):
    snapd.garbage_next()
    with pytest.raises(SnapdError) as info:
        SnapServices('demo').read_state()
    assert info.value.kind == 'bad-response'


def test_mixed_groups_in_a_series_upgrade(snapd: FakeSnapd, fake_systemd: FakeSystemd):
    fake_systemd.add_unit('proxy.service')

    class Flags:
        def __init__(self) -> None:
            self.flags = {APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS}

        def is_set(self, flag: str) -> bool:
            return flag in self.flags

        def set(self, flag: str, value: str | None = None) -> None:
            self.flags.add(flag)

        def clear(self, flag: str) -> None:
            self.flags.discard(flag)

        def value(self, flag: str) -> str | None:
            return None

    flow = SeriesUpgradeFlow(
        [SystemdServices(['proxy']), SnapServices('demo', ['web'])], flags=Flags()
    )
    assert flow.run() is Step.TOOK_DOWN
    assert fake_systemd.unit('proxy.service')['active'] == 'inactive'
    assert snapd.service_state('demo')['web'] == (False, False)
    flow.flags.clear(UPGRADE_SERIES_IN_PROGRESS)
    assert flow.run() is Step.BROUGHT_BACK
    assert fake_systemd.unit('proxy.service')['active'] == 'active'
    assert snapd.service_state('demo')['web'] == (True, True)


def test_a_snap_group_costs_one_systemctl_call_each_way(
    snapd: FakeSnapd, fake_systemd: FakeSystemd
):
    # docs/explanation/design.md, "Enablement is links, and links are what is restored":
    # the holds need a daemon-reload; the rest goes through snapd.
    services = SnapServices('demo')
    before = services.read_state()
    fake_systemd.clear_calls()
    services.take_down(before)
    assert fake_systemd.commands() == ['daemon-reload']
    fake_systemd.clear_calls()
    services.bring_back(before)
    assert fake_systemd.commands() == ['daemon-reload']
