# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The library's unit status in an ops charm, through ops' collect-status.

One :class:`StatusReporter` per charm object gathers what the library's adapters want
shown (their :class:`~charm_upgrade._status.StatusIntent`) and adds the most
important to ops' ``collect-unit-status`` at the end of every event. ops then sets
the most important status of all that were added, the charm's own included, so a
charm that uses collect-status keeps working, and one that sets its status directly
still never shows ``active`` while the library holds its workload down. When the
adapters want nothing shown any more, the status is set back to ``active`` only if
the :class:`~charm_upgrade._status.StatusLedger` says the status showing is the one
the library set.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

import ops

from ._status import StatusLedger, most_important

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._status import StatusIntent

__all__ = ['StatusReporter', 'reporter_for']

logger = logging.getLogger(__name__)

_REPORTERS: weakref.WeakKeyDictionary[ops.CharmBase, StatusReporter] = weakref.WeakKeyDictionary()


class StatusReporter(ops.Object):
    """Adds the library's status to ops' collect-status, and clears it when it is gone."""

    def __init__(self, charm: ops.CharmBase):
        super().__init__(charm, 'charm-upgrade-status')
        self._charm = charm
        self._providers: list[Callable[[], StatusIntent | None]] = []
        self.ledger = StatusLedger()
        self.framework.observe(charm.on.collect_unit_status, self._on_collect_unit_status)

    def add_provider(self, provider: Callable[[], StatusIntent | None]) -> None:
        """Ask ``provider`` for the status it wants shown at the end of every event."""
        self._providers.append(provider)

    def intent(self) -> StatusIntent | None:
        """The most important status the library's adapters want shown now, if any."""
        return most_important(provider() for provider in self._providers)

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        intent = self.intent()
        if intent is not None:
            event.add_status(intent.to_ops())
            self.ledger.record(intent)
            return
        shown = self.ledger.shown()
        if shown is None:
            return
        current = self._charm.unit.status
        if shown.matches(current.name, current.message):
            # Ours and no longer wanted. A status the charm adds still wins: ops
            # sets what was added after this handler, over this.
            self._charm.unit.status = ops.ActiveStatus()
        self.ledger.forget()


def reporter_for(charm: ops.CharmBase) -> StatusReporter:
    """Return the charm's one reporter, created on first use."""
    reporter = _REPORTERS.get(charm)
    if reporter is None:
        reporter = _REPORTERS[charm] = StatusReporter(charm)
    return reporter
