# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Where the library acts in a reactive hook, and whose status wins, through the real dispatch.

Each case comes from porting real reactive charms (layer-etcd, kubernetes-worker,
charm-kubernetes-control-plane) onto the library: handlers that restart the
services in the prepare hook, a health check that runs before the services
are back, status callbacks registered at import, layer:status ranking the
charm's statuses above the library's, a pause flag passed as the disabled
flag, and a drain and uncordon around the hold.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from _reactive_unit import ReactiveUnit

    from charm_upgrade.testing import FakeSystemd

STARTED = 'charm.application.started'
DISABLED = 'charm.application.disabled'
IN_PROGRESS = 'upgrade.series.in-progress'
HELD = (
    'blocked',
    'Services stopped and disabled for the OS upgrade; when it is done, '
    'run `juju upgrade-machine 3 complete`',
)
REGISTER = """
from charm_upgrade import SystemdServices
from charm_upgrade.reactive import register_series_upgrade_handlers

register_series_upgrade_handlers(SystemdServices(['web', 'worker']))
"""
HEADER = """
import pathlib
import subprocess

from charmhelpers.core import hookenv
from charms.reactive import hook, set_flag, when, when_not


def note(text):
    with open(pathlib.Path(hookenv.charm_dir()) / 'notes.log', 'a') as f:
        f.write(f'{hookenv.hook_name()}: {text}\\n')


def active(unit):
    return subprocess.run(['systemctl', 'is-active', unit], capture_output=True).returncode == 0
"""


@pytest.fixture
def units(fake_systemd: FakeSystemd) -> None:
    fake_systemd.add_unit('web.service')
    fake_systemd.add_unit('worker.service')


