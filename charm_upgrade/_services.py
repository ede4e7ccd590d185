# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Groups of services that an upgrade takes down and brings back.

A group first reads its *before-state* (which services were enabled, which
were running), which the flow records on disk before anything is touched.
Taking down stops every service and holds it down until the upgrade
completes; bringing back restores exactly the recorded state: a service the
operator had disabled stays disabled, a stopped one stays stopped. What
cannot come back (the OS upgrade removed it, say) is skipped and reported,
and never keeps the rest of the group down.

:class:`SnapServices` is here; :class:`~charm_upgrade.SystemdServices` is in
:mod:`charm_upgrade._systemd_services`.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from . import _systemd
from .errors import ServiceError, SnapNotInstalled

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .snapd import Snapd

__all__ = [
    'BringBackResult',
    'Services',
    'SnapServices',
    'group_from_record',
    'restore_snap_services',
    'snap_unit',
]

logger = logging.getLogger(__name__)

BeforeState = dict[str, Any]
"""The JSON-serialisable record of one group's services before an upgrade."""


@dataclasses.dataclass
class BringBackResult:
    """What bringing a group back did otherwise than recorded.

    Attributes:
        skipped: Each service that is not back as recorded -> why, in words
            (it no longer exists, it is masked, it did not start...).
        renamed: Each service the OS upgrade renamed -> the name it has now.
    """

    skipped: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    renamed: dict[str, str] = dataclasses.field(default_factory=dict[str, str])


class Services(abc.ABC):
    """A group of services taken down together; base of the concrete kinds."""

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """A stable identifier of the group, used to find its before-state."""

    @property
    @abc.abstractmethod
    def names(self) -> list[str]:
        """The services' names, for messages and the journal."""

    @abc.abstractmethod
    def read_state(self) -> BeforeState:
        """Return the services' current state, validating that they all exist.

        Raises:
            ServiceError: a service does not exist on this machine.
        """

    @abc.abstractmethod
    def take_down(self, before: Mapping[str, Any]) -> None:
        """Stop every service and hold it down until :meth:`bring_back`.

        Idempotent: safe to call again after a failure at any point.
        """

    @abc.abstractmethod
    def bring_back(self, before: Mapping[str, Any]) -> BringBackResult | None:
        """Release the services and restore the state recorded in ``before``.

        Idempotent: safe to call again after a failure at any point. A
        service that cannot come back is skipped, so the others do.

        Returns:
            What was not restored as recorded, and why (None: everything was).
        """


