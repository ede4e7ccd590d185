# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Series upgrades for ops charms: :class:`SeriesUpgrade`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import ops

from . import _bases, _series_status
from ._flags import APPLICATION_DISABLED, APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS
from ._ops_status import reporter_for
from ._series_flow import SeriesUpgradeFlow, Step
from ._status import workload_held
from .errors import MigrationError

if TYPE_CHECKING:
    from collections.abc import MutableMapping, MutableSequence, Sequence

    from ._journal import Journal
    from ._migrations import Migrations
    from ._preview import Preview
    from ._series_flow import Callback, MigrateCallback, Started
    from ._services import Services
    from ._status import StatusIntent

__all__ = ['SeriesUpgrade']

logger = logging.getLogger(__name__)


class _StoredFlags:
    """The flow's flags, kept in the unit's ops stored state."""

    def __init__(self, stored: Any):
        self._stored = stored

    @property
    def _flags(self) -> MutableSequence[str]:
        # An ops StoredList: every change is committed with the hook.
        return self._stored.flags

    @property
    def _values(self) -> MutableMapping[str, str]:
        return self._stored.values

    def is_set(self, flag: str) -> bool:
        return flag in self._flags

    def set(self, flag: str, value: str | None = None) -> None:
        if flag not in self._flags:
            self._flags.append(flag)
        if value is not None:
            self._values[flag] = value
        else:
            self._values.pop(flag, None)

    def clear(self, flag: str) -> None:
        if flag in self._flags:
            self._flags.remove(flag)
        self._values.pop(flag, None)

    def value(self, flag: str) -> str | None:
        return self._values.get(flag) if flag in self._flags else None


