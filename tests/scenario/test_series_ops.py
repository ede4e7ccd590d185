# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""SeriesUpgrade in an ops charm, run by ops.testing, with a stand-in systemctl."""

from __future__ import annotations

import pathlib
from typing import Any

import ops
import pytest
from ops import testing

import charm_upgrade
from charm_upgrade.testing._fake_systemd import FakeSystemd

META: dict[str, Any] = {'name': 'demo'}
BLOCKED = (
    'Services stopped and disabled for the OS upgrade; when it is done, '
    'run `juju upgrade-machine 7 complete`'
)
MIGRATIONS: list[tuple[str, str]] = []


class DemoCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.series_upgrade = charm_upgrade.SeriesUpgrade(
            self,
            services=charm_upgrade.SystemdServices(['web', 'cron']),
            migrate=lambda old, new: MIGRATIONS.append((old, new)),
        )
        framework.observe(self.on.start, self._on_start)

    def _on_start(self, _: ops.StartEvent) -> None:
        if not self.series_upgrade.services_disabled:
            self.unit.status = ops.ActiveStatus('serving')


@pytest.fixture(autouse=True)
def _units(fake_systemd: FakeSystemd, os_release: pathlib.Path):
    MIGRATIONS.clear()
    fake_systemd.add_unit('web.service')
    fake_systemd.add_unit('cron.service', enabled='disabled', active=False)


@pytest.fixture
def ctx() -> testing.Context[DemoCharm]:
    return testing.Context(DemoCharm, meta=META, machine_id='7', juju_version='3.6.14')


def prepare(ctx: testing.Context[DemoCharm], state: testing.State) -> testing.State:
    with pytest.warns(DeprecationWarning, match='pre-series-upgrade'):
        return ctx.run(ctx.on.pre_series_upgrade(), state)


def complete(ctx: testing.Context[DemoCharm], state: testing.State) -> testing.State:
    with pytest.warns(DeprecationWarning, match='post-series-upgrade'):
        return ctx.run(ctx.on.post_series_upgrade(), state)


def flags(state: testing.State) -> list[str]:
    stored = state.get_stored_state(
        '_stored', owner_path='DemoCharm/SeriesUpgrade[series-upgrade]'
    )
    return list(stored.content['flags'])


def test_prepare_update_status_complete(
    ctx: testing.Context[DemoCharm],
    fake_systemd: FakeSystemd,
    os_release: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
):
    state = ctx.run(ctx.on.start(), testing.State())
    assert state.unit_status == testing.ActiveStatus('serving')
    assert flags(state) == ['charm.application.started']

    monkeypatch.setenv('JUJU_TARGET_BASE', 'ubuntu@24.04')
    state = prepare(ctx, state)
    monkeypatch.delenv('JUJU_TARGET_BASE')
    assert state.unit_status == testing.BlockedStatus(BLOCKED)
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert 'charm.application.disabled' in flags(state)

    fake_systemd.clear_calls()
    state = ctx.run(ctx.on.update_status(), state)
    state = ctx.run(ctx.on.start(), state)  # the start after a reboot
    assert fake_systemd.calls == []
    assert state.unit_status == testing.BlockedStatus(BLOCKED)

    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    state = complete(ctx, state)
    assert MIGRATIONS == [('ubuntu@22.04', 'ubuntu@24.04')]
    assert state.unit_status == testing.ActiveStatus()
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert flags(state) == ['charm.application.started']


def test_juju_2_9_status_names_upgrade_series(fake_systemd: FakeSystemd):
    ctx = testing.Context(DemoCharm, meta=META, machine_id='3', juju_version='2.9.49')
    state = ctx.run(ctx.on.start(), testing.State())
    state = prepare(ctx, state)
    assert 'run `juju upgrade-series 3 complete`' in state.unit_status.message


def test_a_failed_prepare_hook_is_retried_and_converges(
    ctx: testing.Context[DemoCharm], fake_systemd: FakeSystemd
):
    started = ctx.run(ctx.on.start(), testing.State())
    fake_systemd.fail_next('stop', 'Job for web.service canceled.')
    with pytest.raises(testing.errors.UncaughtCharmError) as info:
        prepare(ctx, started)
    assert isinstance(info.value.__cause__, charm_upgrade.SystemdError)
    # Juju drops the failed hook's state; `juju resolved` runs it again from there.
    state = prepare(ctx, started)
    assert state.unit_status == testing.BlockedStatus(BLOCKED)
    state = complete(ctx, state)
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}


def test_a_failed_complete_hook_is_retried_and_converges(
    ctx: testing.Context[DemoCharm], fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    state = prepare(ctx, ctx.run(ctx.on.start(), testing.State()))
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    fake_systemd.fail_next('daemon-reload', 'Failed to reload daemon: Connection timed out')
    with pytest.raises(testing.errors.UncaughtCharmError):
        complete(ctx, state)
    state = complete(ctx, state)
    assert MIGRATIONS == [('ubuntu@22.04', 'ubuntu@24.04')]  # once: it had succeeded
    assert state.unit_status == testing.ActiveStatus()
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}


