# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Series migrations through SeriesUpgrade in an ops charm, run by ops.testing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import ops
import pytest
from ops import testing

# The hook helpers of the series tests (pytest puts this directory on sys.path).
from test_series_ops import complete, prepare  # pyright: ignore[reportMissingImports]

import charm_upgrade
from charm_upgrade._migrations import SERIES

if TYPE_CHECKING:
    import pathlib

    from charm_upgrade.testing._fake_systemd import FakeSystemd

META: dict[str, Any] = {'name': 'demo'}
RAN: list[str] = []
BROKEN: list[bool] = []


def move_config(ctx: charm_upgrade.MigrationContext) -> None:
    if BROKEN:
        raise RuntimeError('config is locked')
    RAN.append(f'{ctx.migration_id} {ctx.old} -> {ctx.new} interrupted={ctx.interrupted}')


MIGRATIONS = charm_upgrade.Migrations(
    [charm_upgrade.Migration('20260110-config', 'move the config', kind=SERIES, up=move_config)]
)


class DemoCharm(ops.CharmBase):
    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.series_upgrade = charm_upgrade.SeriesUpgrade(
            self, services=charm_upgrade.SystemdServices(['web']), migrations=MIGRATIONS
        )
        framework.observe(self.on.update_status, self._on_update_status)

    def _on_update_status(self, _: ops.EventBase) -> None:
        self.unit.status = self.series_upgrade.status or ops.ActiveStatus()


@pytest.fixture(autouse=True)
def _units(fake_systemd: FakeSystemd, os_release: pathlib.Path):
    RAN.clear()
    BROKEN.clear()
    fake_systemd.add_unit('web.service')


@pytest.fixture
def ctx() -> testing.Context[Any]:
    return testing.Context(DemoCharm, meta=META, machine_id='7', juju_version='3.6.14')


def test_install_records_every_migration_without_running_it(
    ctx: testing.Context[Any], state_dir: pathlib.Path, os_release: pathlib.Path
):
    state = ctx.run(ctx.on.install(), testing.State())
    state = ctx.run(ctx.on.start(), state)
    state = prepare(ctx, state)
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    state = complete(ctx, state)

    assert RAN == []
    record = json.loads((state_dir / 'migrations.json').read_text())
    assert record['applied']['20260110-config']['how'] == 'installed'
    assert record['installed']['base'] == 'ubuntu@22.04'
    assert state.unit_status == testing.ActiveStatus()


def test_a_failed_migration_blocks_names_it_and_is_retried_on_the_next_hook(
    ctx: testing.Context[Any], fake_systemd: FakeSystemd, os_release: pathlib.Path
):
    # Deployed before the charm had migrations (no install with this code): it runs.
    state = prepare(ctx, ctx.run(ctx.on.start(), testing.State()))
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
    BROKEN.append(True)

    state = complete(ctx, state)  # the hook succeeds: the status says what failed

    assert state.unit_status == testing.BlockedStatus(
        'Migration 20260110-config failed (RuntimeError: config is locked); '
        'see upgrade-journal; services stay down'
    )
    assert fake_systemd.unit('web.service')['active'] == 'inactive'

    state = ctx.run(ctx.on.update_status(), state)  # still broken: still blocked
    assert state.unit_status.name == 'blocked'
    assert 'Migration 20260110-config failed' in state.unit_status.message

    BROKEN.clear()
    state = ctx.run(ctx.on.update_status(), state)

    assert RAN == ['20260110-config ubuntu@22.04 -> ubuntu@24.04 interrupted=True']
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert state.unit_status == testing.ActiveStatus()


def test_migrations_unknown_to_the_code_keep_the_services_down(
    ctx: testing.Context[Any],
    fake_systemd: FakeSystemd,
    state_dir: pathlib.Path,
    os_release: pathlib.Path,
):
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / 'migrations.json').write_text(
        json.dumps({'v': 1, 'applied': {'20270101-future': {'kind': 'series'}}})
    )
    state = prepare(ctx, ctx.run(ctx.on.start(), testing.State()))
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    state = complete(ctx, state)

    assert state.unit_status == testing.BlockedStatus(
        'Migration 20270101-future applied here is unknown to this charm revision; '
        'refresh to the revision that has it; services stay down'
    )
    assert fake_systemd.unit('web.service')['active'] == 'inactive'
    assert RAN == []


def test_a_renamed_refresh_migration_does_not_hold_the_series_upgrade(
    fake_systemd: FakeSystemd, state_dir: pathlib.Path, os_release: pathlib.Path
):
    # A later charm revision fixed a typo in a refresh migration's id: the id this unit
    # recorded as applied is unknown to the code. That is the refresh's business (its
    # next refresh is refused until it is sorted out), never a reason to keep the
    # services down at series complete.
    registry = charm_upgrade.Migrations(
        [
            *MIGRATIONS.all(),
            charm_upgrade.Migration(
                '20260301-data-format', 'data format 2', kind='refresh', up=lambda _: None
            ),
        ]
    )

    class RenamedCharm(DemoCharm):
        def __init__(self, framework: ops.Framework):
            ops.CharmBase.__init__(self, framework)
            self.series_upgrade = charm_upgrade.SeriesUpgrade(
                self, services=charm_upgrade.SystemdServices(['web']), migrations=registry
            )

    ctx = testing.Context(RenamedCharm, meta=META, machine_id='7', juju_version='3.6.14')
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / 'migrations.json').write_text(
        json.dumps({'v': 1, 'applied': {'20260301-data-fromat': {'kind': 'refresh', 'new': '3'}}})
    )
    state = prepare(ctx, ctx.run(ctx.on.start(), testing.State()))
    os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')

    state = complete(ctx, state)

    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert state.unit_status == testing.ActiveStatus()
    assert RAN == ['20260110-config ubuntu@22.04 -> ubuntu@24.04 interrupted=False']
    # The refresh still refuses: that check belongs to it.
    with pytest.raises(charm_upgrade.MigrationError, match='20260301-data-fromat'):
        registry.check('refresh')