def notes(unit: ReactiveUnit) -> list[str]:
    path = unit.charm_dir / 'notes.log'
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.usefixtures('units')
def test_no_handler_of_the_prepare_hook_runs_before_the_take_down(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    # kubernetes-worker's start_worker: guarded by the disabled flag only, and
    # run at every hook. Registered after the library, it used to run after
    # the take-down in the same dispatch and restart the held units.
    unit = make_unit(
        HEADER
        + REGISTER
        + """
@when('charm.application.started')
@when_not('charm.application.disabled')
def start_worker():
    note('start_worker')
    subprocess.run(['systemctl', 'restart', 'web.service', 'worker.service'], check=True)
"""
    )
    unit.set_flags(STARTED)

    unit.pre_series_upgrade()

    assert notes(unit) == []
    assert 'restart' not in fake_systemd.commands()
    assert unit.status() == HELD
    unit.hook('update-status')
    assert notes(unit) == []


@pytest.mark.usefixtures('units')
def test_the_complete_hook_brings_back_before_any_handler_whatever_the_order(
    make_unit: Callable[[str], ReactiveUnit],
):
    # layer-etcd's health check, defined before the registration call at the
    # end of the module: it used to run first and find the services down.
    unit = make_unit(
        HEADER
        + """
@when('charm.application.started')
@when_not('upgrade.series.in-progress')
def check_cluster_health():
    healthy = active('web.service') and active('worker.service')
    note(f'healthy={healthy}')
    if healthy:
        hookenv.status_set('active', 'Healthy with 3 known peers')
    else:
        hookenv.status_set('blocked', 'Errored with 0 known peers')
"""
        + REGISTER
    )
    unit.set_flags(STARTED)
    unit.pre_series_upgrade()
    unit.upgrade_os()

    unit.hook('post-series-upgrade')

    assert notes(unit) == ['post-series-upgrade: healthy=True']
    assert unit.status() == ('active', 'Healthy with 3 known peers')


@pytest.mark.usefixtures('units')
def test_the_held_status_outlasts_a_status_callback_registered_at_import(
    make_unit: Callable[[str], ReactiveUnit],
):
    # The charmed-kubernetes charms register their status with hookenv.atexit
    # at import; charmhelpers runs exit callbacks newest first.
    unit = make_unit(
        HEADER
        + """
def charm_status():
    hookenv.status_set('active', 'Kubernetes worker running.')


hookenv.atexit(charm_status)
"""
        + REGISTER
    )
    unit.set_flags(STARTED)

    unit.pre_series_upgrade()

    assert unit.status() == HELD
    sets = [c['args'] for c in unit.tool_calls('status-set')]
    assert sets[-2:] == [['active', 'Kubernetes worker running.'], list(HELD)]


def install_layer_status(unit: ReactiveUnit) -> None:
    """Build layer:status into the charm, as ``charm build`` would (see _layer_status.py)."""
    here = pathlib.Path(__file__).parent
    unit.add_layer(
        {
            # layer:basic's charms.layer, as far as layer:status uses it.
            'lib/charms/layer/__init__.py': (
                'class _Options:\n'
                '    def get(self, section, option=None):\n'
                "        return {('status', 'patch-hookenv'): True}.get((section, option))\n"
                '\n'
                '\n'
                'options = _Options()\n'
                '\n'
                'from charms.layer import status  # noqa: E402\n'
            ),
            'lib/charms/layer/status.py': (here / '_layer_status.py').read_text(),
            'reactive/status.py': 'from charms import layer\n\nlayer.status._initialise()\n',
        },
        includes=['layer:options', 'layer:basic', 'layer:status'],
    )


LAYER_STATUS_CHARM = (
    HEADER
    + """
from charms.layer import status


def charm_status():
    status.active('Ready')


hookenv.atexit(charm_status)


# layer-etcd's pre-series-upgrade hook handler: the charm's own blocked
# status, which layer:status ranks above the library's.
@hook('pre-series-upgrade')
def pre_series_upgrade():
    status.blocked('Series upgrade in progress')


@when('charm.application.started')
def report():
    hookenv.status_set('active', 'Healthy')
"""
)


@pytest.mark.usefixtures('units')
def test_the_held_status_outlasts_layer_status_and_the_charms_own_blocked_status(
    make_unit: Callable[[str], ReactiveUnit],
):
    unit = make_unit(LAYER_STATUS_CHARM + REGISTER)
    install_layer_status(unit)
    unit.set_flags(STARTED)

    unit.pre_series_upgrade()

    assert unit.status() == HELD
    sets = [c['args'] for c in unit.tool_calls('status-set')]
    # layer:status settled on the charm's blocked status; the library had the last word.
    assert sets[-2:] == [['blocked', 'Series upgrade in progress'], list(HELD)]


@pytest.mark.usefixtures('units')
def test_the_status_naming_what_did_not_come_back_outlasts_layer_status(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    unit = make_unit(LAYER_STATUS_CHARM + REGISTER)
    install_layer_status(unit)
    unit.set_flags(STARTED)
    unit.pre_series_upgrade()
    unit.upgrade_os()
    fake_systemd.remove_unit('worker.service')

    unit.hook('post-series-upgrade')

    assert unit.status() == (
        'blocked',
        'OS upgrade complete, but not brought back: '
        'worker.service (no longer exists after the OS upgrade: skipped)',
    )
    assert fake_systemd.unit('web.service')['active'] == 'active'
    # The next hook is the charm's again (its exit callback, the latest of its requests).
    unit.hook('update-status')
    assert unit.status() == ('active', 'Ready')


@pytest.mark.usefixtures('units')
def test_a_pause_flag_passed_as_the_disabled_flag_is_never_restored(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    # charms.openstack's pause action stops and disables the services and sets
    # charm.paused; the next update-status used to "bring them back".
    unit = make_unit(
        HEADER
        + """
from charm_upgrade import SystemdServices
from charm_upgrade.reactive import register_series_upgrade_handlers

register_series_upgrade_handlers(SystemdServices(['web']), disabled_flag='charm.paused')
"""
    )
    unit.set_flags(STARTED, 'charm.paused')
    fake_systemd.systemctl('disable', '--now', 'web.service')
    fake_systemd.clear_calls()

    unit.hook('update-status')

    assert fake_systemd.calls == []
    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert unit.flags() == {STARTED, 'charm.paused'}


DRAINING_CHARM = """
import pathlib

from charmhelpers.core import hookenv
from charms.reactive import is_flag_set, set_flag, when, when_not

from charm_upgrade import SystemdServices
from charm_upgrade.reactive import register_series_upgrade_handlers


def kubectl(*args):
    # Stands for `kubectl drain`/`uncordon`; fails while the file 'api-down' exists.
    charm_dir = pathlib.Path(hookenv.charm_dir())
    if (charm_dir / 'api-down').exists():
        raise RuntimeError('the API server does not answer')
    with open(charm_dir / 'kubectl.log', 'a') as f:
        f.write(' '.join(args) + '\\n')


def drain():
    kubectl('drain', hookenv.local_unit(), '--ignore-daemonsets')


def uncordon():
    kubectl('uncordon', hookenv.local_unit())


register_series_upgrade_handlers(
    SystemdServices(['web', 'worker']),
    # Cleared to mean "restart needed", as charm-kubernetes-control-plane's
    # components.started: the services still run.
    started=lambda: is_flag_set('components.installed'),
    before_take_down=drain,
    after_bring_back=uncordon,
)
"""


@pytest.mark.usefixtures('units')
def test_drain_and_uncordon_around_the_hold(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    unit = make_unit(DRAINING_CHARM)
    unit.set_flags('components.installed')  # but not components.started
    kubectl = unit.charm_dir / 'kubectl.log'
    (unit.charm_dir / 'api-down').touch()

    failed = unit.pre_series_upgrade(check=False)

    assert failed.returncode != 0
    assert fake_systemd.unit('web.service')['active'] == 'active'  # drain failed first
    (unit.charm_dir / 'api-down').unlink()
    unit.pre_series_upgrade()
    assert kubectl.read_text() == 'drain myapp/0 --ignore-daemonsets\n'
    assert fake_systemd.unit('web.service')['active'] == 'inactive'
    unit.upgrade_os()

    unit.hook('post-series-upgrade')

    assert kubectl.read_text().splitlines()[-1] == 'uncordon myapp/0'
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {'components.installed'}
    stages = [s for s, e in unit.journal_stages() if e == 'ended']
    assert stages == [
        'before-take-down',
        'services-down',
        'series-prepare',
        'services-up',
        'after-bring-back',
        'series-complete',
    ]


@pytest.mark.usefixtures('units')
def test_with_no_started_condition_whatever_runs_is_taken_down(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('worker.service', enabled='disabled', active=False)
    unit = make_unit(REGISTER.replace("'worker']))", "'worker']), started=None)"))

    unit.pre_series_upgrade()  # no flag was ever set

    assert fake_systemd.unit('web.service') == {'enabled': 'disabled', 'active': 'inactive'}
    unit.upgrade_os()
    unit.hook('post-series-upgrade')
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.unit('worker.service') == {'enabled': 'disabled', 'active': 'inactive'}