def test_a_unit_that_does_not_start_is_named_and_the_others_come_back(
    ctx: testing.Context[DemoCharm], fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    fake_systemd.add_unit('cron.service')  # enabled and running, this time
    state = prepare(ctx, ctx.run(ctx.on.start(), testing.State()))
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    fake_systemd.remove_unit('cron.service')  # the new release dropped it

    state = complete(ctx, state)

    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert state.unit_status == testing.BlockedStatus(
        'OS upgrade complete, but not brought back: '
        'cron.service (no longer exists after the OS upgrade: skipped)'
    )


def test_a_status_the_charm_changed_is_left_alone(
    ctx: testing.Context[DemoCharm], fake_systemd: FakeSystemd
):
    state = prepare(ctx, ctx.run(ctx.on.start(), testing.State()))
    state = testing.State(
        unit_status=testing.MaintenanceStatus('operator note'),
        stored_states=state.stored_states,
    )
    state = complete(ctx, state)
    assert state.unit_status == testing.MaintenanceStatus('operator note')


def test_a_unit_that_never_started_is_not_touched(
    ctx: testing.Context[DemoCharm], fake_systemd: FakeSystemd
):
    state = prepare(ctx, testing.State())
    assert fake_systemd.calls == []
    assert state.unit_status == testing.UnknownStatus()


def test_properties_follow_the_upgrade(ctx: testing.Context[DemoCharm]):
    state = ctx.run(ctx.on.start(), testing.State())
    with ctx(ctx.on.update_status(), state) as manager:
        upgrade = manager.charm.series_upgrade
        assert not upgrade.in_progress
        assert not upgrade.services_disabled
        assert upgrade.status is None
        manager.run()
    state = prepare(ctx, state)
    with ctx(ctx.on.update_status(), state) as manager:
        upgrade = manager.charm.series_upgrade
        assert upgrade.in_progress
        assert upgrade.services_disabled
        assert upgrade.status == ops.BlockedStatus(BLOCKED)
        manager.run()


CALLS: list[str] = []
BROKEN: list[bool] = []


class DrainingCharm(ops.CharmBase):
    """A charm that drains and uncordons around the hold, and says itself when it is started."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.series_upgrade = charm_upgrade.SeriesUpgrade(
            self,
            services=charm_upgrade.SystemdServices(['web']),
            started=self._started,
            before_take_down=self.drain,
            after_bring_back=self.uncordon,
            migrate=self._migrate,
        )

    def _started(self) -> bool:
        CALLS.append('started?')
        return True

    def drain(self) -> None:
        CALLS.append('drain')

    def uncordon(self) -> None:
        CALLS.append('uncordon')

    def _migrate(self, old: str, new: str) -> None:
        CALLS.append('migrate')
        if BROKEN:
            raise OSError('/etc/web is read-only')


def test_callbacks_and_a_started_callable_in_an_ops_charm(
    fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    CALLS.clear()
    ctx = testing.Context(DrainingCharm, meta=META, machine_id='7', juju_version='3.6.14')
    with ctx(ctx.on.update_status(), testing.State()) as manager:
        preview = manager.charm.series_upgrade.preview()
        manager.run()
    assert preview.callbacks == ('before_take_down: drain', 'after_bring_back: uncordon')
    state = prepare(ctx, testing.State())  # no start event: the callable decides
    assert CALLS == ['started?', 'started?', 'drain']
    assert fake_systemd.unit('web.service')['active'] == 'inactive'
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    complete(ctx, state)

    assert CALLS[3:] == ['migrate', 'uncordon']
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}


def test_a_failing_migrate_holds_the_services_and_names_itself(
    fake_systemd: FakeSystemd, os_release: pathlib.Path, state_dir: pathlib.Path
):
    CALLS.clear()
    ctx = testing.Context(DrainingCharm, meta=META, machine_id='7', juju_version='3.6.14')
    state = prepare(ctx, testing.State())
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    BROKEN.append(True)

    state = complete(ctx, state)  # the hook succeeds, and says why

    held = testing.BlockedStatus(
        'Migration migrate failed (OSError: /etc/web is read-only); see upgrade-journal; '
        'services stay down'
    )
    assert state.unit_status == held
    assert fake_systemd.unit('web.service')['active'] == 'inactive'
    # Journaled as a failed series migration is: its stage and the complete fail.
    failed = {
        r.stage: r.error or ''
        for r in charm_upgrade.Journal(state_dir / 'journal.jsonl').timeline()
        if r.result == 'failed'
    }
    assert sorted(failed) == ['series-complete', 'series-migrate']
    assert failed['series-migrate'] == 'OSError: /etc/web is read-only'
    assert 'migrate failed (OSError: /etc/web is read-only)' in failed['series-complete']
    state = ctx.run(ctx.on.update_status(), state)  # tried again at every hook
    assert state.unit_status == held
    assert CALLS.count('migrate') == 2

    BROKEN.clear()
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == testing.ActiveStatus()
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert CALLS[-1] == 'uncordon'


def test_the_journal_table_names_each_group_and_its_series_upgrade(
    ctx: testing.Context[DemoCharm],
    state_dir: pathlib.Path,
    os_release: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
):
    from charm_upgrade._journal import format_timeline

    state = ctx.run(ctx.on.start(), testing.State())
    monkeypatch.setenv('JUJU_TARGET_BASE', 'ubuntu@24.04')
    state = prepare(ctx, state)
    monkeypatch.delenv('JUJU_TARGET_BASE')
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    complete(ctx, state)

    rows = format_timeline(charm_upgrade.Journal(state_dir / 'journal.jsonl').timeline())
    services_rows = [r.split('  ')[1] for r in rows.splitlines() if ' services-' in r]
    upgrade = '(series upgrade ubuntu@22.04 -> ubuntu@24.04)'
    assert [r.strip() for r in services_rows] == [
        f'services-down systemd:web.service,cron.service {upgrade}',
        f'services-up systemd:web.service,cron.service {upgrade}',
    ]
