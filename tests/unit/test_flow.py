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
from charm_upgrade._series_status import series_intent
from charm_upgrade._status import StatusIntent

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Mapping

    from charm_upgrade.testing._fake_systemd import FakeSystemd


class DictFlags:
    """Flags with values, as charms.reactive keeps them; committed only by commit()."""

    def __init__(self, *flags: str):
        self.values: dict[str, str | None] = dict.fromkeys(flags)

    @property
    def flags(self) -> set[str]:
        return set(self.values)

    def is_set(self, flag: str) -> bool:
        return flag in self.values

    def set(self, flag: str, value: str | None = None) -> None:
        self.values[flag] = value

    def clear(self, flag: str) -> None:
        self.values.pop(flag, None)

    def value(self, flag: str) -> str | None:
        return self.values.get(flag)


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
    web = record.services['systemd:web.service,cron.service']['units']['web.service']
    assert (web['id'], web['is_enabled'], web['running']) == ('web.service', 'enabled', True)
    assert web['wants'] == {
        'multi-user.target.wants/web.service': str(fake_systemd.config_dir / 'web.service')
    }
    assert flags.value(APPLICATION_DISABLED) == record.token

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
    with pytest.raises(MigrationError, match=r'migrate failed \(RuntimeError: disk full\)'):
        complete(flow)
    assert flags.is_set(APPLICATION_DISABLED)
    assert fake_systemd.unit('web.service')['active'] == 'inactive'  # not started half-migrated

    fake_systemd.fail_next('daemon-reload', 'Failed to reload daemon: Connection timed out')
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


def test_a_missing_record_brings_nothing_back(
    units: SystemdServices, fake_systemd: FakeSystemd, caplog: pytest.LogCaptureFixture
):
    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags)
    prepare(flow)
    flow.record_path.unlink()
    fake_systemd.clear_calls()
    assert complete(flow) is Step.NOTHING
    # No record of what was taken down: nothing is "restored" from a guess.
    assert fake_systemd.calls == []
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert flags.is_set(APPLICATION_DISABLED)


def test_a_disabled_flag_set_by_someone_else_is_never_restored(fake_systemd: FakeSystemd):
    # A charm passed its pause flag as the disabled flag; the operator paused
    # the unit: the services are stopped and disabled by the charm, not by us.
    fake_systemd.add_unit('web.service', enabled='disabled', active=False)
    flags = DictFlags(APPLICATION_STARTED, 'charm.paused')
    flow = SeriesUpgradeFlow(SystemdServices(['web']), flags=flags, disabled_flag='charm.paused')
    fake_systemd.clear_calls()

    assert flow.run() is Step.NOTHING  # update-status, say

    assert fake_systemd.calls == []
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert flags.is_set('charm.paused')
    # Nor after an upgrade of ours that completed long ago.
    flags.clear('charm.paused')
    prepare(flow)
    complete(flow)
    flags.set('charm.paused')
    fake_systemd.clear_calls()
    assert flow.run() is Step.NOTHING
    assert fake_systemd.calls == []
    assert flags.is_set('charm.paused')


def test_our_flag_left_set_by_a_failed_hook_after_complete_is_cleared(
    units: SystemdServices, fake_systemd: FakeSystemd
):
    # complete brought everything back, then a later handler failed the hook:
    # the framework dropped the flag's clear, but the record says completed.
    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags)
    prepare(flow)
    held_token = flags.value(APPLICATION_DISABLED)
    complete(flow)
    flags.set(APPLICATION_DISABLED, held_token)  # the dropped clear
    fake_systemd.clear_calls()

    assert flow.run() is Step.NOTHING

    assert not flags.is_set(APPLICATION_DISABLED)
    assert fake_systemd.calls == []


@pytest.mark.parametrize(
    ('started', 'taken_down'),
    [
        (lambda: True, True),
        (lambda: False, False),
        (None, True),
        ('components.started', False),
    ],
)
def test_the_started_condition_is_a_flag_a_callable_or_absent(
    units: SystemdServices, fake_systemd: FakeSystemd, started: Any, taken_down: bool
):
    # The default flag is set, but the flow asks what it was given.
    flow = SeriesUpgradeFlow(units, flags=DictFlags(APPLICATION_STARTED), started=started)
    step = prepare(flow)
    assert (step is Step.TOOK_DOWN) is taken_down
    assert (fake_systemd.unit('web.service')['active'] == 'inactive') is taken_down


def test_a_started_callable_is_asked_only_at_prepare(units: SystemdServices):
    asked: list[str] = []
    flow = SeriesUpgradeFlow(
        units, flags=DictFlags(), started=lambda: bool(asked.append('asked')) or True
    )
    flow.run()  # update-status
    assert asked == []
    prepare(flow)
    assert asked == ['asked']
    complete(flow)
    assert asked == ['asked']


