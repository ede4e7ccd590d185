# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""register_series_upgrade_handlers(migrations=...) through charms.reactive's real dispatch."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from _reactive_unit import ReactiveUnit

    from charm_upgrade.testing import FakeSystemd

STARTED = 'charm.application.started'
DISABLED = 'charm.application.disabled'
IN_PROGRESS = 'upgrade.series.in-progress'
HELD = (
    'blocked',
    'Migration 20260110-config-path failed (RuntimeError: /etc/myapp is read-only); '
    'see upgrade-journal; services stay down',
)

# A series migration that writes what it ran with, and fails while the
# charm directory holds a file named "broken" (the cause an operator fixes).
CHARM = """
import json
import pathlib

from charmhelpers.core import hookenv
from charms.reactive import set_flag, when, when_not

from charm_upgrade import Migration, Migrations, SystemdServices
from charm_upgrade.reactive import register_series_upgrade_handlers


def move_config(context):
    charm_dir = pathlib.Path(hookenv.charm_dir())
    with open(charm_dir / 'ran.jsonl', 'a') as f:
        f.write(json.dumps([context.old, context.new, context.interrupted]) + '\\n')
    if (charm_dir / 'broken').exists():
        raise RuntimeError('/etc/myapp is read-only')


MIGRATIONS = Migrations(
    [Migration('20260110-config-path', 'Move the config', kind='series', up=move_config)]
)

register_series_upgrade_handlers(SystemdServices(['web']), migrations=MIGRATIONS)


@when_not('charm.application.started')
def start_services():
    set_flag('charm.application.started')


@when('charm.application.started')
@when_not('charm.application.disabled')
def serving():
    hookenv.status_set('active', 'serving')
"""


def ran(unit: ReactiveUnit) -> list[list[Any]]:
    path = unit.charm_dir / 'ran.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def applied(unit: ReactiveUnit) -> dict[str, Any]:
    state = json.loads((unit.state_dir / 'migrations.json').read_text())
    return state['applied']


def test_fresh_install_counts_every_migration_as_applied(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    unit = make_unit(CHARM)

    unit.hook('install')

    assert applied(unit)['20260110-config-path']['how'] == 'installed'
    assert applied(unit)['20260110-config-path']['new'] == 'ubuntu@22.04'
    assert 'charm-upgrade: fresh install; migrations recorded as applied' in unit.juju_log()
    # So a later series upgrade has nothing to migrate.
    unit.pre_series_upgrade()
    unit.upgrade_os()
    unit.hook('post-series-upgrade')
    assert ran(unit) == []
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}


