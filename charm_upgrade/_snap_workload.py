# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The default workload of a snap refresh: the snap's services.

:class:`~charm_upgrade.CharmSpecificMachines`' default hooks delegate here. The stop
adds nothing to what the refresh flow does around it: hold every service of the snap
with the library's drop-in before, stop them after, so that snapd's refresh change, which starts
the services at its end, leaves them down until the revision is recorded. The start
brings back the services that ran before (the flow has opened the hold). A record of
an earlier version, whose refresh stopped the services through snapd with ``disable``,
is restored through snapd by the library's one restore rule
(:func:`~charm_upgrade._services.restore_snap_services`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _systemd
from ._services import restore_snap_services, snap_unit
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
        """Nothing more when the flow holds the units: it holds every service and stops them.

        The hold is the library's drop-in (see ``docs/explanation/design.md``), so
        snapd's refresh, which starts the services at its end, finds them held, and
        their enabled state in snapd is never touched. When the record holds no unit,
        stop every service of the snap through snapd with ``disable`` instead.

        Raises:
            SnapdError: snapd failed or could not be asked (without the hold).
        """
        if record is not None and not record.held_units:
            self.snapd.wait_done(self.snapd.stop([self.snap], disable=True))

    def start(self, record: RefreshRecord | None) -> None:
        """Bring the services of the snap back as ``record`` says they were.

        After a refresh that held them (the flow has opened the hold): start, with
        one ``systemctl start``, those that ran before; their enabled state was never
        changed. After a refresh that stopped them through snapd with ``disable``
        (records of earlier versions): restore each service's enabled and active state
        through snapd. Services the record does not know (new in the revision installed
        since) are left as snapd left them; recorded services the snap no longer has are
        skipped. Without a record of this snap, the services snapd has enabled are started.

        Raises:
            SnapdError: snapd failed or could not be asked.
            SystemdError: ``systemctl`` failed.
        """
        recorded = _recorded(self.snap, record)
        if record is not None and recorded is not None and record.held_units:
            self._start_held(recorded)
            return
        present = {s.full_name: s for s in self.snapd.services(self.snap)}
        if recorded is None:
            recorded = {
                name: {'enabled': True, 'active': True} for name, s in present.items() if s.enabled
            }
        restore_snap_services(
            self.snapd, {name: state for name, state in recorded.items() if name in present}
        )

    def _start_held(self, recorded: dict[str, dict[str, bool]]) -> None:
        # snapd is asked nothing in the common case: one systemctl start of the units
        # that ran, in the downtime. Only if it fails, is a unit gone with the revision?
        ran = [name for name, state in recorded.items() if state['active']]
        if not ran:
            return
        failure = _systemd.try_systemctl('start', '--', *map(snap_unit, ran))
        if failure is None:
            return
        present = {s.full_name for s in self.snapd.services(self.snap)}
        still_there = [name for name in ran if name in present]
        if still_there == ran:
            raise failure  # a service that failed to start, not one the revision dropped
        if still_there:
            _systemd.systemctl('start', '--', *map(snap_unit, still_there))

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
