# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from charm_upgrade import (
    Journal,
    Migration,
    MigrationContext,
    MigrationError,
    Migrations,
    SeriesUpgradeFlow,
    ServiceError,
    Services,
    Step,
    SystemdError,
    SystemdServices,
)
from charm_upgrade._flags import (
    APPLICATION_DISABLED,
    APPLICATION_STARTED,
    UPGRADE_SERIES_IN_PROGRESS,
)
from charm_upgrade._migrations import REFRESH, SERIES

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Mapping

    from charm_upgrade.testing._fake_systemd import FakeSystemd


class DictFlags:
    def __init__(self, *flags: str):
        self.flags = set(flags)

    def is_set(self, flag: str) -> bool:
        return flag in self.flags

    def set(self, flag: str) -> None:
        self.flags.add(flag)

    def clear(self, flag: str) -> None:
        self.flags.discard(flag)


class RecordingGroup(Services):
    """A services group that logs what the flow asks of it."""

    def __init__(self, name: str, log: list[str]):
        self._name = name
        self._log = log

    @property
    def key(self) -> str:
        return f'test:{self._name}'

    @property
    def names(self) -> list[str]:
        return [self._name]

    def read_state(self) -> dict[str, Any]:
        self._log.append(f'read {self._name}')
        return {'kind': 'test', 'running': True}

    def take_down(self, before: Mapping[str, Any]) -> None:
        self._log.append(f'down {self._name}')

    def bring_back(self, before: Mapping[str, Any]) -> None:
        self._log.append(f'up {self._name}')


@pytest.fixture
def units(fake_systemd: FakeSystemd) -> SystemdServices:
    fake_systemd.add_unit('web.service')
    fake_systemd.add_unit('cron.service', enabled='disabled', active=False)
    return SystemdServices(['web', 'cron'])


def prepare(flow: SeriesUpgradeFlow, target: str | None = 'ubuntu@24.04') -> Step:
    flow.flags.set(UPGRADE_SERIES_IN_PROGRESS)
    return flow.run(target_base=target)


def complete(flow: SeriesUpgradeFlow) -> Step:
    flow.flags.clear(UPGRADE_SERIES_IN_PROGRESS)
    return flow.run()


def test_nothing_happens_outside_an_upgrade(units: SystemdServices, fake_systemd: FakeSystemd):
    flow = SeriesUpgradeFlow(units, flags=DictFlags(APPLICATION_STARTED))
    assert flow.next_step() is Step.NOTHING
    assert flow.run() is Step.NOTHING
    assert fake_systemd.calls == []


def test_services_that_never_started_are_not_taken_down(
    units: SystemdServices, fake_systemd: FakeSystemd
):
    flow = SeriesUpgradeFlow(units, flags=DictFlags())
    assert prepare(flow) is Step.NOTHING
    assert fake_systemd.calls == []


def test_prepare_then_complete(
    units: SystemdServices, fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    migrations: list[tuple[str, str]] = []
    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags, migrate=lambda o, n: migrations.append((o, n)))

    assert prepare(flow) is Step.TOOK_DOWN
    assert flags.is_set(APPLICATION_DISABLED)
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    record = flow.read_record()
    assert record is not None
    assert record.old_base == 'ubuntu@22.04'
    assert record.target_base == 'ubuntu@24.04'
    assert record.services['systemd:web.service,cron.service']['units']['web.service'] == {
        'id': 'web.service',
        'is_enabled': 'enabled',
        'running': True,
    }

    # An unrelated hook during the upgrade (update-status, a start after reboot).
    fake_systemd.clear_calls()
    assert flow.run() is Step.NOTHING
    assert fake_systemd.calls == []

    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    assert complete(flow) is Step.BROUGHT_BACK
    assert migrations == [('ubuntu@22.04', 'ubuntu@24.04')]
    assert not flags.is_set(APPLICATION_DISABLED)
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}
    record = flow.read_record()
    assert record is not None
    assert record.phase == 'completed'
    assert record.migrated is True

    # And after complete, hooks do nothing again.
    fake_systemd.clear_calls()
    assert flow.run() is Step.NOTHING
    assert fake_systemd.calls == []