class SnapServices(Services):
    """Services of a snap, controlled through snapd's REST API.

    Taking them down asks snapd to stop them with ``disable`` (so neither a
    boot nor a snap refresh starts them again) and also holds their systemd
    units down with a drop-in, so that a plain ``systemctl start`` does not
    run them either. Bringing them back releases the holds and asks snapd to
    start them, with ``enable`` for those that were enabled.

    Args:
        snap: The snap's name.
        services: The services (apps) of the snap to handle, by their short
            names (``daemon``, not ``mysnap.daemon``); None means all of them.
        snapd: The snapd client to use; by default one with the library's
            time limits, on ``$CHARM_UPGRADE_SNAPD_SOCKET`` or ``/run/snapd.socket``.

    Raises:
        ServiceError: ``snap`` is empty, or ``services`` is empty or has duplicates.

    Example::

        SnapServices('charmed-myapp', ['daemon'])
    """

    def __init__(
        self,
        snap: str,
        services: Iterable[str] | None = None,
        *,
        snapd: Snapd | None = None,
    ):
        if not isinstance(snap, str) or not snap or '.' in snap:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ServiceError(f'invalid snap name {snap!r}: expected a name such as "myapp"')
        apps: list[str] | None = None
        if services is not None:
            if isinstance(services, str):
                services = [services]
            apps = [s.removeprefix(f'{snap}.') for s in services]
            if not apps:
                raise ServiceError(
                    f'SnapServices({snap!r}) got an empty list of services; pass None for all'
                )
            duplicates = sorted({a for a in apps if apps.count(a) > 1})
            if duplicates:
                raise ServiceError(
                    f'SnapServices({snap!r}) got these services more than once: {duplicates}'
                )
        self._snap = snap
        self._apps = apps
        self._snapd = snapd

    def __repr__(self) -> str:
        return f'SnapServices({self._snap!r}, {self._apps!r})'

    @property
    def snap(self) -> str:
        """The snap's name."""
        return self._snap

    @property
    def key(self) -> str:
        """``snap:`` followed by the snap's name and, if given, its services."""
        return f'snap:{self._snap}' + (':' + ','.join(self._apps) if self._apps else '')

    @property
    def names(self) -> list[str]:
        """``snap.app`` names of the services given, or the snap's name for all."""
        if self._apps is None:
            return [self._snap]
        return [f'{self._snap}.{app}' for app in self._apps]

    @property
    def client(self) -> Snapd:
        """The snapd client used."""
        if self._snapd is None:
            from .snapd import Snapd

            self._snapd = Snapd()
        return self._snapd

    def read_state(self) -> BeforeState:
        """Ask snapd for the services' state.

        Raises:
            ServiceError: the snap is not installed, or has no such service.
            SnapdError: snapd could not be asked.
        """
        try:
            services = self.client.services(self._snap)
        except SnapNotInstalled as e:
            raise ServiceError(
                f'snap {self._snap!r} is not installed, so its services cannot be taken '
                'down; install it first or remove it from the services given'
            ) from e
        by_app = {s.name: s for s in services}
        apps = self._apps if self._apps is not None else list(by_app)
        unknown = [app for app in apps if app not in by_app]
        if unknown:
            raise ServiceError(
                f'snap {self._snap!r} has no service named {", ".join(unknown)} '
                f'(its services: {", ".join(by_app) or "none"})'
            )
        return {
            'kind': 'snap',
            'snap': self._snap,
            'services': {
                f'{self._snap}.{app}': {
                    'enabled': by_app[app].enabled,
                    'active': by_app[app].active,
                }
                for app in apps
            },
        }

    def take_down(self, before: Mapping[str, Any]) -> None:
        """Stop and disable the services through snapd, then hold their units."""
        names = list(_snap_services_of(before))
        if not names:
            return
        client = self.client
        client.wait_done(client.stop(names, disable=True))
        _systemd.hold(snap_unit(name) for name in names)

    def bring_back(self, before: Mapping[str, Any]) -> BringBackResult:
        """Release the holds and restore each service's enabled and active state.

        A snap the OS upgrade removed is skipped and reported.
        """
        services = _snap_services_of(before)
        result = BringBackResult()
        if not services:
            return result
        _systemd.release(snap_unit(name) for name in services)
        try:
            restore_snap_services(self.client, services)
        except SnapNotInstalled:
            why = f'snap {self._snap} is no longer installed: skipped'
            result.skipped.update(dict.fromkeys(services, why))
        return result


def restore_snap_services(client: Snapd, before: Mapping[str, Mapping[str, Any]]) -> None:
    """Bring snap services back to their recorded state: the one restore rule of the library.

    A service that was enabled is enabled again, and runs again if it ran; one that
    ran without being enabled runs again; one that was disabled and stopped stays
    so. snapd has no "enable without starting": an enabled service that was stopped
    is started with ``enable``, then stopped. Services not in ``before`` (new in the
    revision installed since) are left as snapd left them. At most three snapd
    changes, whatever the number of services; usually one.

    Args:
        client: The snapd client.
        before: ``snap.app`` -> ``{'enabled': bool, 'active': bool}``, of one snap.

    Raises:
        SnapdError: snapd failed or could not be asked.
    """
    enabled = [n for n, s in before.items() if s['enabled']]
    running_only = [n for n, s in before.items() if s['active'] and not s['enabled']]
    idle_enabled = [n for n, s in before.items() if s['enabled'] and not s['active']]
    if enabled:
        client.wait_done(client.start(enabled, enable=True))
    if running_only:
        client.wait_done(client.start(running_only, enable=False))
    if idle_enabled:
        client.wait_done(client.stop(idle_enabled, disable=False))


def group_from_record(state: Mapping[str, Any]) -> Services | None:
    """Rebuild the group a recorded before-state belongs to, or None if unknown.

    Used at complete for groups the charm no longer lists, so that nothing
    taken down at prepare is left held down.
    """
    if state.get('kind') == 'systemd' and isinstance(state.get('units'), dict):
        from ._systemd_services import SystemdServices

        return SystemdServices(
            list(state['units']),
            allow_unlisted_triggers=bool(state.get('allow_unlisted_triggers')),
        )
    if state.get('kind') == 'snap' and isinstance(state.get('services'), dict):
        snap = str(state.get('snap', ''))
        return SnapServices(snap, [name.removeprefix(f'{snap}.') for name in state['services']])
    return None


def _snap_services_of(before: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    services = before.get('services')
    if not isinstance(services, dict):
        raise ServiceError('the recorded before-state of a snap has no services')
    return services  # pyright: ignore[reportUnknownVariableType]


def snap_unit(full_name: str) -> str:
    """Return the systemd unit of the snap service ``full_name`` (``snap.app``)."""
    # snapd names a service's systemd unit snap.<snap>.<app>.service.
    return f'snap.{full_name}.service'
