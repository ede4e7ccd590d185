# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""register_series_upgrade_handlers through charms.reactive's real dispatch.

Every hook is a fresh process running ``charms.reactive.main()`` on a charm
directory with its unit state database, a stand-in ``systemctl`` and
stand-in hook tools, as layer-basic runs it on a machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from _reactive_unit import ReactiveUnit

    from charm_upgrade.testing import FakeSnapd, FakeSystemd

IN_PROGRESS = 'upgrade.series.in-progress'
STARTED = 'charm.application.started'
DISABLED = 'charm.application.disabled'
TOOK_DOWN = 'charm-upgrade: took down web.service, cron.service for the series upgrade'
BROUGHT_BACK = 'charm-upgrade: brought back web.service, cron.service after the series upgrade'
BLOCKED = (
    'blocked',
    'Services stopped and disabled for the OS upgrade; when it is done, '
    'run `juju upgrade-machine 3 complete`',
)

# A charm as the how-to writes one: it starts its services, says so with
# the started flag, and guards its own status handler with the disabled flag.
CHARM = """
import pathlib
import subprocess

from charmhelpers.core import hookenv
from charms.reactive import set_flag, when, when_not

from charm_upgrade import SystemdServices
from charm_upgrade.reactive import register_series_upgrade_handlers


def migrate(old_base, new_base):
    with open(pathlib.Path(hookenv.charm_dir()) / 'migrations.log', 'a') as f:
        f.write(f'{old_base} {new_base}\\n')


register_series_upgrade_handlers(SystemdServices(['web', 'cron']), migrate=migrate)


@when_not('charm.application.started')
def start_services():
    subprocess.run(['systemctl', 'start', 'web.service'], check=True)
    set_flag('charm.application.started')


@when('charm.application.started')
@when_not('charm.application.disabled')
def serving():
    hookenv.status_set('active', 'serving')
"""


@pytest.fixture
def unit(make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd) -> ReactiveUnit:
    """A unit after install and start: web enabled and running, cron disabled and stopped."""
    fake_systemd.add_unit('web.service', active=False)
    fake_systemd.add_unit('cron.service', enabled='disabled', active=False)
    unit = make_unit(CHARM)
    unit.hook('install')
    unit.hook('start')
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}
    fake_systemd.clear_calls()
    return unit