def test_bad_service_fails_before_anything_is_touched(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('web.service')
    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(SystemdServices(['web', 'typo']), flags=flags)
    with pytest.raises(ServiceError, match=r'typo\.service'):
        prepare(flow)
    assert fake_systemd.commands() == ['show']
    assert not flags.is_set(APPLICATION_DISABLED)
    assert flow.read_record() is None
    assert fake_systemd.unit('web.service')['active'] == 'active'


def test_retried_prepare_reuses_the_first_before_state(
    units: SystemdServices, fake_systemd: FakeSystemd
):
    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags)
    fake_systemd.fail_next('stop', 'Job for web.service canceled.')
    with pytest.raises(SystemdError):
        prepare(flow)
    # The hook failed: its flags are not committed; the units are disabled but running.
    assert not flags.is_set(APPLICATION_DISABLED)
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'active'}

    assert prepare(flow) is Step.TOOK_DOWN
    assert fake_systemd.commands().count('show') == 1  # not re-recorded half-stopped
    complete(flow)
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}


def test_a_failed_migration_is_retried_and_a_done_one_is_not(
    units: SystemdServices, fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    calls: list[str] = []

    def migrate(old: str, new: str) -> None:
        calls.append(new)
        if len(calls) == 1:
            raise RuntimeError('disk full')

    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags, migrate=migrate)
    prepare(flow)
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    with pytest.raises(RuntimeError, match='disk full'):
        complete(flow)
    assert flags.is_set(APPLICATION_DISABLED)
    assert fake_systemd.unit('web.service')['active'] == 'inactive'  # not started half-migrated

    fake_systemd.fail_next('start', 'Job for web.service failed.')
    with pytest.raises(SystemdError):
        flow.run()
    assert calls == ['ubuntu@24.04', 'ubuntu@24.04']  # ran again, and succeeded

    assert flow.run() is Step.BROUGHT_BACK
    assert calls == ['ubuntu@24.04', 'ubuntu@24.04']  # not a third time
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}


def test_groups_go_down_in_order_and_come_back_in_reverse():
    log: list[str] = []
    flow = SeriesUpgradeFlow(
        [RecordingGroup('db', log), RecordingGroup('app', log)],
        flags=DictFlags(APPLICATION_STARTED),
    )
    prepare(flow)
    complete(flow)
    assert log == ['read db', 'read app', 'down db', 'down app', 'up app', 'up db']


@pytest.mark.parametrize('services', [[], ['web.service'], 'web'])
def test_services_must_be_groups(services: Any):
    with pytest.raises(ServiceError):
        SeriesUpgradeFlow(services, flags=DictFlags())


def test_the_same_group_twice_is_refused():
    with pytest.raises(ServiceError, match='more than once'):
        SeriesUpgradeFlow(
            [SystemdServices(['a']), SystemdServices(['a.service'])], flags=DictFlags()
        )


def test_target_base_falls_back_to_os_release_at_complete(
    units: SystemdServices, os_release: pathlib.Path
):
    seen: list[tuple[str, str]] = []
    flow = SeriesUpgradeFlow(
        units, flags=DictFlags(APPLICATION_STARTED), migrate=lambda o, n: seen.append((o, n))
    )
    prepare(flow, target=None)
    os_release.write_text('ID=ubuntu\nVERSION_ID=24.04\n')
    complete(flow)
    assert seen == [('ubuntu@22.04', 'ubuntu@24.04')]


def test_a_missing_record_brings_everything_back(
    units: SystemdServices, fake_systemd: FakeSystemd, caplog: pytest.LogCaptureFixture
):
    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags)
    prepare(flow)
    flow.record_path.unlink()
    with caplog.at_level(logging.WARNING):
        complete(flow)
    assert 'No before-state record' in caplog.text
    assert fake_systemd.unit('cron.service') == {'enabled': 'enabled', 'active': 'active'}


def test_a_second_upgrade_records_a_fresh_before_state(
    units: SystemdServices, fake_systemd: FakeSystemd
):
    flow = SeriesUpgradeFlow(units, flags=DictFlags(APPLICATION_STARTED))
    prepare(flow)
    complete(flow)
    fake_systemd.add_unit('cron.service', enabled='enabled', active=True)  # operator changed it
    prepare(flow, target='ubuntu@26.04')
    record = flow.read_record()
    assert record is not None
    assert record.phase == 'prepared'
    assert record.target_base == 'ubuntu@26.04'
    cron = record.services['systemd:web.service,cron.service']['units']['cron.service']
    assert cron['is_enabled'] == 'enabled'