def test_install_again_changes_nothing(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    unit = make_unit(CHARM)
    unit.hook('install')
    first = (unit.state_dir / 'migrations.json').read_text()

    unit.hook('install')  # Juju runs a failed install again after `juju resolved`

    assert (unit.state_dir / 'migrations.json').read_text() == first
    assert unit.juju_log().count('fresh install') == 1


def test_unit_from_before_migrations_migrates_once_at_complete(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    unit = make_unit(CHARM)
    unit.set_flags(STARTED)  # installed by a charm revision without migrations

    unit.pre_series_upgrade()
    assert ran(unit) == []
    unit.upgrade_os()
    unit.hook('post-series-upgrade')

    assert ran(unit) == [['ubuntu@22.04', 'ubuntu@24.04', False]]
    assert applied(unit)['20260110-config-path']['how'] == 'ran'
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.status() == ('active', 'serving')
    stages = [s for s, e in unit.journal_stages() if e == 'ended']
    assert stages.index('migrations') < stages.index('services-up')

    unit.hook('update-status')
    assert len(ran(unit)) == 1


def test_failed_migration_holds_the_services_down_and_is_retried_every_hook(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    unit = make_unit(CHARM)
    unit.set_flags(STARTED)
    unit.pre_series_upgrade()
    unit.upgrade_os()
    (unit.charm_dir / 'broken').touch()
    fake_systemd.clear_calls()

    # The hook succeeds (so Juju records the upgrade complete) and says why.
    unit.hook('post-series-upgrade')

    assert unit.status() == HELD
    assert unit.flags() == {STARTED, DISABLED}
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert fake_systemd.commands() == []
    assert 'series upgrade held' in unit.juju_log()
    assert ('migrations', 'failed') in unit.journal_stages()

    # Every hook tries it again; the charm's status handler is guarded.
    unit.hook('update-status')
    assert unit.status() == HELD
    assert [r[2] for r in ran(unit)] == [False, True]

    # The operator fixes the cause: the next hook migrates and brings web back.
    (unit.charm_dir / 'broken').unlink()
    unit.hook('update-status')

    assert len(ran(unit)) == 3
    assert applied(unit)['20260110-config-path']['how'] == 'ran'
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}
    assert unit.status() == ('active', 'serving')
    assert IN_PROGRESS not in unit.flags()


# A refresh migration whose id a later charm revision corrected, and a migrate callback
# that fails while the charm directory holds "broken", as the migration above does.
RENAMED_CHARM = CHARM.replace(
    "[Migration('20260110-config-path', 'Move the config', kind='series', up=move_config)]",
    "[Migration('20260110-config-path', 'Move the config', kind='series', up=move_config),\n"
    "     Migration('20260301-data-format', 'Data format 2', kind='refresh', up=print)]",
)
MIGRATE_CHARM = CHARM.replace(
    'MIGRATIONS = Migrations(',
    'def migrate(old, new):\n'
    "    if (pathlib.Path(hookenv.charm_dir()) / 'migrate-broken').exists():\n"
    "        raise OSError('/etc/myapp.conf is read-only')\n\n\n"
    'MIGRATIONS = Migrations(',
).replace('migrations=MIGRATIONS)', 'migrations=MIGRATIONS, migrate=migrate)')
MIGRATE_HELD = (
    'blocked',
    'Migration migrate failed (OSError: /etc/myapp.conf is read-only); '
    'see upgrade-journal; services stay down',
)


def test_a_renamed_refresh_migration_does_not_hold_the_series_upgrade(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    unit = make_unit(RENAMED_CHARM)
    unit.set_flags(STARTED)
    unit.state_dir.mkdir(parents=True, exist_ok=True)
    (unit.state_dir / 'migrations.json').write_text(
        json.dumps({'v': 1, 'applied': {'20260301-data-fromat': {'kind': 'refresh', 'new': '3'}}})
    )
    unit.pre_series_upgrade()
    unit.upgrade_os()

    unit.hook('post-series-upgrade')

    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}
    assert unit.status() == ('active', 'serving')
    assert ran(unit) == [['ubuntu@22.04', 'ubuntu@24.04', False]]
    assert sorted(applied(unit)) == ['20260110-config-path', '20260301-data-fromat']


def test_a_failing_migrate_is_held_like_a_failed_series_migration(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    unit = make_unit(MIGRATE_CHARM)
    unit.set_flags(STARTED)
    unit.pre_series_upgrade()
    unit.upgrade_os()
    (unit.charm_dir / 'migrate-broken').touch()

    unit.hook('post-series-upgrade')  # the hook succeeds, and says why

    assert unit.status() == MIGRATE_HELD
    assert unit.flags() == {STARTED, DISABLED}
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert ('series-migrate', 'failed') in unit.journal_stages()
    assert ran(unit) == []  # the series migrations wait for migrate

    unit.hook('update-status')  # tried again at every hook
    assert unit.status() == MIGRATE_HELD
    assert unit.journal_stages().count(('series-migrate', 'failed')) == 2

    (unit.charm_dir / 'migrate-broken').unlink()
    unit.hook('update-status')

    assert ran(unit) == [['ubuntu@22.04', 'ubuntu@24.04', False]]
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}
    assert unit.status() == ('active', 'serving')