def states(record: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    """Each unit's recorded id, enablement and running state."""
    units = record['services']['systemd:web.service,cron.service']['units']
    return {n: (u['id'], u['is_enabled'], u['running']) for n, u in units.items()}


def migrations(unit: ReactiveUnit) -> list[str]:
    path = unit.charm_dir / 'migrations.log'
    return path.read_text().splitlines() if path.exists() else []


def logged(unit: ReactiveUnit, message: str) -> list[str]:
    """The hooks in which the library logged ``message``."""
    return [str(c['hook']) for c in unit.tool_calls('juju-log') if c['args'][-1] == message]


def test_prepare_update_status_complete(unit: ReactiveUnit, fake_systemd: FakeSystemd):
    unit.pre_series_upgrade()

    # Down and held, with the before-state recorded; the flags committed.
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert sorted(fake_systemd.held()) == ['cron.service', 'web.service']
    assert unit.flags() == {STARTED, IN_PROGRESS, DISABLED}
    record = unit.record()
    assert record['old_base'] == 'ubuntu@22.04'
    assert record['target_base'] == 'ubuntu@24.04'
    assert states(record) == {
        'web.service': ('web.service', 'enabled', True),
        'cron.service': ('cron.service', 'disabled', False),
    }
    # The status the operator sees until complete names the command.
    assert unit.status() == BLOCKED
    assert logged(unit, TOOK_DOWN) == ['pre-series-upgrade']

    # A hook during the upgrade (a retried one, a manual run) touches nothing.
    fake_systemd.clear_calls()
    unit.hook('update-status')
    assert fake_systemd.calls == []
    assert unit.flags() == {STARTED, IN_PROGRESS, DISABLED}
    assert unit.status() == BLOCKED
    assert logged(unit, TOOK_DOWN) == ['pre-series-upgrade']

    # do-release-upgrade and reboots: nothing starts the held unit.
    unit.upgrade_os('24.04', 'noble')
    fake_systemd.clear_calls()
    unit.hook('post-series-upgrade')

    assert migrations(unit) == ['ubuntu@22.04 ubuntu@24.04']
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    # cron was disabled and stopped before: it stays so.
    assert fake_systemd.unit('cron.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert fake_systemd.held() == []
    assert unit.flags() == {STARTED}
    assert logged(unit, BROUGHT_BACK) == ['post-series-upgrade']
    # The library cleared its own status, then the charm's handler said its piece.
    status_sets = [c['args'] for c in unit.tool_calls('status-set')]
    assert status_sets[-2:] == [['active', ''], ['active', 'serving']]
    assert unit.status() == ('active', 'serving')
    assert unit.record()['phase'] == 'completed'
    assert [s for s, e in unit.journal_stages() if e == 'ended'] == [
        'services-down',
        'series-prepare',
        'series-migrate',
        'services-up',
        'series-complete',
    ]

    # Afterwards, hooks leave the services alone again.
    fake_systemd.clear_calls()
    unit.hook('update-status')
    unit.hook('config-changed')
    assert fake_systemd.calls == []
    assert migrations(unit) == ['ubuntu@22.04 ubuntu@24.04']


def test_status_names_upgrade_series_on_juju_2_9(unit: ReactiveUnit):
    unit.pre_series_upgrade(base=None, env={'JUJU_VERSION': '2.9.46'})
    assert unit.status() == (
        'blocked',
        'Services stopped and disabled for the OS upgrade; when it is done, '
        'run `juju upgrade-series 3 complete`',
    )
    # Juju 2.9 gives only the series: the base is derived from it.
    assert unit.record()['target_base'] == 'ubuntu@24.04'


def test_complete_leaves_a_status_the_charm_set_since(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    fake_systemd.add_unit('cron.service')
    unit = make_unit(CHARM.replace("hookenv.status_set('active', 'serving')", 'pass'))
    unit.set_flags(STARTED)
    unit.pre_series_upgrade()
    assert unit.status() == BLOCKED
    # Something else set the status since (the stand-in status-get reads this).
    (unit.root / 'status.json').write_text('{"status": "maintenance", "message": "mine"}')

    unit.hook('post-series-upgrade')

    assert unit.status() == ('maintenance', 'mine')
    assert ['active', ''] not in [c['args'] for c in unit.tool_calls('status-set')]
    assert fake_systemd.unit('web.service')['active'] == 'active'


def test_not_started_means_nothing_to_take_down(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    fake_systemd.add_unit('cron.service')
    unit = make_unit(CHARM.replace("@when_not('charm.application.started')", '@when("never")'))

    unit.pre_series_upgrade()

    assert fake_systemd.commands() == []
    assert unit.flags() == {IN_PROGRESS}
    assert unit.status() == ('unknown', '')
    unit.hook('post-series-upgrade')
    assert fake_systemd.commands() == []
    assert unit.flags() == set()
    assert migrations(unit) == []


def test_failed_prepare_is_retried_and_converges(unit: ReactiveUnit, fake_systemd: FakeSystemd):
    fake_systemd.fail_next('stop', 'Job for web.service canceled.')

    failed = unit.pre_series_upgrade(check=False)

    assert failed.returncode != 0
    assert 'Job for web.service canceled.' in failed.stderr
    # The hook failed: charms.reactive committed none of its flag changes.
    assert unit.flags() == {STARTED}
    assert unit.status() != BLOCKED
    # But the before-state was written first, from the untouched services.
    assert states(unit.record())['web.service'] == ('web.service', 'enabled', True)
    assert ('series-prepare', 'failed') in unit.journal_stages()

    # juju resolve: Juju runs the hook again.
    unit.pre_series_upgrade()

    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert unit.flags() == {STARTED, IN_PROGRESS, DISABLED}
    assert unit.status() == BLOCKED
    # The retry kept the first record: web was enabled and running before.
    assert states(unit.record()) == {
        'web.service': ('web.service', 'enabled', True),
        'cron.service': ('cron.service', 'disabled', False),
    }

    unit.upgrade_os()
    unit.hook('post-series-upgrade')
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}


def test_failed_complete_is_retried_and_migrates_once(
    unit: ReactiveUnit, fake_systemd: FakeSystemd
):
    unit.pre_series_upgrade()
    unit.upgrade_os()
    fake_systemd.fail_next('daemon-reload', 'Failed to reload daemon: Connection timed out')

    failed = unit.hook('post-series-upgrade', check=False)

    assert failed.returncode != 0
    assert migrations(unit) == ['ubuntu@22.04 ubuntu@24.04']
    # Nothing committed: the flags still say the services are down.
    assert unit.flags() == {STARTED, IN_PROGRESS, DISABLED}
    assert fake_systemd.unit('web.service')['active'] == 'inactive'

    unit.hook('post-series-upgrade')

    assert migrations(unit) == ['ubuntu@22.04 ubuntu@24.04']  # not twice
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}


def test_unknown_service_fails_prepare_before_touching_anything(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')  # no cron.service on this machine
    unit = make_unit(CHARM)
    unit.set_flags(STARTED)

    failed = unit.pre_series_upgrade(check=False)

    assert failed.returncode != 0
    assert 'systemd knows no unit named cron.service' in failed.stderr
    assert fake_systemd.commands() == ['show']
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}
    assert not (unit.state_dir / 'series-upgrade.json').exists()


def test_snap_services_through_snapd(
    make_unit: Callable[[str], ReactiveUnit], fake_snapd: FakeSnapd, fake_systemd: FakeSystemd
):
    fake_snapd.add_snap('myapp', services=['server', 'worker'])
    fake_snapd.set_service_state('myapp', 'worker', enabled=False, active=False)
    fake_systemd.add_unit('web.service')
    unit = make_unit("""
        from charm_upgrade import SnapServices, SystemdServices
        from charm_upgrade.reactive import register_series_upgrade_handlers

        register_series_upgrade_handlers(
            [SnapServices('myapp'), SystemdServices(['web'])],
            started='myapp.running',
            disabled_flag='myapp.held',
        )
    """)
    unit.set_flags('myapp.running')

    unit.pre_series_upgrade()

    assert fake_snapd.service_state('myapp') == {
        'server': (False, False),
        'worker': (False, False),
    }
    assert fake_systemd.unit('web.service')['active'] == 'inactive'
    assert unit.flags() == {'myapp.running', IN_PROGRESS, 'myapp.held'}

    unit.upgrade_os()
    unit.hook('post-series-upgrade')

    assert fake_snapd.service_state('myapp') == {
        'server': (True, True),
        'worker': (False, False),  # disabled and stopped before: stays so
    }
    assert fake_systemd.unit('web.service')['active'] == 'active'
    assert unit.flags() == {'myapp.running'}