def test_stages_are_journaled(
    units: SystemdServices, state_dir: pathlib.Path, os_release: pathlib.Path
):
    journal = Journal()
    flow = SeriesUpgradeFlow(
        units, flags=DictFlags(APPLICATION_STARTED), journal=journal, migrate=lambda o, n: None
    )
    prepare(flow)
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    complete(flow)
    events = [(r['stage'], r['event']) for r in journal.read()]
    assert events == [
        ('series-prepare', 'start'),
        ('services-down', 'start'),
        ('services-down', 'ended'),
        ('series-prepare', 'ended'),
        ('series-complete', 'start'),
        ('series-migrate', 'start'),
        ('series-migrate', 'ended'),
        ('services-up', 'start'),
        ('services-up', 'ended'),
        ('series-complete', 'ended'),
    ]
    lines = (state_dir / 'journal.jsonl').read_text().splitlines()
    assert all(json.loads(line)['v'] == 1 for line in lines)


def test_preview_of_prepare_and_complete_changes_nothing(
    units: SystemdServices, fake_systemd: FakeSystemd, state_dir: pathlib.Path
):
    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags, migrate=lambda o, n: None)
    preview = flow.preview(target_base='ubuntu@24.04')
    assert preview.step == 'series-prepare'
    assert [(s.name, s.action) for s in preview.services] == [
        ('web.service', 'stop, disable, hold'),
        ('cron.service', 'hold'),
    ]
    assert fake_systemd.commands() == ['show']
    assert flow.read_record() is None
    assert not (state_dir / 'journal.jsonl').exists()

    prepare(flow)
    flags.clear(UPGRADE_SERIES_IN_PROGRESS)
    fake_systemd.clear_calls()
    preview = flow.preview()
    assert preview.step == 'series-complete'
    assert preview.pending_migrations == ('migrate',)
    assert preview.target_base == 'ubuntu@24.04'
    assert [(s.name, s.action) for s in preview.services] == [
        ('web.service', 'release, enable, start'),
        ('cron.service', 'release, stays stopped'),
    ]
    assert fake_systemd.calls == []
    assert 'web.service (running, enabled): release, enable, start' in preview.format()
    assert preview.to_dict()['before_state']['phase'] == 'prepared'


def test_preview_of_a_unit_that_never_started(units: SystemdServices):
    preview = SeriesUpgradeFlow(units, flags=DictFlags()).preview()
    assert preview.services == ()
    assert 'never started' in preview.summary


def test_a_unit_a_package_enabled_during_the_upgrade_is_disabled_again(
    units: SystemdServices, fake_systemd: FakeSystemd
):
    flow = SeriesUpgradeFlow(units, flags=DictFlags(APPLICATION_STARTED))
    prepare(flow)
    fake_systemd.add_unit('cron.service', enabled='enabled', active=False)  # a postinst did it
    complete(flow)
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}


def test_groups_dropped_from_the_list_between_prepare_and_complete_come_back(
    fake_systemd: FakeSystemd,
):
    fake_systemd.add_unit('web.service')
    fake_systemd.add_unit('old.service')
    flags = DictFlags(APPLICATION_STARTED)
    prepare(SeriesUpgradeFlow([SystemdServices(['web']), SystemdServices(['old'])], flags=flags))
    assert fake_systemd.unit('old.service')['active'] == 'inactive'
    # An upgrade-charm during the upgrade removed `old` from the charm's list.
    complete(SeriesUpgradeFlow(SystemdServices(['web']), flags=flags))
    assert fake_systemd.held() == []
    assert fake_systemd.unit('old.service') == {'enabled': 'enabled', 'active': 'active'}


# Migrations (charm_upgrade._migrations) in the flow ----------------------------


