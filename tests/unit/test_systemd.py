# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from charm_upgrade import ServiceError, SystemdError, SystemdServices
from charm_upgrade import _systemd as systemd

if TYPE_CHECKING:
    from charm_upgrade.testing._fake_systemd import FakeSystemd


@pytest.mark.parametrize(
    ('given', 'expected'),
    [
        ('myapp', 'myapp.service'),
        ('myapp.service', 'myapp.service'),
        ('myapp-worker.socket', 'myapp-worker.socket'),
        ('getty@tty1', 'getty@tty1.service'),
        ('db.timer', 'db.timer'),
    ],
)
def test_unit_names_default_to_service(given: str, expected: str):
    assert systemd.normalise_unit_name(given) == expected


@pytest.mark.parametrize('bad', ['', '  ', 'my app', '../etc/passwd', 'a/b'])
def test_invalid_unit_names_are_refused(bad: str):
    with pytest.raises(ServiceError, match='invalid systemd unit name'):
        systemd.normalise_unit_name(bad)


def test_show_reads_every_unit_in_one_call(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('a.service')
    fake_systemd.add_unit('b.service', enabled='disabled', active=False)
    states = systemd.show(['a.service', 'b.service', 'ghost.service'])
    assert fake_systemd.commands() == ['show']
    assert states['a.service'].enabled and states['a.service'].running
    assert not states['b.service'].enabled and not states['b.service'].running
    assert not states['ghost.service'].exists


def test_hold_keeps_a_unit_in_etc_from_starting(fake_systemd: FakeSystemd):
    # mask is refused for /etc units: this is why the library holds with a drop-in.
    fake_systemd.add_unit('app.service', path='/etc/systemd/system/app.service', active=False)
    with pytest.raises(SystemdError, match='already exists'):
        systemd.systemctl('mask', 'app.service')
    systemd.hold(['app.service'])
    dropin = fake_systemd.config_dir / 'app.service.d' / systemd.HOLD_DROPIN_NAME
    assert 'ConditionPathExists=!/' in dropin.read_text()
    systemd.systemctl('start', 'app.service')
    assert fake_systemd.unit('app.service')['active'] == 'inactive'
    systemd.release(['app.service'])
    assert not dropin.parent.exists()
    systemd.systemctl('start', 'app.service')
    assert fake_systemd.unit('app.service')['active'] == 'active'


def test_release_keeps_other_dropins(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app.service')
    other = fake_systemd.config_dir / 'app.service.d' / 'override.conf'
    other.parent.mkdir(parents=True)
    other.write_text('[Service]\nNice=5\n')
    systemd.hold(['app.service'])
    systemd.release(['app.service'])
    systemd.release(['app.service'])  # twice: idempotent
    assert other.read_text() == '[Service]\nNice=5\n'
    assert not systemd.is_held('app.service')


def test_a_releasable_hold_opens_without_a_reload_and_goes_with_one(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app.service', path='/etc/systemd/system/app.service', active=False)
    systemd.hold(['app.service'], releasable=True)
    systemd.systemctl('start', 'app.service')
    assert fake_systemd.unit('app.service')['active'] == 'inactive'  # held
    fake_systemd.clear_calls()

    assert systemd.let_start(['app.service'])
    systemd.systemctl('start', 'app.service')

    assert fake_systemd.commands() == ['start']  # no daemon-reload before the start
    assert fake_systemd.unit('app.service')['active'] == 'active'
    systemd.release(['app.service'])
    assert not (fake_systemd.config_dir / 'app.service.d').exists()  # drop-in and flag gone


def test_a_new_hold_is_not_opened_by_the_flag_an_unfinished_release_left(
    fake_systemd: FakeSystemd,
):
    fake_systemd.add_unit('app.service', active=False)
    systemd.hold(['app.service'], releasable=True)
    assert systemd.let_start(['app.service'])  # ... and the hook died before the release

    systemd.hold(['app.service'], releasable=True)
    systemd.systemctl('start', 'app.service')

    assert fake_systemd.unit('app.service')['active'] == 'inactive'


def test_let_start_refuses_a_hold_only_a_release_opens(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app.service', active=False)
    fake_systemd.add_unit('db.service', active=False)
    systemd.hold(['app.service'], releasable=True)
    systemd.hold(['db.service'])  # a series upgrade's

    assert not systemd.let_start(['app.service', 'db.service'])
    assert not (fake_systemd.config_dir / 'app.service.d' / systemd.RELEASE_FLAG_NAME).exists()
    assert not systemd.let_start(['web.service'])  # not held at all


def test_systemctl_failure_names_the_command_and_stderr(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('a.service')
    fake_systemd.fail_next('stop', 'Job for a.service canceled.')
    with pytest.raises(SystemdError, match=r'`systemctl .*stop a.service` failed') as info:
        systemd.systemctl('stop', 'a.service')
    assert info.value.returncode == 1
    assert 'canceled' in info.value.stderr


def test_missing_systemctl_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(SystemdError, match='not found on PATH'):
        SystemdServices(['a']).read_state()


def test_show_output_with_a_missing_block_is_refused(
    fake_systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(systemd, 'systemctl', lambda *args: 'Id=a.service\nLoadState=loaded\n')
    with pytest.raises(SystemdError, match='reported 1 units for the 2 asked'):
        systemd.show(['a.service', 'b.service'])