def test_callbacks_run_around_the_hold_with_their_step(
    units: SystemdServices, fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    log: list[str] = []
    fail = {'drain': 1, 'uncordon': 1}

    def drain() -> None:
        log.append(f'drain web={fake_systemd.unit("web.service")["active"]}')
        if fail['drain']:
            fail['drain'] -= 1
            raise RuntimeError('kubectl drain timed out')

    def uncordon() -> None:
        log.append(f'uncordon web={fake_systemd.unit("web.service")["active"]}')
        if fail['uncordon']:
            fail['uncordon'] -= 1
            raise RuntimeError('the API server is not up yet')

    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags, before_take_down=drain, after_bring_back=uncordon)
    assert flow.preview().callbacks == ('before_take_down: drain', 'after_bring_back: uncordon')
    # A failing drain fails prepare before any service is touched; a retry drains again.
    with pytest.raises(RuntimeError, match='drain timed out'):
        prepare(flow)
    assert fake_systemd.unit('web.service')['active'] == 'active'
    assert prepare(flow) is Step.TOOK_DOWN
    assert log == ['drain web=active', 'drain web=active']
    assert [c.split(':')[0] for c in flow.preview().callbacks] == ['after_bring_back']

    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    with pytest.raises(RuntimeError, match='API server'):
        complete(flow)
    assert flags.is_set(APPLICATION_DISABLED)  # the step is not done: it runs again
    assert complete(flow) is Step.BROUGHT_BACK
    assert log[2:] == ['uncordon web=active', 'uncordon web=active']
    assert not flags.is_set(APPLICATION_DISABLED)
    callbacks = ('before-take-down', 'after-bring-back')
    stages = [(r['stage'], r['event']) for r in Journal().read() if r['stage'] in callbacks]
    assert stages == [
        ('before-take-down', 'start'),
        ('before-take-down', 'failed'),
        ('before-take-down', 'start'),
        ('before-take-down', 'ended'),
        ('after-bring-back', 'start'),
        ('after-bring-back', 'failed'),
        ('after-bring-back', 'start'),
        ('after-bring-back', 'ended'),
    ]


def test_a_unit_the_os_upgrade_removed_is_skipped_and_the_rest_come_back(
    fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    fake_systemd.add_unit('app.service')
    fake_systemd.add_unit('helper.service')
    flags = DictFlags(APPLICATION_STARTED)
    journal = Journal()
    flow = SeriesUpgradeFlow(SystemdServices(['app', 'helper']), flags=flags, journal=journal)
    prepare(flow)
    fake_systemd.remove_unit('helper.service')  # the new release dropped it
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    assert complete(flow) is Step.BROUGHT_BACK

    assert fake_systemd.unit('app.service') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.held() == []
    assert flow.last_result is not None
    assert flow.last_result.skipped == {
        'helper.service': 'no longer exists after the OS upgrade: skipped'
    }
    record = flow.read_record()
    assert record is not None
    assert record.phase == 'completed'
    assert record.skipped == flow.last_result.skipped
    (up,) = [e for e in journal.timeline() if e.stage == 'services-up']
    assert up.details['skipped'] == flow.last_result.skipped
    assert up.details['group'] == 'systemd:app.service,helper.service'


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
    downs = [
        r['details']
        for r in journal.read()
        if (r['stage'], r['event']) == ('services-down', 'start')
    ]
    assert downs[0] == {
        'group': 'systemd:web.service,cron.service',
        'services': ['web.service', 'cron.service'],
        'upgrade': 'series upgrade ubuntu@22.04 -> ubuntu@24.04',
    }
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
    assert fake_systemd.links('cron.service') == []


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


def test_a_failing_migrate_callback_is_held_like_a_failing_series_migration(
    units: SystemdServices, fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    broken = [True]

    def migrate(old: str, new: str) -> None:
        if broken[0]:
            raise OSError('/etc/myapp is read-only')

    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags, migrate=migrate)
    prepare(flow)
    flags.clear(UPGRADE_SERIES_IN_PROGRESS)
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    with pytest.raises(MigrationError) as info:
        flow.run()

    assert info.value.migration_id == 'migrate'
    assert fake_systemd.unit('web.service')['active'] == 'inactive'
    # The status says which migration holds the services, not "run complete".
    assert series_intent(flow, in_progress=False) == StatusIntent(
        'blocked',
        'Migration migrate failed (OSError: /etc/myapp is read-only); see upgrade-journal; '
        'services stay down',
        'series',
    )
    broken[0] = False
    assert flow.run() is Step.BROUGHT_BACK
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert flow.migrate_failure() is None
    assert series_intent(flow, in_progress=False) is None


def test_a_renamed_refresh_migration_does_not_keep_the_services_down_at_complete(
    units: SystemdServices, fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    # A refresh migration applied under a name a later charm revision fixed.
    Migrations([Migration('20260301-db-v2-typo', 'db', kind=REFRESH, up=lambda ctx: None)]).run(
        REFRESH, old='1', new='2'
    )
    ran: list[str] = []
    migrations = Migrations(
        [
            Migration('20260301-db-v2', 'db', kind=REFRESH, up=lambda ctx: None),
            Migration('20260401-paths', 'paths', kind=SERIES, up=lambda c: ran.append(c.new)),
        ]
    )
    flags = DictFlags(APPLICATION_STARTED)
    flow = SeriesUpgradeFlow(units, flags=flags, migrations=migrations)
    prepare(flow)
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    assert complete(flow) is Step.BROUGHT_BACK

    assert ran == ['ubuntu@24.04']
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    # A series migration the code does not know still holds a series upgrade.
    assert migrations.blocked_message(REFRESH) is not None
    assert migrations.blocked_message(SERIES) is None
