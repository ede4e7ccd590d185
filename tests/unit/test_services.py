# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from charm_upgrade import ServiceError, SnapServices, SystemdServices
from charm_upgrade._services import BringBackResult

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
    assert fake_systemd.commands() == ['show', 'daemon-reload', 'stop']
    fake_systemd.clear_calls()
    services.bring_back(before)
    assert fake_systemd.commands() == ['show', 'daemon-reload', 'start', 'show']


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


# Units as systemd has them ---------------------------------------------------------------


def _round_trip(services: SystemdServices) -> tuple[dict[str, Any], BringBackResult]:
    before = services.read_state()
    services.take_down(before)
    return before, services.bring_back(before)


def test_a_linked_unit_keeps_its_link_and_comes_back(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app', path='/opt/app/app.service')  # systemctl link + enable
    fake_systemd.add_unit('other')
    services = SystemdServices(['app', 'other'])
    before = services.read_state()
    assert before['units']['app.service']['links'] == {
        'app.service': str(fake_systemd.machine.real_path('/opt/app/app.service'))
    }

    services.take_down(before)
    assert fake_systemd.unit('app') == {'enabled': 'linked', 'active': 'inactive'}
    result = services.bring_back(before)

    assert result == BringBackResult()
    assert fake_systemd.unit('app') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.unit('other') == {'enabled': 'enabled', 'active': 'active'}


def test_a_link_removed_during_the_upgrade_is_put_back(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app', path='/opt/app/app.service')
    services = SystemdServices(['app'])
    before = services.read_state()
    services.take_down(before)
    fake_systemd.systemctl('disable', 'app.service')  # removes the link too

    assert services.bring_back(before) == BringBackResult()
    assert fake_systemd.unit('app') == {'enabled': 'enabled', 'active': 'active'}


def test_a_unit_renamed_by_the_os_upgrade_is_followed(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('bind9', path='/lib/systemd/system/bind9.service')
    fake_systemd.add_unit('web')
    services = SystemdServices(['bind9', 'web'])
    before = services.read_state()
    services.take_down(before)
    # The new release ships named.service with Alias=bind9.service; its
    # maintainer script enables it. The hold on the old name holds it too.
    fake_systemd.rename_unit('bind9', 'named')
    fake_systemd.systemctl('daemon-reload')
    fake_systemd.systemctl('start', 'named.service')
    assert fake_systemd.unit('named')['active'] == 'inactive'
    fake_systemd.clear_calls()

    result = services.bring_back(before)

    assert result == BringBackResult(renamed={'bind9.service': 'named.service'})
    # Enabled by its package already: no enable of its own.
    assert fake_systemd.commands() == ['show', 'daemon-reload', 'start', 'show']
    assert fake_systemd.unit('named') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.unit('web') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.held() == []


def test_a_renamed_unit_the_package_left_disabled_is_enabled(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('bind9', path='/lib/systemd/system/bind9.service')
    services = SystemdServices(['bind9'])
    before = services.read_state()
    services.take_down(before)
    fake_systemd.rename_unit('bind9', 'named')
    fake_systemd.remove_unit('named')  # not enabled by its package...
    fake_systemd.add_unit('named', path='/lib/systemd/system/named.service', enabled='disabled')
    fake_systemd.machine.config_dir.joinpath('bind9.service').symlink_to(
        fake_systemd.machine.vendor_dir / 'named.service'
    )  # ...but its alias link is there
    fake_systemd.clear_calls()

    result = services.bring_back(before)

    assert result.renamed == {'bind9.service': 'named.service'}
    assert fake_systemd.unit('named') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.commands() == ['show', 'enable', 'daemon-reload', 'start', 'show']


def test_a_renamed_unit_that_was_disabled_is_disabled_again(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('bind9', enabled='disabled', active=False)
    services = SystemdServices(['bind9'])
    before = services.read_state()
    services.take_down(before)
    fake_systemd.rename_unit('bind9', 'named')  # enabled by the package: bind9 is its alias
    fake_systemd.clear_calls()

    result = services.bring_back(before)

    assert result.renamed == {'bind9.service': 'named.service'}
    assert fake_systemd.unit('named') == {'enabled': 'disabled', 'active': 'inactive'}
    assert fake_systemd.commands() == ['show', 'disable', 'daemon-reload', 'show']


def test_units_that_cannot_come_back_never_keep_the_others_down(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app')
    fake_systemd.add_unit('masked-later')
    fake_systemd.add_unit('pulled', enabled='static', refuse_manual_start=True)
    fake_systemd.add_unit('gone')
    services = SystemdServices(['app', 'masked-later', 'pulled', 'gone'])
    before = services.read_state()
    services.take_down(before)
    fake_systemd.remove_unit('gone.service')
    fake_systemd.add_unit('masked-later', enabled='masked', active=False)  # the operator

    result = services.bring_back(before)

    assert fake_systemd.unit('app') == {'enabled': 'enabled', 'active': 'active'}
    assert result.skipped == {
        'masked-later.service': 'masked, so not started',
        'pulled.service': (
            'refuses a manual start (RefuseManualStart=yes) and nothing started it'
        ),
        'gone.service': 'no longer exists after the OS upgrade: skipped',
    }
    assert fake_systemd.held() == []


def test_a_unit_that_fails_to_start_is_named_with_systemds_words(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app')
    fake_systemd.add_unit('web')
    services = SystemdServices(['app', 'web'])
    before = services.read_state()
    services.take_down(before)
    fake_systemd.fail_next('start', 'Job for app.service failed because the control process')

    result = services.bring_back(before)

    assert result.skipped == {
        'app.service': 'did not start (Job for app.service failed because the control process)',
        'web.service': 'did not start (ActiveState=inactive)',
    }
    services.bring_back(before)  # the operator fixed it and runs complete's step again
    assert fake_systemd.unit('app')['active'] == fake_systemd.unit('web')['active'] == 'active'


def test_also_and_extra_wants_links_are_restored_exactly(fake_systemd: FakeSystemd):
    # The service's [Install] has Also=app.socket; the operator enabled only
    # the socket, and added a wants link of their own for the helper.
    fake_systemd.add_unit('app', enabled='disabled', also=['app.socket'], active=False)
    fake_systemd.add_unit('app.socket')
    fake_systemd.add_unit('helper', enabled='disabled', also=['metrics'])
    fake_systemd.systemctl('add-wants', 'multi-user.target', 'helper.service')
    # Not listed, but named in the helper's Also=: its links are not ours to touch.
    fake_systemd.add_unit('metrics')
    links = {u: fake_systemd.links(u) for u in ('app', 'app.socket', 'helper', 'metrics')}
    services = SystemdServices(['app', 'app.socket', 'helper'])
    before = services.read_state()
    assert before['units']['app.service']['install'] == {
        'WantedBy': ['multi-user.target'],
        'Also': ['app.socket'],
    }
    services.take_down(before)
    assert fake_systemd.links('metrics') == links['metrics']
    fake_systemd.systemctl('enable', 'app.service')  # a maintainer script

    assert services.bring_back(before) == BringBackResult()

    assert {u: fake_systemd.links(u) for u in links} == links
    assert fake_systemd.unit('app.socket') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.unit('app') == {'enabled': 'disabled', 'active': 'inactive'}
    assert fake_systemd.unit('helper') == {'enabled': 'enabled', 'active': 'active'}


def test_units_that_cannot_be_held_or_restored_are_refused_before_anything_is_touched(
    fake_systemd: FakeSystemd,
):
    fake_systemd.add_unit('app')
    fake_systemd.add_unit('sticky', refuse_manual_stop=True)
    with pytest.raises(ServiceError, match=r'sticky\.service refuse a manual stop'):
        SystemdServices(['app', 'sticky']).read_state()
    fake_systemd.add_unit('web', active=False)
    fake_systemd.add_unit('web.socket')
    fake_systemd.add_unit('sync.path', triggers='app')
    with pytest.raises(ServiceError, match=r'sync\.path, web\.socket start listed services'):
        SystemdServices(['app', 'web']).read_state()
    assert fake_systemd.commands() == ['show', 'show']
    assert fake_systemd.held() == []
    SystemdServices(['app', 'web', 'web.socket', 'sync.path']).read_state()


@pytest.mark.parametrize('name', ['foo@', 'foo@.service', 'foo@.socket'])
def test_a_template_is_refused_when_the_group_is_made(name: str):
    with pytest.raises(ServiceError, match='is a template, not a unit'):
        SystemdServices(['app', name])
    assert SystemdServices(['getty@tty1']).names == ['getty@tty1.service']


def test_unlisted_triggers_allowed_are_started_again_at_complete(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('web', enabled='static')
    fake_systemd.add_unit('web.socket')
    services = SystemdServices(['web'], allow_unlisted_triggers=True)
    before = services.read_state()
    assert before['triggers'] == {'web.socket': True}
    services.take_down(before)
    fake_systemd.activate('web.socket')  # a client connects while web is held
    assert fake_systemd.unit('web.socket')['active'] == 'failed'
    fake_systemd.clear_calls()

    assert services.bring_back(before) == BringBackResult()

    assert fake_systemd.commands() == ['show', 'daemon-reload', 'reset-failed', 'start', 'show']
    assert fake_systemd.unit('web.socket')['active'] == 'active'
    fake_systemd.activate('web.socket')  # the next client: the trigger limit was reset
    assert fake_systemd.unit('web.socket')['active'] == 'active'
    assert fake_systemd.unit('web')['active'] == 'active'


def test_a_drop_in_after_the_hold_is_warned_about(
    fake_systemd: FakeSystemd, caplog: pytest.LogCaptureFixture
):
    fake_systemd.add_unit('app')
    fake_systemd.add_dropin('app', '~~late.conf', '[Unit]\nConditionPathExists=\n')
    fake_systemd.add_dropin('app', 'zzz-sane.conf', '[Service]\nNice=5\n')
    fake_systemd.systemctl('daemon-reload')
    with caplog.at_level(logging.WARNING):
        before = SystemdServices(['app']).read_state()
    assert 'may undo it' in caplog.text
    assert [p.rsplit('/', 1)[1] for p in before['units']['app.service']['dropins_after_hold']] == [
        '~~late.conf'
    ]


def test_a_record_without_links_is_brought_back_as_before(fake_systemd: FakeSystemd):
    # Written by a version of the library that recorded is-enabled only.
    fake_systemd.add_unit('web')
    services = SystemdServices(['web'])
    before = {
        'kind': 'systemd',
        'units': {'web.service': {'id': 'web.service', 'is_enabled': 'enabled', 'running': True}},
    }
    services.take_down(before)
    assert fake_systemd.unit('web') == {'enabled': 'disabled', 'active': 'inactive'}
    assert services.bring_back(before) == BringBackResult()
    assert fake_systemd.unit('web') == {'enabled': 'enabled', 'active': 'active'}


def test_holds_of_earlier_versions_are_released(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('web', active=False)
    old_hold = '[Unit]\nConditionPathExists=!/\n'
    fake_systemd.add_dropin('web', 'zz-charm-upgrade-hold.conf', old_hold)
    fake_systemd.systemctl('daemon-reload')
    assert fake_systemd.held() == ['web.service']
    from charm_upgrade import _systemd

    _systemd.release(['web.service'])
    assert fake_systemd.held() == []


def test_a_trigger_that_failed_moments_ago_is_started_after_its_limit_window(
    fake_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
):
    # systemd 257 keeps a trigger limit's window across reset-failed and start.
    import dataclasses
    import time

    from charm_upgrade import _systemd, _systemd_services

    fake_systemd.add_unit('web', enabled='static')
    fake_systemd.add_unit('web.socket')
    services = SystemdServices(['web'], allow_unlisted_triggers=True)
    before = services.read_state()
    services.take_down(before)
    fake_systemd.activate('web.socket')
    real_show = _systemd.show

    def show(names: list[str]) -> dict[str, _systemd.UnitState]:
        states = real_show(names)
        if 'web.socket' in states and states['web.socket'].active_state == 'failed':
            failed_at = time.monotonic() - 0.5  # the limit was hit half a second ago
            states['web.socket'] = dataclasses.replace(
                states['web.socket'], state_changed_at=failed_at, trigger_limit_interval=2.0
            )
        return states

    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if seconds >= 0.5:  # ours: the rest of the window (others poll in short naps)
            slept.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(_systemd, 'show', show)
    monkeypatch.setattr(_systemd_services.time, 'sleep', sleep)

    assert services.bring_back(before) == BringBackResult()

    assert len(slept) == 1
    assert 1.0 < slept[0] <= 1.5


def test_the_systemctl_calls_the_design_page_counts_beyond_the_usual_ones(
    fake_systemd: FakeSystemd,
):
    # docs/explanation/design.md, "Enablement is links, and links are what is restored".
    fake_systemd.add_unit('web', enabled='static')
    fake_systemd.add_unit('web.socket')
    services = SystemdServices(['web'], allow_unlisted_triggers=True)
    before = services.read_state()
    assert fake_systemd.commands() == ['show', 'show']  # the unlisted trigger, read apart
    fake_systemd.clear_calls()
    services.take_down(before)
    assert fake_systemd.commands() == ['daemon-reload', 'stop']

    fake_systemd.add_unit('idle', enabled='disabled', active=False)
    idle = SystemdServices(['idle'])
    before = idle.read_state()
    idle.take_down(before)
    fake_systemd.clear_calls()
    idle.bring_back(before)
    assert fake_systemd.commands() == ['show', 'daemon-reload', 'show']  # nothing to start
