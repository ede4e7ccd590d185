# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Every shape a unit takes in systemd, through a series upgrade with a real reboot.

One group of thirteen units, each a shape that real machines have: a linked
unit, an aliased one, one the OS upgrade renames (the new unit carrying the
old name as an alias) and one it removes, one the operator masked while it
ran, one that refuses a manual start and runs because another pulls it in, a
service whose [Install] has Also= its socket, a static unit an operator
enabled with add-wants, one with a drop-in that resets conditions, and
ordinary ones. Between prepare and complete the test does what the OS
upgrade does to them (rename, remove, maintainer scripts that enable and
start) and reboots the machine. Complete must bring back every unit that can
come back, exactly as it was, report the rest, and cost the same few
``systemctl`` calls as for one unit. Units that cannot be held or restored
are refused at prepare, with nothing touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _units import connect_to, held, unit_states

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from _container import Container

RUN = '[Service]\nExecStart=/bin/sleep infinity\n'
WANTED = '[Install]\nWantedBy=multi-user.target\n'
ETC = '/etc/systemd/system'
FILES = {
    f'{ETC}/sh-plain.service': RUN + WANTED,
    '/opt/cu-units/sh-link.service': RUN + WANTED,  # systemctl link
    '/lib/systemd/system/sh-old.service': RUN + WANTED,  # renamed by the upgrade
    f'{ETC}/sh-gone.service': RUN + WANTED,  # removed by the upgrade
    '/lib/systemd/system/sh-masked.service': RUN + WANTED,  # masked while it ran
    f'{ETC}/sh-pulled.service': '[Unit]\nRefuseManualStart=yes\n' + RUN,
    f'{ETC}/sh-puller.service': (
        '[Unit]\nWants=sh-pulled.service\nAfter=sh-pulled.service\n' + RUN + WANTED
    ),
    f'{ETC}/sh-also.service': RUN + WANTED + 'Also=sh-also.socket\n',
    f'{ETC}/sh-also.socket': (
        '[Socket]\nListenStream=/run/sh-also.sock\n[Install]\nWantedBy=sockets.target\n'
    ),
    f'{ETC}/sh-extra.service': RUN,  # static; the operator runs add-wants
    f'{ETC}/sh-reset.service': RUN + WANTED,
    f'{ETC}/sh-reset.service.d/zzz-local.conf': '[Unit]\nConditionPathExists=\n',
    f'{ETC}/sh-off.service': RUN + WANTED,  # the operator disabled and stopped it
    f'{ETC}/sh-alias.service': RUN + WANTED + 'Alias=sh-alias2.service\n',
}
NEW_UNIT = '/lib/systemd/system/sh-new.service'
GROUP = [
    'sh-plain.service',
    'sh-link.service',
    'sh-old.service',
    'sh-gone.service',
    'sh-masked.service',
    'sh-pulled.service',
    'sh-puller.service',
    'sh-also.service',
    'sh-also.socket',
    'sh-extra.service',
    'sh-reset.service',
    'sh-off.service',
    'sh-alias.service',
]
BEFORE = {
    'sh-plain.service': ('enabled', 'active'),
    'sh-link.service': ('enabled', 'active'),
    'sh-old.service': ('enabled', 'active'),
    'sh-gone.service': ('enabled', 'active'),
    'sh-masked.service': ('masked', 'active'),
    'sh-pulled.service': ('static', 'active'),
    'sh-puller.service': ('enabled', 'active'),
    'sh-also.service': ('disabled', 'inactive'),
    'sh-also.socket': ('enabled', 'active'),
    'sh-extra.service': ('enabled', 'active'),
    'sh-reset.service': ('enabled', 'active'),
    'sh-off.service': ('disabled', 'inactive'),
    'sh-alias.service': ('enabled', 'active'),
}
# After the upgrade: sh-old is sh-new, sh-gone is gone, sh-masked stays masked.
AFTER = {
    **{u: s for u, s in BEFORE.items() if u not in ('sh-old.service', 'sh-gone.service')},
    'sh-new.service': ('enabled', 'active'),
    'sh-masked.service': ('masked', 'inactive'),
}


