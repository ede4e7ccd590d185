# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""README.md's reactive charm module, run through charms.reactive's real dispatch.

The ops and charm-refresh snippets, and the rule for fragments, are in
tests/scenario/test_docs_snippets.py and tests/doc_snippets.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from doc_snippets import README, block_under

if TYPE_CHECKING:
    from collections.abc import Callable

    from _reactive_unit import ReactiveUnit

    from charm_upgrade.testing import FakeSystemd


def test_the_readme_reactive_charm_takes_down_and_brings_back(
    make_unit: Callable[[str], ReactiveUnit], fake_systemd: FakeSystemd
):
    block = block_under(README, 'Use it in a reactive charm')
    assert block.fragment is None
    # The charm's install wrote the unit file; the handler starts it.
    fake_systemd.add_unit('myapp.service', active=False)
    unit = make_unit(block.code)

    unit.hook('install')
    assert fake_systemd.unit('myapp.service')['active'] == 'active'
    assert 'charm.application.started' in unit.flags()

    unit.pre_series_upgrade()
    assert fake_systemd.unit('myapp.service') == {'enabled': 'disabled', 'active': 'inactive'}
    assert unit.status()[0] == 'blocked'
    unit.hook('update-status')  # start_app does not run again: the service stays down
    assert fake_systemd.unit('myapp.service')['active'] == 'inactive'

    unit.upgrade_os()
    unit.hook('post-series-upgrade')
    assert fake_systemd.unit('myapp.service') == {'enabled': 'enabled', 'active': 'active'}
    assert ('series-migrate', 'ended') in unit.journal_stages()
    assert unit.flags() == {'charm.application.started'}
