# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The default workload of a snap refresh: the snap's services, through snapd.

:class:`~charm_upgrade.CharmSpecificMachines`' default hooks delegate here. The stop
stops every service of the snap with ``disable``, so that snapd's refresh change,
which starts the services that are not disabled at its end, leaves them down until
the revision is recorded. The start brings each service back as the refresh's
before-state recorded it, by the library's one restore rule
(:func:`~charm_upgrade._services.restore_snap_services`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._services import restore_snap_services
from .errors import SnapdError, SnapNotInstalled

if TYPE_CHECKING:
    from ._refresh_flow import RefreshRecord
    from .snapd import ServiceInfo, Snapd

__all__ = ['SnapWorkload']


class SnapWorkload:
    """A snap's services as the refresh flow's workload.

    Args:
        snapd: The snapd client.
        snap: The snap.
    """

    def __init__(self, snapd: Snapd, snap: str):
        self.snapd = snapd
        self.snap = snap

    def stop(self, record: RefreshRecord | None = None) -> None:
        """Stop every service of the snap with ``disable`` and wait for snapd's change.

        Raises:
            SnapdError: snapd failed or could not be asked.
        """
        self.snapd.wait_done(self.snapd.stop([self.snap], disable=True))

    def start(self, record: RefreshRecord | None) -> None:
        """Bring the services of the snap back as ``record`` says they were.

        Services the record does not know (new in the revision installed since) are
        left as snapd left them; recorded services the snap no longer has are
        skipped. Without a record of this snap, the services snapd has enabled are
        started.

        Raises:
            SnapdError: snapd failed or could not be asked.
        """
        present = {s.full_name: s for s in self.snapd.services(self.snap)}
        recorded = _recorded(self.snap, record)
        if recorded is None:
            recorded = {
                name: {'enabled': True, 'active': True} for name, s in present.items() if s.enabled
            }
        restore_snap_services(
            self.snapd, {name: state for name, state in recorded.items() if name in present}
        )

    def inactive(self, record: RefreshRecord | None) -> list[str]:
        """Return the services of the snap that should run and do not.

        Those that ran before the refresh, as ``record`` says; without a record of
        this snap, those snapd has enabled. The snap's own name if it is not installed.

        Raises:
            SnapdError: snapd could not be asked.
        """
        try:
            services = self.snapd.services(self.snap)
        except SnapNotInstalled:
            return [self.snap]  # nothing of it runs
        expected = _expected_running(services, _recorded(self.snap, record))
        return [s.full_name for s in services if s.full_name in expected and not s.active]

    def healthy(self, record: RefreshRecord | None) -> bool:
        """Whether every service that should run is active.

        Raises:
            SnapdError: snapd could not be asked.
        """
        return not self.inactive(record)

    def unhealthy_message(self, record: RefreshRecord | None, *, workload: str = '') -> str:
        """Name the services that should run and do not; else say ``workload`` is unhealthy."""
        try:
            inactive = self.inactive(record)
        except SnapdError as e:
            return f'cannot read the services of {self.snap}: {e.message}'
        if inactive == [self.snap]:
            return f'snap {self.snap} is not installed'
        if inactive:
            return f'{self.snap} services not active: {", ".join(inactive)}'
        return f'{workload or self.snap} not healthy'


def _recorded(snap: str, record: RefreshRecord | None) -> dict[str, dict[str, bool]] | None:
    return record.services if record is not None and record.snap == snap else None


def _expected_running(
    services: list[ServiceInfo], recorded: dict[str, dict[str, bool]] | None
) -> set[str]:
    if recorded is None:
        return {s.full_name for s in services if s.enabled}
    return {name for name, state in recorded.items() if state['active']}