def _cleanup(container: Container, units: list[str], paths: list[str]) -> None:
    container.exec(['systemctl', 'unmask', *units], check=False)
    container.exec(['systemctl', 'disable', '--now', *units], check=False)
    for unit in units:
        container.exec(['rm', '-rf', f'{ETC}/{unit}.d', f'{ETC}/{unit}'], check=False)
    container.exec(['rm', '-rf', *paths, '/opt/cu-units'], check=False)
    container.exec(['find', ETC, '-name', 'sh-*', '-type', 'l', '-delete'], check=False)
    container.exec(['systemctl', 'daemon-reload'], check=False)
    container.exec(['systemctl', 'reset-failed'], check=False)


@pytest.fixture
def shapes(container: Container) -> Iterator[None]:
    """The thirteen units, set up as BEFORE says; everything removed at the end."""
    for path, text in FILES.items():
        container.write_file(path, text)
    run = container.exec
    run(['systemctl', 'daemon-reload'])
    run(['systemctl', 'link', '/opt/cu-units/sh-link.service'])
    enabled = ['plain', 'link', 'old', 'gone', 'masked', 'puller', 'reset', 'alias']
    run(['systemctl', 'enable', *(f'sh-{u}.service' for u in enabled), 'sh-also.socket'])
    run(['systemctl', 'add-wants', 'multi-user.target', 'sh-extra.service'])
    running = ['plain', 'link', 'old', 'gone', 'masked', 'puller', 'reset', 'alias', 'extra']
    run(['systemctl', 'start', *(f'sh-{u}.service' for u in running), 'sh-also.socket'])
    run(['systemctl', 'mask', 'sh-masked.service'])
    try:
        yield
    finally:
        _cleanup(container, [*GROUP, 'sh-new.service', 'sh-alias2.service'], [*FILES, NEW_UNIT])


def upgrade_the_os(container: Container) -> None:
    """What the release upgrade does to these units, short of the reboot."""
    run = container.exec
    # The new release drops sh-gone and renames sh-old (as bind9 became named).
    run(['rm', f'{ETC}/sh-gone.service', '/lib/systemd/system/sh-old.service'])
    container.write_file(NEW_UNIT, RUN + WANTED + 'Alias=sh-old.service\n')
    run(['systemctl', 'daemon-reload'])
    # Maintainer scripts: enable what the package ships, and (re)start it.
    run(['systemctl', 'enable', 'sh-new.service', 'sh-also.service', 'sh-off.service'])
    run(['deb-systemd-invoke', 'restart', 'sh-new.service', 'sh-also.service'])


def test_every_unit_shape_through_an_upgrade_with_a_reboot(
    container: Container,
    shapes: None,
    run_step: Callable[[str, list[dict[str, Any]]], dict[str, Any]],
    record_timing: Callable[[str, float], None],
) -> None:
    spec: list[dict[str, Any]] = [{'systemd': GROUP}]
    assert unit_states(container, GROUP) == BEFORE

    prepared = run_step('prepare', spec)

    assert prepared['step'] == 'took-down', prepared
    assert prepared['calls'] == ['show', 'daemon-reload', 'stop']
    record_timing('series_prepare_13_shapes', prepared['seconds'])
    assert held(container, GROUP) == GROUP
    assert {u: s[1] for u, s in unit_states(container, GROUP).items()} == dict.fromkeys(
        GROUP, 'inactive'
    )
    # Only the boot links went: the link and the alias are still there.
    assert unit_states(container, ['sh-link.service'])['sh-link.service'][0] == 'linked'
    # Held, whatever starts them: root, by an alias, through a drop-in that resets conditions.
    container.exec(['systemctl', 'start', *GROUP, 'sh-alias2.service'], check=False)
    assert connect_to(container, '/run/sh-also.sock') == 7
    assert {u: s[1] for u, s in unit_states(container, GROUP).items()} == dict.fromkeys(
        GROUP, 'inactive'
    )

    upgrade_the_os(container)
    assert container.reboot() == 'running', container.failed_units

    now = [u for u in GROUP if u not in ('sh-old.service', 'sh-gone.service')]
    assert {u: s[1] for u, s in unit_states(container, [*now, 'sh-new.service']).items()} == (
        dict.fromkeys([*now, 'sh-new.service'], 'inactive')
    )

    completed = run_step('complete', spec)

    assert completed['step'] == 'brought-back', completed
    assert completed['calls'] == ['show', 'daemon-reload', 'start', 'show'], completed
    record_timing('series_complete_13_shapes', completed['seconds'])
    assert completed['renamed'] == {'sh-old.service': 'sh-new.service'}
    assert completed['skipped'] == {
        'sh-gone.service': 'no longer exists after the OS upgrade: skipped',
        'sh-masked.service': 'masked, so not started',
    }
    assert unit_states(container, list(AFTER)) == AFTER
    assert held(container, GROUP) == []
    assert connect_to(container, '/run/sh-also.sock') == 28  # the socket listens
    links = container.exec(['find', ETC, '-name', 'sh-*', '-type', 'l']).stdout.split()
    assert sorted(link.removeprefix(f'{ETC}/') for link in links) == [
        'multi-user.target.wants/sh-alias.service',
        'multi-user.target.wants/sh-extra.service',  # the operator's add-wants link
        'multi-user.target.wants/sh-link.service',
        'multi-user.target.wants/sh-masked.service',  # back, and the mask still wins
        'multi-user.target.wants/sh-new.service',
        'multi-user.target.wants/sh-plain.service',
        'multi-user.target.wants/sh-puller.service',
        'multi-user.target.wants/sh-reset.service',
        'sh-alias2.service',
        'sh-link.service',
        'sh-masked.service',
        'sh-old.service',  # sh-new's alias, made by its package
        'sockets.target.wants/sh-also.socket',  # the socket only, as before
    ]


