# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Registering the handlers: once per process, as a start-of-hook callback.

The dispatch tests run hooks in fresh processes. The in-process tests here
import charms.reactive into the test process, so they reset what they touch
of the module-level state: charmhelpers' start-of-hook callbacks
(``hookenv._atstart``), charms.reactive's handler registry, the unit state
database (``unitdata._KV``, in memory here), and the library's registration.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from _reactive_unit import PKG_RESOURCES_WARNING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from _reactive_unit import ReactiveUnit

    from charm_upgrade.testing import FakeSystemd

# The in-process tests import charms.reactive, which imports pkg_resources.
pytestmark = pytest.mark.filterwarnings(
    f'ignore:{PKG_RESOURCES_WARNING}:UserWarning:charms.reactive.relations'
)


IN_PROGRESS = 'upgrade.series.in-progress'
STARTED = 'charm.application.started'
DISABLED = 'charm.application.disabled'


# -- In fresh processes --------------------------------------------------------


def test_import_charm_upgrade_does_not_import_charms_reactive():
    code = (
        'import sys\n'
        'import charm_upgrade\n'
        'from charm_upgrade import SeriesUpgrade, SystemdServices, SnapServices, Journal\n'
        'from charm_upgrade import SeriesUpgradeFlow, _flags\n'
        "heavy = [m for m in ('charms.reactive', 'charmhelpers') if m in sys.modules]\n"
        'print(heavy)\n'
    )
    out = subprocess.run(
        [sys.executable, '-W', 'error', '-c', code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == '[]'


REGISTER_TWICE = """
from charmhelpers.core import hookenv

from charm_upgrade import SystemdServices
from charm_upgrade.reactive import register_series_upgrade_handlers

first = register_series_upgrade_handlers(SystemdServices(['web']))
second = register_series_upgrade_handlers(SystemdServices(['web.service']))
hookenv.log(f'same flow: {first is second}')
"""


def test_registering_twice_registers_once(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    unit = make_unit(REGISTER_TWICE)
    # A second layer's module that registers the same handlers again.
    (unit.charm_dir / 'reactive' / 'other_layer.py').write_text(
        'from charm_upgrade import SystemdServices\n'
        'from charm_upgrade.reactive import register_series_upgrade_handlers\n'
        "register_series_upgrade_handlers(SystemdServices(['web']))\n"
    )
    unit.set_flags(STARTED)

    unit.pre_series_upgrade()

    assert 'same flow: True' in unit.juju_log()
    assert unit.juju_log().count('charm-upgrade: took down web.service') == 1
    assert fake_systemd.commands().count('stop') == 1
    assert unit.flags() == {STARTED, IN_PROGRESS, DISABLED}


def test_registering_again_with_other_arguments_fails_the_hook(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    unit = make_unit(
        REGISTER_TWICE.replace(
            "second = register_series_upgrade_handlers(SystemdServices(['web.service']))",
            "second = register_series_upgrade_handlers(SystemdServices(['web', 'cron']))",
        )
    )
    unit.set_flags(STARTED)

    failed = unit.pre_series_upgrade(check=False)

    assert failed.returncode != 0
    assert 'CharmUpgradeError: register_series_upgrade_handlers() was already called' in (
        failed.stderr
    )
    assert fake_systemd.commands() == []
    assert unit.flags() == {STARTED}


def test_library_warnings_reach_juju_log(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    fake_systemd.add_unit('web.service')
    fake_systemd.add_unit('cron.service')
    unit = make_unit(
        'from charm_upgrade import SystemdServices\n'
        'from charm_upgrade.reactive import register_series_upgrade_handlers\n'
        "register_series_upgrade_handlers(SystemdServices(['web', 'cron']))\n"
    )
    unit.set_flags(STARTED)
    unit.pre_series_upgrade()
    fake_systemd.remove_unit('cron.service')  # the new release dropped it

    unit.hook('post-series-upgrade')

    warnings = [c for c in unit.tool_calls('juju-log') if c['args'][:2] == ['-l', 'WARNING']]
    assert [c['args'][-1] for c in warnings] == [
        # complete without do-release-upgrade (this unit's os-release was not rewritten)
        'This machine still runs ubuntu@22.04: the OS was not upgraded, so the migrations '
        'did not run; they run after the next series upgrade',
        'cron.service was not brought back as recorded: '
        'no longer exists after the OS upgrade: skipped',
    ]
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}


# -- In this process, with the bus reset ------------------------------------------


@pytest.fixture
def reactive(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """charm_upgrade.reactive with nothing registered, and an in-memory unit state database."""
    import charmhelpers.osplatform

    # charmhelpers refuses to import on a host that is not Ubuntu.
    monkeypatch.setattr(charmhelpers.osplatform, 'get_platform', lambda: 'ubuntu')
    from charmhelpers.core import hookenv, unitdata
    from charms.reactive import bus

    import charm_upgrade.reactive

    saved_handlers = bus.Handler._HANDLERS
    saved_kv = unitdata._KV
    monkeypatch.setenv('UNIT_STATE_DB', ':memory:')
    monkeypatch.setattr(hookenv, '_atstart', [])
    monkeypatch.setattr(charm_upgrade.reactive, '_registered', None)
    bus.Handler.clear()
    unitdata._KV = None
    try:
        yield charm_upgrade.reactive
    finally:
        bus.Handler._HANDLERS = saved_handlers
        if unitdata._KV is not None:
            # Python 3.13's sqlite3 warns about a connection that is never closed.
            unitdata._KV.close()
        unitdata._KV = saved_kv


def at_start() -> list[Any]:
    """The start-of-hook callbacks queued with charmhelpers."""
    from charmhelpers.core import hookenv

    return [callback for callback, _, _ in hookenv._atstart]


def test_registration_queues_one_start_of_hook_callback_and_no_handler(reactive: Any):
    from charms.reactive import bus

    from charm_upgrade import SystemdServices

    reactive.register_series_upgrade_handlers(SystemdServices(['web']))

    assert at_start() == [reactive._at_start]
    assert list(bus.Handler.get_handlers()) == []


def test_same_arguments_return_the_same_flow_and_add_nothing(reactive: Any):
    from charm_upgrade import SystemdServices

    def migrate(old: str, new: str) -> None:
        pass

    first = reactive.register_series_upgrade_handlers(
        [SystemdServices(['web'])], disabled_flag='held', migrate=migrate
    )
    second = reactive.register_series_upgrade_handlers(
        SystemdServices(['web.service']), disabled_flag='held', migrate=migrate
    )

    assert second is first
    assert at_start() == [reactive._at_start]
    assert first.disabled_flag == 'held'
    assert first.migrate is migrate


@pytest.mark.parametrize(
    'other',
    [
        {'services': ['web', 'cron']},
        {'started': 'app.up'},
        {'started': None},
        {'disabled_flag': 'app.down'},
        {'migrate': print},
        {'before_take_down': print},
        {'after_bring_back': print},
    ],
)
def test_other_arguments_are_refused(reactive: Any, other: dict[str, Any]):
    from charm_upgrade import CharmUpgradeError, SystemdServices

    reactive.register_series_upgrade_handlers(SystemdServices(['web']))
    names = other.pop('services', ['web'])
    with pytest.raises(CharmUpgradeError, match='already called with other arguments'):
        reactive.register_series_upgrade_handlers(SystemdServices(names), **other)
    assert at_start() == [reactive._at_start]


def test_bad_services_register_nothing(reactive: Any):
    from charm_upgrade import ServiceError, SystemdServices

    with pytest.raises(ServiceError, match='no services given'):
        reactive.register_series_upgrade_handlers([])
    with pytest.raises(ServiceError, match='more than once'):
        reactive.register_series_upgrade_handlers(
            [
                SystemdServices(['web']),
                SystemdServices(['web']),
            ]
        )
    assert at_start() == []
    assert reactive._registered is None
