# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Registering the handlers: once per process, on charms.reactive's own bus.

The dispatch tests run hooks in fresh processes. The in-process tests here
import charms.reactive into the test process, so they reset what they touch
of its module-level state: the bus's handler registry (``Handler._HANDLERS``)
and charmhelpers' unit state database (``unitdata._KV``, in memory here).
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
TAKE_DOWN = 'charm_upgrade.reactive:take_down_services'
BRING_BACK = 'charm_upgrade.reactive:bring_back_services'


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
from charms.reactive import bus

from charm_upgrade import SystemdServices
from charm_upgrade.reactive import register_series_upgrade_handlers

first = register_series_upgrade_handlers(SystemdServices(['web']))
second = register_series_upgrade_handlers(SystemdServices(['web.service']))
ids = sorted(h.id() for h in bus.Handler.get_handlers() if h.id().startswith('charm_upgrade'))
hookenv.log(f'same flow: {first is second}; handlers: {ids}')
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

    assert f"same flow: True; handlers: ['{BRING_BACK}', '{TAKE_DOWN}']" in unit.juju_log()
    invocations = [m for m in unit.juju_log().splitlines() if m.startswith('Invoking')]
    assert invocations == [f'Invoking reactive handler: {TAKE_DOWN}']
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
    # The flags say the services are down, but the before-state record is
    # gone (a charm directory restored from an old backup, say).
    fake_systemd.add_unit('web.service', enabled='disabled', active=False)
    unit = make_unit(
        'from charm_upgrade import SystemdServices\n'
        'from charm_upgrade.reactive import register_series_upgrade_handlers\n'
        "register_series_upgrade_handlers(SystemdServices(['web']))\n"
    )
    unit.set_flags(STARTED, DISABLED)

    unit.hook('post-series-upgrade')

    assert 'No before-state record' in unit.juju_log()
    warnings = [c for c in unit.tool_calls('juju-log') if c['args'][:2] == ['-l', 'WARNING']]
    assert len(warnings) == 1
    assert fake_systemd.unit('web.service') == {'enabled': 'enabled', 'active': 'active'}
    assert unit.flags() == {STARTED}


# -- In this process, with the bus reset ------------------------------------------


@pytest.fixture
def reactive(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """charm_upgrade.reactive, with an empty bus and an in-memory unit state database."""
    import charmhelpers.osplatform

    # charmhelpers refuses to import on a host that is not Ubuntu.
    monkeypatch.setattr(charmhelpers.osplatform, 'get_platform', lambda: 'ubuntu')
    from charmhelpers.core import unitdata
    from charms.reactive import bus

    import charm_upgrade.reactive

    saved_handlers = bus.Handler._HANDLERS
    saved_kv = unitdata._KV
    monkeypatch.setenv('UNIT_STATE_DB', ':memory:')
    bus.Handler.clear()
    unitdata._KV = None
    try:
        yield charm_upgrade.reactive
    finally:
        bus.Handler._HANDLERS = saved_handlers
        unitdata._KV = saved_kv


def our_handlers() -> dict[str, Any]:
    from charms.reactive import bus

    return {h.id(): h for h in bus.Handler.get_handlers() if h.id().startswith('charm_upgrade')}


@pytest.mark.parametrize(
    ('flags', 'take_down', 'bring_back'),
    [
        ((), False, False),
        ((STARTED,), False, False),
        ((IN_PROGRESS,), False, False),  # never started: nothing to take down
        ((STARTED, IN_PROGRESS), True, False),
        ((STARTED, IN_PROGRESS, DISABLED), False, False),  # the guard
        ((STARTED, DISABLED), False, True),
        ((DISABLED,), False, True),
    ],
)
def test_handlers_match_the_flags(
    reactive: Any, flags: tuple[str, ...], take_down: bool, bring_back: bool
):
    from charmhelpers.core import unitdata
    from charms.reactive import set_flag

    from charm_upgrade import SystemdServices

    reactive.register_series_upgrade_handlers(SystemdServices(['web']))
    for flag in flags:
        set_flag(flag)
    unitdata.kv().set('reactive.dispatch.phase', 'other')

    handlers = our_handlers()
    assert sorted(handlers) == [BRING_BACK, TAKE_DOWN]
    assert handlers[TAKE_DOWN].test() is take_down
    assert handlers[BRING_BACK].test() is bring_back


def test_same_arguments_return_the_same_flow_and_add_nothing(reactive: Any):
    from charm_upgrade import SystemdServices

    def migrate(old: str, new: str) -> None:
        pass

    first = reactive.register_series_upgrade_handlers(
        [SystemdServices(['web'])], disabled_flag='held', migrate=migrate
    )
    predicates = {i: len(h._predicates) for i, h in our_handlers().items()}
    second = reactive.register_series_upgrade_handlers(
        SystemdServices(['web.service']), disabled_flag='held', migrate=migrate
    )

    assert second is first
    assert {i: len(h._predicates) for i, h in our_handlers().items()} == predicates
    assert first.disabled_flag == 'held'
    assert first.migrate is migrate


@pytest.mark.parametrize(
    'other',
    [
        {'services': ['web', 'cron']},
        {'started_flag': 'app.up'},
        {'disabled_flag': 'app.down'},
        {'migrate': print},
    ],
)
def test_other_arguments_are_refused(reactive: Any, other: dict[str, Any]):
    from charm_upgrade import CharmUpgradeError, SystemdServices

    reactive.register_series_upgrade_handlers(SystemdServices(['web']))
    names = other.pop('services', ['web'])
    with pytest.raises(CharmUpgradeError, match='already called with other arguments'):
        reactive.register_series_upgrade_handlers(SystemdServices(names), **other)
    assert sorted(our_handlers()) == [BRING_BACK, TAKE_DOWN]


def test_a_reset_bus_gets_the_handlers_again(reactive: Any):
    from charms.reactive import bus

    from charm_upgrade import SystemdServices

    first = reactive.register_series_upgrade_handlers(SystemdServices(['web']))
    bus.Handler.clear()
    assert our_handlers() == {}

    second = reactive.register_series_upgrade_handlers(SystemdServices(['cron']))

    assert second is not first
    assert sorted(our_handlers()) == [BRING_BACK, TAKE_DOWN]


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
    assert our_handlers() == {}