def test_series_migrations_run_after_migrate_and_before_services_return(
    os_release: pathlib.Path,
):
    log: list[str] = []
    migrations = Migrations(
        [
            Migration(
                '1', 'one', kind=SERIES, up=lambda ctx: log.append(f'1 {ctx.old} {ctx.new}')
            ),
            Migration('2', 'refresh', kind=REFRESH, up=lambda ctx: log.append('refresh!')),
        ]
    )
    flow = SeriesUpgradeFlow(
        RecordingGroup('app', log),
        flags=DictFlags(APPLICATION_STARTED),
        migrate=lambda old, new: log.append('migrate'),
        migrations=migrations,
    )
    prepare(flow)
    assert flow.preview().pending_migrations == ('migrate', '1 (up): one')
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    assert complete(flow) is Step.BROUGHT_BACK

    assert log == ['read app', 'down app', 'migrate', '1 ubuntu@22.04 ubuntu@24.04', 'up app']
    stages = [f'{r["stage"]} {r["event"]}' for r in Journal().read()]
    assert stages[stages.index('series-migrate ended') :] == [
        'series-migrate ended',
        'migrations start',
        'migration:1 start',
        'migration:1 ended',
        'migrations ended',
        'services-up start',
        'services-up ended',
        'series-complete ended',
    ]
    assert flow.preview().pending_migrations == ('migrate',)  # the next upgrade's


def test_a_failed_series_migration_keeps_the_services_down_until_a_retry_succeeds(
    os_release: pathlib.Path,
):
    log: list[str] = []
    broken = [True]

    def up(ctx: MigrationContext) -> None:
        if broken[0]:
            raise RuntimeError('config unreadable')
        log.append(f'migrated interrupted={ctx.interrupted}')

    flow = SeriesUpgradeFlow(
        RecordingGroup('app', log),
        flags=DictFlags(APPLICATION_STARTED),
        migrations=Migrations([Migration('1', 'fix', kind=SERIES, up=up)]),
    )
    prepare(flow)
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    with pytest.raises(MigrationError, match=r'migration 1 \(fix\) failed'):
        complete(flow)
    assert log == ['read app', 'down app']
    assert flow.next_step() is Step.BROUGHT_BACK  # still down, still to do

    broken[0] = False
    assert flow.run() is Step.BROUGHT_BACK
    assert log[2:] == ['migrated interrupted=True', 'up app']


def test_complete_without_an_os_upgrade_migrates_nothing_and_brings_back(
    units: SystemdServices,
    fake_systemd: FakeSystemd,
    os_release: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
):
    # The operator ran complete, but do-release-upgrade failed or never ran.
    ran: list[str] = []
    migrations = Migrations(
        [Migration('1', 'fix', kind=SERIES, up=lambda ctx: ran.append(ctx.migration_id))]
    )
    journal = Journal()
    flow = SeriesUpgradeFlow(
        units,
        flags=DictFlags(APPLICATION_STARTED),
        migrate=lambda o, n: ran.append(f'migrate {o} {n}'),
        migrations=migrations,
        journal=journal,
    )
    prepare(flow)

    with caplog.at_level(logging.WARNING):
        assert complete(flow) is Step.BROUGHT_BACK

    assert ran == []
    assert 'the OS was not upgraded' in caplog.text
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert [m.id for m in migrations.pending(SERIES)] == ['1']  # for the real upgrade
    (ended,) = [
        r for r in journal.read() if (r['stage'], r['event']) == ('series-complete', 'ended')
    ]
    assert ended['details']['not_migrated'] == 'the machine still runs ubuntu@22.04'


def test_migrations_go_to_the_base_the_machine_runs_not_the_one_targeted(
    units: SystemdServices, os_release: pathlib.Path, caplog: pytest.LogCaptureFixture
):
    seen: list[tuple[str, str]] = []
    flow = SeriesUpgradeFlow(
        units, flags=DictFlags(APPLICATION_STARTED), migrate=lambda o, n: seen.append((o, n))
    )
    prepare(flow, target='ubuntu@24.04')
    os_release.write_text('ID=ubuntu\nVERSION_ID="23.10"\n')  # an interim release
    with caplog.at_level(logging.WARNING):
        complete(flow)
    assert seen == [('ubuntu@22.04', 'ubuntu@23.10')]
    assert 'targeted ubuntu@24.04 but this machine now runs ubuntu@23.10' in caplog.text