class SeriesUpgrade(ops.Object):
    """Takes a machine charm's services down for an OS series upgrade, and back.

    Create it in the charm's ``__init__``. When the operator runs ``juju
    upgrade-machine <machine> prepare <base>`` (``upgrade-series`` on Juju
    2.9), the ``pre-series-upgrade`` hook records which services were enabled
    and running, stops them, and holds them down across reboots; the unit
    shows a blocked status that names the command that finishes the upgrade.
    After ``complete``, the ``post-series-upgrade`` hook calls ``migrate``,
    runs the pending series ``migrations`` and restores every service to its
    recorded state. If ``migrate`` or a migration fails, the services stay
    down, the unit shows a blocked status that names it, and every later hook
    tries it again. A service that cannot come back (the OS upgrade removed
    it, say) never keeps the others down: the status names it.

    The flags live in the unit's stored state. By default the application
    counts as *started* (there is something to take down) from the first
    ``start`` or ``upgrade-charm`` event this object sees, or from
    :meth:`mark_started`. The flow also runs at the end of every other event,
    so a step that failed converges on the next hook, and an unrelated hook
    during the upgrade touches no service.

    Args:
        charm: The charm.
        services: A group of services, or a sequence of groups, taken down in
            that order and brought back in reverse.
        started: Whether there is something to take down: the name of a flag
            in this object's stored state (``charm.application.started`` by
            default, set as described above), a callable that returns a bool
            (asked at prepare), or None to take down whatever runs at prepare.
        before_take_down: Called at prepare, after the before-state is
            recorded and before any service stops: drain the unit.
        after_bring_back: Called at complete, after the services are back:
            uncordon, warm caches. Make both callbacks idempotent: they run
            again when their step is retried.
        migrate: Called as ``migrate(old_base, new_base)`` (``'ubuntu@22.04'``,
            ``'ubuntu@24.04'``) after the upgrade and before the services come
            back; ``new_base`` is the base the machine runs then, and if it
            still runs ``old_base`` (nothing was upgraded) neither ``migrate``
            nor the series migrations run. Make it idempotent: if the hook
            fails after it, it runs again.
        migrations: The charm's :class:`~charm_upgrade.Migrations`; its series
            migrations run after ``migrate``. The ``install`` event records
            every known migration as applied (a fresh unit has nothing to migrate).
        disabled_flag: The name of the flag that says the services are down.
        journal: Where stages are journaled; by default the unit's journal.
        key: The ops object key, unique within the charm.

    Raises:
        ServiceError: ``services`` is empty or names a group twice.

    Example::

        class MyCharm(ops.CharmBase):
            def __init__(self, framework: ops.Framework):
                super().__init__(framework)
                self.series_upgrade = charm_upgrade.SeriesUpgrade(
                    self, services=charm_upgrade.SystemdServices(['myapp'])
                )
    """

    _stored = ops.StoredState()

    def __init__(
        self,
        charm: ops.CharmBase,
        *,
        services: Services | Sequence[Services],
        started: Started = APPLICATION_STARTED,
        before_take_down: Callback | None = None,
        after_bring_back: Callback | None = None,
        migrate: MigrateCallback | None = None,
        migrations: Migrations | None = None,
        disabled_flag: str = APPLICATION_DISABLED,
        journal: Journal | None = None,
        key: str = 'series-upgrade',
    ):
        super().__init__(charm, key)
        self._charm = charm
        self._stored.set_default(flags=[], values={})
        self._flow = SeriesUpgradeFlow(
            services,
            flags=_StoredFlags(self._stored),
            started=started,
            before_take_down=before_take_down,
            after_bring_back=after_bring_back,
            migrate=migrate,
            migrations=migrations,
            disabled_flag=disabled_flag,
            journal=journal,
        )
        self._reconciled = False
        on = charm.on
        if migrations is not None:
            self.framework.observe(on.install, self._on_install)
        self.framework.observe(on.pre_series_upgrade, self._on_pre_series_upgrade)
        self.framework.observe(on.post_series_upgrade, self._on_post_series_upgrade)
        self.framework.observe(on.start, self._on_started)
        self.framework.observe(on.upgrade_charm, self._on_started)
        self.framework.observe(self.framework.on.pre_commit, self._on_pre_commit)
        self._reporter = reporter_for(charm)
        self._reporter.add_step(self._reconcile)
        self._reporter.add_provider(self._status_intent)

    @property
    def in_progress(self) -> bool:
        """Whether a series upgrade is under way, from prepare until complete."""
        return self._flow.flags.is_set(UPGRADE_SERIES_IN_PROGRESS)

    @property
    def services_disabled(self) -> bool:
        """Whether the services are held down by this library now."""
        return self._flow.services_held()

    @property
    def workload_held(self) -> bool:
        """Whether the library holds the workload down now: a series upgrade or a refresh.

        True between a series upgrade's prepare and its complete, and between a snap
        refresh's stop and the start that brings the workload back. Guard the charm's
        own handlers that start or restart the workload with it.
        """
        return workload_held()

    @property
    def status(self) -> ops.StatusBase | None:
        """The unit status the series upgrade wants shown now, else None.

        Blocked while the services are down: with the command that finishes the
        upgrade, or with the migration that holds them; and in the event that
        completed the upgrade, if a service could not come back, naming it. The
        library adds it to ops' collect-status itself; a charm that composes its
        status by hand shows it first.
        """
        intent = self._status_intent()
        return intent.to_ops() if intent is not None else None

    def _status_intent(self) -> StatusIntent | None:
        return _series_status.series_intent(self._flow, in_progress=self.in_progress)

    def preview(self, *, target_base: str | None = None) -> Preview:
        """Say what the next step (prepare, or complete while down) would do; change nothing.

        Args:
            target_base: The base the operator means to upgrade to, if known.
        """
        return self._flow.preview(target_base=target_base)

    def mark_started(self) -> None:
        """Record that the application's services are started.

        With the default started condition, only started services are taken
        down at prepare. The ``start`` and ``upgrade-charm`` events mark them
        started already; call this if the charm starts its services in another
        event. With a callable or None as ``started``, this does nothing.
        """
        if isinstance(self._flow.started, str):
            self._flow.flags.set(self._flow.started)

    def _on_install(self, _: ops.EventBase) -> None:
        migrations = self._flow.migrations
        assert migrations is not None
        migrations.mark_installed(base=_bases.current_base())

    def _on_started(self, _: ops.EventBase) -> None:
        self.mark_started()

    def _on_pre_series_upgrade(self, _: ops.EventBase) -> None:
        self._flow.flags.set(UPGRADE_SERIES_IN_PROGRESS)
        self._reconcile(target_base=_bases.target_base_from_env())

    def _on_post_series_upgrade(self, _: ops.EventBase) -> None:
        self._flow.flags.clear(UPGRADE_SERIES_IN_PROGRESS)
        self._reconcile()

    def _on_pre_commit(self, _: ops.EventBase) -> None:
        # Level-triggered, like charms.reactive's handlers: the flags decide.
        # On an unrelated hook this reads a few flags and does nothing.
        self._reconcile()

    def _reconcile(self, *, target_base: str | None = None) -> None:
        # Once per event: the event's own handler, or the end of any other event.
        if self._reconciled:
            return
        self._reconciled = True
        try:
            step = self._flow.run(target_base=target_base)
        except MigrationError as e:
            # Not raised: a failed hook would show "hook failed" instead of which
            # migration failed. The services stay down, the status names the
            # migration, and the flow tries it again at the end of every hook.
            logger.error('Series upgrade held: %s', e)
            return
        if step is Step.BROUGHT_BACK:
            # A snap refresh that this upgrade held finishes now, in this event,
            # rather than at the next one.
            self._reporter.workload_released()
