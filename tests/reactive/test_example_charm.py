# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""examples/reactive-charm's handlers through charms.reactive's real dispatch."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from _reactive_unit import ReactiveUnit

    from charm_upgrade.testing import FakeSystemd

EXAMPLE = pathlib.Path(__file__).parents[2] / 'examples' / 'reactive-charm'


def test_example_charm_prepare_and_complete(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    # A unit installed earlier: install_and_start, which writes to
    # /etc/systemd/system, ran then and set the started flag.
    fake_systemd.add_unit('myapp.service')
    unit = make_unit((EXAMPLE / 'reactive' / 'myapp.py').read_text())
    (unit.charm_dir / 'metadata.yaml').write_text((EXAMPLE / 'metadata.yaml').read_text())
    unit.set_flags('charm.application.started')
    unit.hook('update-status')
    assert unit.status() == ('active', 'serving on port 8080')
    assert fake_systemd.commands() == []

    unit.pre_series_upgrade()

    assert fake_systemd.unit('myapp.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert fake_systemd.held() == ['myapp.service']
    assert unit.status() == (
        'blocked',
        'Services stopped and disabled for the OS upgrade; when it is done, '
        'run `juju upgrade-machine 3 complete`',
    )

    # A config change during the upgrade (a hook retried by hand, say): the guard holds.
    unit.set_flags('config.changed')
    fake_systemd.clear_calls()
    unit.hook('config-changed')
    assert 'restart' not in fake_systemd.commands()
    unit.clear_flags('config.changed')  # layer-basic clears it at the end of the hook

    unit.upgrade_os()
    unit.hook('post-series-upgrade')

    assert fake_systemd.unit('myapp.service') == {'enabled': 'enabled', 'active': 'active'}
    assert fake_systemd.held() == []
    assert unit.status() == ('active', 'serving on port 8080')
    assert 'myapp: nothing to migrate from ubuntu@22.04 to ubuntu@24.04' in unit.juju_log()
    assert unit.flags() == {'charm.application.started'}
