# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The series upgrade's status intent, in one place for both adapters.

:func:`series_intent` decides, from the flow's flags and record, the
:class:`~charm_upgrade._status.StatusIntent` the series upgrade wants shown
at the end of a hook: blocked while the services are held (naming the
command that finishes the upgrade, or the migration that holds them), blocked
after a complete that could not bring everything back (naming what), or
nothing. The ops adapter hands it to ops' collect-status
(:mod:`charm_upgrade._ops_status`); the reactive adapter sets it with the
hook tool, last of all (see :mod:`charm_upgrade.reactive`). Whether a status
showing is the library's is decided by the
:class:`~charm_upgrade._status.StatusLedger`, never from the message.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._migrations import SERIES
from ._status import StatusIntent

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._series_flow import SeriesUpgradeFlow

__all__ = [
    'HELD_PREFIX',
    'MIGRATION_HOLD_SUFFIX',
    'held_message',
    'series_intent',
]

HELD_PREFIX = 'Services stopped and disabled for the OS upgrade'
"""How the blocked status between prepare and complete begins."""

MIGRATION_HOLD_SUFFIX = '; services stay down'
"""How the blocked status of a series upgrade held by a migration ends."""

NOT_RESTORED_PREFIX = 'OS upgrade complete, but not brought back: '
"""How the blocked status after a complete that could not bring everything back begins."""


def series_intent(flow: SeriesUpgradeFlow, *, in_progress: bool) -> StatusIntent | None:
    """Return the status the series upgrade wants shown now, or None to leave the charm's.

    Args:
        flow: The flow, after this hook's run.
        in_progress: Whether ``upgrade.series.in-progress`` is set.
    """
    if flow.services_held():
        held = None if in_progress else migration_hold_message(flow)
        return StatusIntent('blocked', held or held_message(), 'series')
    skipped = flow.last_result.skipped if flow.last_result is not None else {}
    if skipped:
        return StatusIntent('blocked', not_restored_message(skipped), 'series')
    return None


def held_message() -> str:
    """The blocked status message while the services are down for the OS upgrade.

    It names the command that finishes the upgrade on this machine: ``juju
    upgrade-machine <machine> complete``, or ``upgrade-series`` on Juju 2.9
    (from ``JUJU_VERSION`` and ``JUJU_MACHINE_ID``).
    """
    machine = os.environ.get('JUJU_MACHINE_ID', '<machine>')
    major = os.environ.get('JUJU_VERSION', '3').split('.', 1)[0]
    command = 'upgrade-series' if major.isdigit() and int(major) < 3 else 'upgrade-machine'
    return f'{HELD_PREFIX}; when it is done, run `juju {command} {machine} complete`'


def migration_hold_message(flow: SeriesUpgradeFlow) -> str | None:
    """The blocked status message while a failed or refused migration holds the services down.

    Both the charm's ``migrate`` callback and its series migrations count;
    refresh migrations do not.
    """
    failure = flow.migrate_failure()
    blocked = None
    if failure is not None:
        blocked = f'Migration migrate failed ({failure}); see upgrade-journal'
    elif flow.migrations is not None:
        blocked = flow.migrations.blocked_message(SERIES)
    return None if blocked is None else blocked + MIGRATION_HOLD_SUFFIX


def not_restored_message(skipped: Mapping[str, str]) -> str:
    """The blocked status message after a complete that could not bring everything back."""
    return NOT_RESTORED_PREFIX + '; '.join(f'{name} ({why})' for name, why in skipped.items())
