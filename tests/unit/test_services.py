# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from charm_upgrade import ServiceError, SnapServices, SystemdServices

if TYPE_CHECKING:
    from charm_upgrade.testing._fake_systemd import FakeSystemd


@pytest.mark.parametrize('names', [[], ['a', 'a.service'], ['x', 'y', 'x']])
def test_systemd_services_refuse_empty_and_duplicate_lists(names: list[str]):
    with pytest.raises(ServiceError):
        SystemdServices(names)


def test_a_single_name_is_one_unit_not_letters():
    assert SystemdServices('myapp').names == ['myapp.service']


def test_unknown_unit_is_named_in_the_error(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('a.service')
    with pytest.raises(ServiceError, match=r'no unit named ghost\.service'):
        SystemdServices(['a', 'ghost']).read_state()


def _four_units(fake_systemd: FakeSystemd) -> SystemdServices:
    fake_systemd.add_unit('web.service', path='/etc/systemd/system/web.service')
    fake_systemd.add_unit('worker.service', path='/lib/systemd/system/worker.service')
    fake_systemd.add_unit('api.socket')
    fake_systemd.add_unit('cron.service', enabled='disabled', active=False)
    return SystemdServices(['web', 'worker', 'api.socket', 'cron'])


def test_take_down_and_bring_back_restore_exactly(fake_systemd: FakeSystemd):
    services = _four_units(fake_systemd)
    before = services.read_state()
    services.take_down(before)
    for unit in ('web.service', 'worker.service', 'api.socket', 'cron.service'):
        assert fake_systemd.unit(unit)['active'] == 'inactive'
    assert fake_systemd.unit('web.service')['enabled'] == 'disabled'
    assert sorted(fake_systemd.held()) == [
        'api.socket',
        'cron.service',
        'web.service',
        'worker.service',
    ]
    # Something (a maintainer script, a dependency) tries to start them.
    fake_systemd.add_unit('other.service')
    import subprocess

    subprocess.run(['systemctl', 'start', 'web.service', 'cron.service'], check=True)
    assert fake_systemd.unit('web.service')['active'] == 'inactive'

    services.bring_back(before)
    assert fake_systemd.held() == []
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.unit('api.socket') == {'enabled': 'enabled', 'active': 'active'}
    # The operator had disabled and stopped cron: it stays so.
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}


@pytest.mark.parametrize('count', [1, 20, 200])
def test_systemctl_calls_do_not_grow_with_the_number_of_units(
    fake_systemd: FakeSystemd, count: int
):
    names = [f'svc{i}.service' for i in range(count)]
    for name in names:
        fake_systemd.add_unit(name)
    services = SystemdServices(names)
    before = services.read_state()
    services.take_down(before)
    services.bring_back(before)
    assert fake_systemd.commands() == [
        'show',
        'daemon-reload',
        'disable',
        'stop',
        'daemon-reload',
        'enable',
        'start',
    ]


def test_take_down_retried_after_a_failed_stop_converges(fake_systemd: FakeSystemd):
    services = _four_units(fake_systemd)
    before = services.read_state()
    fake_systemd.fail_next('stop', 'Job for web.service canceled.')
    from charm_upgrade import SystemdError

    with pytest.raises(SystemdError):
        services.take_down(before)
    services.take_down(before)
    assert fake_systemd.unit('web.service')['active'] == 'inactive'
    services.bring_back(before)
    services.bring_back(before)
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}


def test_snap_services_validate_their_arguments():
    with pytest.raises(ServiceError, match='invalid snap name'):
        SnapServices('')
    with pytest.raises(ServiceError, match='empty list'):
        SnapServices('foo', [])
    with pytest.raises(ServiceError, match='more than once'):
        SnapServices('foo', ['a', 'foo.a'])
    assert SnapServices('foo', ['foo.a', 'b']).names == ['foo.a', 'foo.b']
    assert SnapServices('foo').names == ['foo']
