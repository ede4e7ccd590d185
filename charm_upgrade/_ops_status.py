# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The library's unit status in an ops charm, through ops' collect-status.

One :class:`StatusReporter` per charm object is where the library's ops adapters meet.
It runs their end-of-event steps, then gathers what they want
shown (their :class:`~charm_upgrade._status.StatusIntent`) and adds the most
important to ops' ``collect-unit-status`` at the end of every event. ops then sets
the most important status of all that were added, the charm's own included, so a
charm that uses collect-status keeps working, and one that sets its status directly
still never shows ``active`` while the library holds its workload down. When the
adapters want nothing shown any more, the status is set back to ``active`` only if
the :class:`~charm_upgrade._status.StatusLedger` says the status showing is the one
the library set.

It also passes one fact between the adapters: when a series upgrade brings the
workload back (:meth:`StatusReporter.workload_released`), the refresh adapter
finishes, in the same event, a refresh that the series upgrade held.
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
        self._steps: list[Callable[[], None]] = []
        self._providers: list[Callable[[], StatusIntent | None]] = []
        self._release_listeners: list[Callable[[], None]] = []
        self.ledger = StatusLedger()
        self.framework.observe(charm.on.collect_unit_status, self._on_collect_unit_status)

    def add_step(self, step: Callable[[], None]) -> None:
        """Run ``step`` at the end of every event, before any status is asked for."""
        self._steps.append(step)

    def add_provider(self, provider: Callable[[], StatusIntent | None]) -> None:
        """Ask ``provider`` for the status it wants shown at the end of every event."""
        self._providers.append(provider)

    def add_release_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a series upgrade has brought the workload back."""
        self._release_listeners.append(listener)

    def workload_released(self) -> None:
        """Say that a series upgrade has just brought the workload back."""
        for listener in self._release_listeners:
            listener()

    def intent(self) -> StatusIntent | None:
        """The most important status the library's adapters want shown now, if any."""
        return most_important(provider() for provider in self._providers)

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        # ops collects statuses before pre-commit: the end-of-event steps run
        # first, all of them, so that every status says what they left.
        for step in self._steps:
            step()
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