@pytest.fixture
def unholdable(container: Container) -> Iterator[None]:
    """A unit that refuses a manual stop, and a socket-activated service; removed at the end."""
    files = {
        f'{ETC}/sh-nostop.service': '[Unit]\nRefuseManualStop=yes\n' + RUN + WANTED,
        f'{ETC}/sh-trig.service': RUN,
        f'{ETC}/sh-trig.socket': (
            '[Socket]\nListenStream=/run/sh-trig.sock\n[Install]\nWantedBy=sockets.target\n'
        ),
    }
    for path, text in files.items():
        container.write_file(path, text)
    container.exec(['systemctl', 'daemon-reload'])
    container.exec(['systemctl', 'enable', '--now', 'sh-nostop.service', 'sh-trig.socket'])
    try:
        yield
    finally:
        units = ['sh-nostop.service', 'sh-trig.service', 'sh-trig.socket']
        _cleanup(container, units, list(files))


def test_units_that_cannot_be_held_or_restored_are_refused_untouched(
    container: Container,
    unholdable: None,
    run_step: Callable[[str, list[dict[str, Any]]], dict[str, Any]],
) -> None:
    for group, error in (
        (['sh-nostop.service'], 'sh-nostop.service refuse a manual stop'),
        (['sh-trig.service'], 'sh-trig.socket start listed services but are not listed'),
    ):
        refused = run_step('prepare', [{'systemd': group}])
        assert error in refused['error']
        assert refused['calls'] == ['show']
    assert unit_states(container, ['sh-nostop.service', 'sh-trig.socket']) == {
        'sh-nostop.service': ('enabled', 'active'),
        'sh-trig.socket': ('enabled', 'active'),
    }
    assert held(container, ['sh-nostop.service', 'sh-trig.service']) == []


def test_an_unlisted_trigger_allowed_is_started_again_at_complete(
    container: Container,
    unholdable: None,
    run_step: Callable[[str, list[dict[str, Any]]], dict[str, Any]],
) -> None:
    spec: list[dict[str, Any]] = [{'systemd': ['sh-trig'], 'allow_unlisted_triggers': True}]
    assert run_step('prepare', spec)['step'] == 'took-down'
    # A client while the service is held: the socket gives up, and stays failed.
    assert connect_to(container, '/run/sh-trig.sock') != 28
    assert container.reboot() == 'running', container.failed_units
    assert connect_to(container, '/run/sh-trig.sock') != 28
    assert unit_states(container, ['sh-trig.socket'])['sh-trig.socket'][1] == 'failed'

    completed = run_step('complete', spec)

    assert completed['step'] == 'brought-back', completed
    assert completed['skipped'] == {}
    assert completed['calls'] == ['show', 'daemon-reload', 'reset-failed', 'start', 'show']
    assert connect_to(container, '/run/sh-trig.sock') == 28
    assert unit_states(container, ['sh-trig.socket', 'sh-trig.service']) == {
        'sh-trig.socket': ('enabled', 'active'),
        'sh-trig.service': ('static', 'active'),
    }
