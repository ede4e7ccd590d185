# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Flag names of a series upgrade, and the interface the flow reads them through.

``upgrade.series.in-progress`` is set by charms.reactive during
``pre-series-upgrade`` and cleared during ``post-series-upgrade``; the ops
adapter keeps the same flag in the unit's stored state. The two other flags
say what the library reads and sets: ``started`` says the application's
services have been started (so there is something to take down; the charm
sets it, unless it gives the flow another started condition), ``disabled``
says this library took them down and has not yet brought them back (only the
library sets it, with its record's token as the value where the store keeps
values, so that a flag someone else set is never taken for its own).
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    'APPLICATION_DISABLED',
    'APPLICATION_STARTED',
    'UPGRADE_SERIES_IN_PROGRESS',
    'FlagStore',
]

UPGRADE_SERIES_IN_PROGRESS = 'upgrade.series.in-progress'
"""Set by the framework from ``pre-series-upgrade`` until ``post-series-upgrade``."""

APPLICATION_STARTED = 'charm.application.started'
"""Default name of the flag that says the application's services were started."""

APPLICATION_DISABLED = 'charm.application.disabled'
"""Default name of the flag that says the services are held down for the upgrade."""


class FlagStore(Protocol):
    """Where the flow reads and sets flags: ops stored state or charms.reactive."""

    def is_set(self, flag: str) -> bool:
        """Tell whether ``flag`` is set."""
        ...

    def set(self, flag: str, value: str | None = None) -> None:
        """Set ``flag``, with ``value`` if the store keeps values; a set flag takes the value."""
        ...

    def clear(self, flag: str) -> None:
        """Clear ``flag``; clearing a clear flag does nothing."""
        ...

    def value(self, flag: str) -> str | None:
        """Return the value ``flag`` was set with, or None (unset, or set without one)."""
        ...
