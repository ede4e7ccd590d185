# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A charm-refresh base class whose ``refresh_snap`` keeps charm-refresh's contract.

charm-refresh (``charm_refresh.Machines``) decides when a unit refreshes its
workload snap and then calls ``refresh_snap`` on the charm's
``CharmSpecificMachines``. :class:`CharmSpecificMachines` implements that call
through snapd's REST API (:mod:`charm_upgrade.snapd`), crash-safely:

1. It waits (bounded) for a change of the snap that is already in flight: a
   hook killed earlier, an auto-refresh.
2. If the snap is already at the target revision (an earlier hook died after
   the refresh and before recording it), it records the revision and ends as
   a successful refresh: no second refresh, which would restart the services.
3. Otherwise it stops the workload, asks snapd to refresh, waits for the
   change, and calls ``refresh.update_snap_revision()`` as the very next
   statement once the change is done.
4. On failure it never retries: it reads the revision again, starts the
   workload again if the revision is unchanged or records the new one if not,
   and raises :class:`~charm_upgrade.SnapRefreshError`, so that Juju sends
   another event and charm-refresh calls ``refresh_snap`` again.

Before step 3 the before-state (base, revision, channel, each service enabled
and active) is recorded in ``snap-refresh.json`` and in the journal; the
default :meth:`CharmSpecificMachines.start_workload` restores the services to
it. With a :class:`~charm_upgrade.Migrations` registry (``migrations=``), the
pending refresh migrations run in step 3 between recording the revision and
starting the workload (a refresh to an older revision first runs ``down`` of
the ones applied at a newer revision, newest first). A migration that fails,
or applied migrations this code does not know, leave the workload stopped
(or, refused before anything is touched, untouched), the next unit waiting,
and a blocked status that names the migration; :meth:`reconcile` tries again
on every event.

Then :meth:`CharmSpecificMachines.post_snap_refresh` starts the workload if
needed and lets the next unit refresh only when this one is healthy (docs step
25); :meth:`CharmSpecificMachines.reconcile` retries that on every event.

This module imports charm-refresh, which imports lightkube and httpx: it is
imported only when :class:`CharmSpecificMachines` is first used.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import time
from typing import TYPE_CHECKING, Any, cast

import charm_
import charm_refresh

from . import _bases, _clock, _records, _state
from ._journal import Journal
from ._migrations import REFRESH, Migrations
from ._preview import Preview, ServicePreview
from .errors import ChangeFailed, MigrationError, SnapdError, SnapRefreshError
from .snapd import Snapd, validate_revision

if TYPE_CHECKING:
    import pathlib

    import ops

    from .snapd import Change, ServiceInfo, SnapInfo

__all__ = [
    'BEFORE_STATE_NAME',
    'HEALTH_STAGE',
    'JOURNAL_STAGE',
    'MIGRATIONS_STAGE',
    'STATUS_PREFIX',
    'CharmSpecificMachines',
]

logger = logging.getLogger(__name__)

JOURNAL_STAGE = 'snap-refresh'
"""The journal stage of :meth:`CharmSpecificMachines.refresh_snap`."""

MIGRATIONS_STAGE = 'migrations'
"""The journal stage around a run of refresh migrations (each migration has its own too)."""

HEALTH_STAGE = 'health'
"""The journal stage of the health gate in :meth:`CharmSpecificMachines.post_snap_refresh`."""

BEFORE_STATE_NAME = _records.REFRESH_RECORD_NAME
"""File name of a refresh's before-state record in the unit's state directory."""

_BEFORE_VERSION = 1

STATUS_PREFIX = 'Snap refresh: '
"""How every unit status set by :meth:`CharmSpecificMachines.post_snap_refresh` starts.

The library clears such a status, and only such a status, once the unit is healthy.
"""

_STATUS_MAX = 120  # `juju status` truncates longer messages


@dataclasses.dataclass(eq=False)
class CharmSpecificMachines(charm_refresh.CharmSpecificMachines):
    """charm-refresh's ``CharmSpecificMachines`` with ``refresh_snap`` implemented.

    A charm subclasses it, adds its own fields (such as ``_charm``) and writes
    ``is_compatible`` and ``run_pre_refresh_checks_after_1_unit_refreshed`` as
    charm-refresh requires. It may override the hooks :meth:`stop_workload`,
    :meth:`start_workload`, :meth:`workload_running`, :meth:`workload_healthy`
    and :meth:`unhealthy_message`; it calls :meth:`reconcile` on every event,
    after ``charm_refresh.Machines`` is built.

    The defaults stop every service of the snap with ``disable`` (so that
    snapd's refresh does not start them again), and enable and start them all
    again; the workload is healthy when every service of the snap is active.

    Attributes:
        snapd: The snapd client; keyword-only, by default one on
            ``$CHARM_UPGRADE_SNAPD_SOCKET`` or ``/run/snapd.socket``.
        journal: Where the refresh is journaled; keyword-only, by default the
            unit's journal.
        migrations: The charm's :class:`~charm_upgrade.Migrations`, whose
            refresh migrations run after each refresh; keyword-only, None for none.
        unhealthy_status: The unit status :meth:`post_snap_refresh` last asked
            for, or None when the unit is healthy. A charm that computes its
            status with ops' collect-status adds it there (a status set
            through ``status-set`` is replaced by collect-status).

    Example::

        @dataclasses.dataclass(eq=False)
        class MyAppRefresh(charm_upgrade.CharmSpecificMachines):
            _charm: ops.CharmBase

            @classmethod
            def is_compatible(cls, *, old_charm_version, new_charm_version,
                              old_workload_version, new_workload_version):
                return super().is_compatible(...)

            @staticmethod
            def run_pre_refresh_checks_after_1_unit_refreshed():
                pass
    """

    snapd: Snapd = dataclasses.field(default_factory=Snapd, kw_only=True, repr=False)
    journal: Journal = dataclasses.field(default_factory=Journal, kw_only=True, repr=False)
    migrations: Migrations | None = dataclasses.field(default=None, kw_only=True, repr=False)
    unhealthy_status: ops.StatusBase | None = dataclasses.field(
        default=None, init=False, repr=False
    )
    _retried_migration: bool = dataclasses.field(default=False, init=False, repr=False)

    # Hooks -----------------------------------------------------------------

    def stop_workload(self, *, snap_name: str) -> None:
        """Stop the workload gracefully before the snap is refreshed.

        The default stops every service of the snap through snapd with
        ``disable``, so that neither the refresh nor a reboot starts them, and
        waits for snapd's change.

        Args:
            snap_name: The workload snap.

        Raises:
            SnapdError: snapd could not stop the services.
        """
        self.snapd.wait_done(self.snapd.stop([snap_name], disable=True))

    def start_workload(self, *, snap_name: str) -> None:
        """Start the workload again; must be harmless when it is already running.

        The default restores the snap's services as the refresh's
        before-state recorded them, through snapd, and waits for snapd's
        changes: a service that was enabled is enabled and started, one that
        ran without being enabled is started, one that was disabled and
        stopped (an optional daemon the charm keeps off) stays so. A service
        the before-state does not know (new in this revision, or no
        before-state of this snap) is enabled and started.

        Args:
            snap_name: The workload snap.

        Raises:
            SnapdError: snapd could not start the services.
        """
        enable, start_only = self._services_to_start(snap_name)
        if enable:
            self.snapd.wait_done(self.snapd.start(enable, enable=True))
        if start_only:
            self.snapd.wait_done(self.snapd.start(start_only, enable=False))

    def workload_running(self) -> bool:
        """Whether the workload runs; :meth:`post_snap_refresh` starts it if not.

        The default: every service of ``charm_refresh.snap_name()`` that
        :meth:`start_workload` starts is active.

        Raises:
            SnapdError: snapd could not be asked, or the snap is not installed.
        """
        return not self._inactive_services()

    def workload_healthy(self) -> bool:
        """Whether this unit is healthy enough for the next unit to refresh.

        The default: every service of ``charm_refresh.snap_name()`` that
        :meth:`start_workload` starts is active (one the before-state
        recorded disabled and stopped is not expected to run). A charm
        overrides it with a real check (the unit answers, it rejoined its
        cluster) and may override :meth:`unhealthy_message` with it.

        Raises:
            SnapdError: snapd could not be asked, or the snap is not installed.
        """
        return not self._inactive_services()

    def unhealthy_message(self) -> str:
        """Say what is unhealthy, for the unit status; called when :meth:`workload_healthy` is not.

        The default names the snap's services that are not active.
        """
        snap = charm_refresh.snap_name()
        try:
            inactive = self._inactive_services()
        except SnapdError as e:
            return f'cannot read the services of {snap}: {e.kind}'
        if inactive:
            return f'{snap} services not active: {", ".join(inactive)}'
        return f'{self.workload_name} not healthy'

    # charm-refresh ---------------------------------------------------------

    def refresh_snap(
        self, *, snap_name: str, snap_revision: str, refresh: charm_refresh.Machines
    ) -> None:
        """Refresh the workload snap to ``snap_revision``, by charm-refresh's contract.

        charm-refresh calls this when this unit is next to refresh; see the
        module documentation for the steps. It ends with
        :meth:`post_snap_refresh`.

        Args:
            snap_name: The workload snap (``[snap].name`` in ``refresh_versions.toml``).
            snap_revision: The revision pinned for this machine's architecture.
            refresh: The ``charm_refresh.Machines`` being built; only its public
                API is used.

        Raises:
            ValueError: ``snap_revision`` is not a valid revision; nothing was touched.
            SnapRefreshError: the snap was not refreshed (it is not installed,
                snapd failed or could not be reached, the change failed or timed
                out); the underlying :class:`SnapdError` is the ``__cause__``.
                The workload runs again if the revision is unchanged; the new
                revision is recorded if it changed.
        """
        validate_revision(snap_revision)
        details: dict[str, Any] = {'snap': snap_name, 'revision_requested': snap_revision}
        self.journal.write(JOURNAL_STAGE, 'start', details=details)
        began = time.monotonic()
        try:
            self._refresh_snap(snap_name, snap_revision, refresh, details)
        except BaseException as e:
            self.journal.write(
                JOURNAL_STAGE,
                'failed',
                duration=time.monotonic() - began,
                error=f'{type(e).__name__}: {e}',
                details=details,
            )
            if not isinstance(e, MigrationError):
                raise
            # Not raised: the blocked status names the migration, where a
            # failed hook would say only "hook failed"; reconcile retries it.
            self._block_on_migration(e, refresh)
            return
        self.journal.write(
            JOURNAL_STAGE, 'ended', duration=time.monotonic() - began, details=details
        )
        self.post_snap_refresh(refresh)

    def post_snap_refresh(self, refresh: charm_refresh.Machines) -> None:
        """Start the workload if needed; let the next unit refresh only if this one is healthy.

        Docs step 25. When the unit is unhealthy (or the workload cannot be
        started), sets :attr:`unhealthy_status` and shows it as the unit
        status (``status-set``), unless charm-refresh shows a higher-priority
        unit status; nothing is raised, and :meth:`reconcile` tries again on
        the next event. When healthy, sets
        ``refresh.next_unit_allowed_to_refresh = True`` and clears a status
        this method set earlier.

        With migrations, a failed refresh migration is tried again first
        (the workload stays stopped until it succeeds), and applied
        migrations this code does not know keep the next unit waiting.

        Args:
            refresh: The unit's ``charm_refresh.Machines``.
        """
        snap = charm_refresh.snap_name()
        if not self._migrations_settled(snap, refresh):
            return
        status: charm_.Status | None = None
        try:
            if not self.workload_running():
                logger.info('Starting the workload of snap %r after its refresh', snap)
                self.start_workload(snap_name=snap)
        except SnapdError as e:
            logger.error('Cannot start the workload of snap %r after its refresh: %s', snap, e)
            status = charm_.BlockedStatus(_status_message(f'cannot start {snap}: {e.kind}'))
        if status is None:
            self.journal.write(HEALTH_STAGE, 'start', details={'snap': snap})
            began = time.monotonic()
            try:
                healthy = self.workload_healthy()
            except SnapdError as e:
                logger.warning('Cannot check the health of snap %r: %s', snap, e)
                healthy = False
            if healthy:
                self.journal.write(
                    HEALTH_STAGE,
                    'ended',
                    duration=time.monotonic() - began,
                    details={'snap': snap},
                )
                refresh.next_unit_allowed_to_refresh = True
                self.unhealthy_status = None
                self._clear_own_status()
                return
            message = self.unhealthy_message()
            self.journal.write(
                HEALTH_STAGE,
                'failed',
                duration=time.monotonic() - began,
                error=f'unhealthy: {message}',
                details={'snap': snap},
            )
            logger.warning('Not allowing the next unit to refresh: %s', message)
            status = charm_.WaitingStatus(_status_message(f'{message}; next unit waits'))
        self.unhealthy_status = _ops_status(status)
        if refresh.unit_status_higher_priority is not None:
            # charm-refresh's own unit status (a failed pre-refresh check, a
            # missed upgrade-charm event) must stay visible (its docs, step 27).
            return
        _set_unit_status(status)

    def reconcile(self, refresh: charm_refresh.Machines) -> None:
        """The every-event retry of docs step 25; call it in every event.

        While a refresh is in progress and this unit has not yet let the next
        one refresh, runs :meth:`post_snap_refresh`; otherwise lets the next
        unit refresh (charm-refresh needs the flag after an install too).

        Args:
            refresh: The unit's ``charm_refresh.Machines``.
        """
        if self.migrations is not None and self.migrations.install_revision_missing():
            try:
                self._add_install_revision(self.snapd.snap(charm_refresh.snap_name()).revision)
            except SnapdError as e:
                logger.warning('Cannot read the installed revision for the migrations: %s', e)
        if refresh.next_unit_allowed_to_refresh:
            return
        if refresh.in_progress:
            self.post_snap_refresh(refresh)
        else:
            refresh.next_unit_allowed_to_refresh = True

    # Implementation --------------------------------------------------------

    def _refresh_snap(
        self,
        snap_name: str,
        snap_revision: str,
        refresh: charm_refresh.Machines,
        details: dict[str, Any],
    ) -> None:
        snapd = self.snapd
        # 1. A change of this snap in flight (decision 10: this snap's only):
        # wait for it; snapd shows its new revision before it is ready.
        try:
            waited = snapd.wait_snap_idle(snap_name)
            info = snapd.snap(snap_name)
            revision_before = info.revision
        except SnapdError as e:
            raise _refresh_error(
                snap_name, None, snap_revision, None, e, details, 'nothing was touched'
            ) from e
        if waited:
            details['waited_changes'] = [f'{c.id} {c.kind} {c.status}' for c in waited]
        details['revision_before'] = revision_before
        self._add_install_revision(revision_before)
        if self.migrations is not None:
            # Refuse before anything is touched: unknown applied migrations,
            # or an undo without a down.
            self.migrations.check(REFRESH, target_revision=snap_revision)

        # 2. Already at the target: an earlier hook died after the refresh and
        # before recording it. A refresh to the installed revision would
        # restart the services, so record it and end like a success.
        if revision_before == snap_revision:
            refresh.update_snap_revision()
            details['revision_after'] = revision_before
            details['already_at_target'] = True
            logger.info('Snap %r is already at revision %s: recorded it', snap_name, snap_revision)
            if self._migration_work(snap_revision):
                # The earlier hook died before its migrations ran: run them
                # with the workload stopped; post_snap_refresh starts it.
                if self.workload_running():
                    self.stop_workload(snap_name=snap_name)
                self._migrate(self._data_revision(revision_before), snap_revision, details)
            self._complete_before_state()
            return

        # The before-state, before the first service is touched; a retried
        # refresh to the same target keeps the first record.
        try:
            details['before'] = self._record_before_state(info, snap_revision)
        except SnapdError as e:
            raise _refresh_error(
                snap_name, revision_before, snap_revision, None, e, details, 'nothing was touched'
            ) from e

        # 3. Stop, refresh, record, start.
        logger.info(
            'Refreshing snap %r from revision %s to %s', snap_name, revision_before, snap_revision
        )
        down = time.monotonic()
        try:
            self.stop_workload(snap_name=snap_name)
        except Exception as e:
            details['stop'] = time.monotonic() - down
            # Some services may be down already: bring them back, then report.
            started = self._start_after_failure(snap_name, details, down)
            if isinstance(e, SnapdError):
                raise _refresh_error(
                    snap_name,
                    revision_before,
                    snap_revision,
                    revision_before,
                    e,
                    details,
                    'the workload could not be stopped; '
                    + ('it was started again' if started else 'starting it again failed too'),
                ) from e
            raise
        stopped = time.monotonic()
        details['stop'] = stopped - down

        change_id: str | None = None
        change: Change | None = None
        failure: SnapdError
        try:
            change_id = snapd.refresh(snap_name, snap_revision)
            change = snapd.wait_change(change_id)
            if change.status == 'Done':
                # charm-refresh's contract: update_snap_revision() is the very
                # next statement once the snap is refreshed. If the hook died
                # in between, the unit databag would not name the revision now
                # installed and charm-refresh could let the next unit refresh
                # on a stale record. So: no snapd call, no logging (a log
                # handler may block), no workload start before it.
                refresh.update_snap_revision()
                refreshed = time.monotonic()
                details['refresh'] = refreshed - stopped
                details['change_id'] = change_id
                details['revision_after'] = snap_revision
                if self.migrations is not None:
                    # Before the workload starts; a failure leaves it stopped.
                    self._migrate(revision_before, snap_revision, details)
                    refreshed = time.monotonic()
                self._start_after_refresh(snap_name, details, down, refreshed)
                self._complete_before_state()
                logger.info(
                    'Refreshed snap %r to revision %s (change %s)',
                    snap_name,
                    snap_revision,
                    change_id,
                )
                return
            failure = ChangeFailed(
                f'snapd could not refresh snap {snap_name!r} to revision {snap_revision}: '
                f'change {change.id} ended {change.status}: {change.err or "no error text"}; '
                f'see `snap tasks {change.id}`',
                change_id=change.id,
                status=change.status,
                err=change.err,
            )
        except SnapdError as e:
            failure = e
        details['refresh'] = time.monotonic() - stopped
        change_id = change_id or failure.change_id
        details['change_id'] = change_id
        if change is not None:
            details['change_status'] = change.status

        # 4. Failure: never retry. Unchanged revision: start the workload again.
        # Changed revision: record it. Then raise for another event.
        logger.error('Refresh of snap %r failed: %s', snap_name, failure)
        revision_after = self._read_revision(snap_name)
        details['revision_after'] = revision_after
        if revision_after is not None and revision_after != revision_before:
            try:
                refresh.update_snap_revision()
                outcome = f'charm-refresh recorded revision {revision_after}'
            except Exception as e:
                logger.exception('Could not record revision %s of %r', revision_after, snap_name)
                outcome = f'recording revision {revision_after} failed too ({e})'
        else:
            # Unchanged, or unknown because snapd cannot be asked: a workload
            # left stopped would be worse than an attempt to start it.
            started = self._start_after_failure(snap_name, details, down)
            outcome = (
                'the workload was started again'
                if started
                else 'the workload could not be started again'
            )
        raise _refresh_error(
            snap_name,
            revision_before,
            snap_revision,
            revision_after,
            failure,
            details,
            outcome + '; charm-refresh calls refresh_snap again on the next event',
            change=change,
            change_id=change_id,
        ) from failure

    # Migrations and before-state ----------------------------------------

    def _add_install_revision(self, revision: str) -> None:
        # A fresh install recorded before the snap was there (the install
        # event) learns its revision from the first event that sees the snap,
        # which comes before any refresh: rollbacks then know what to undo.
        if self.migrations is not None and self.migrations.install_revision_missing():
            self.migrations.mark_installed(revision=revision)

    def _migration_work(self, target: str) -> bool:
        if self.migrations is None:
            return False
        return bool(self.migrations.describe(REFRESH, target_revision=target))

    def _data_revision(self, fallback: str) -> str:
        # The revision the data was last migrated at, when the hook that
        # refreshed died before its migrations ran.
        recorded = self.migrations.data_revision if self.migrations is not None else None
        return recorded or fallback

    def _migrate(self, old: str, new: str, details: dict[str, Any]) -> None:
        assert self.migrations is not None
        began = time.monotonic()
        steps = self.migrations.describe(REFRESH, target_revision=new)
        with self.journal.stage(MIGRATIONS_STAGE, kind=REFRESH, old=old, new=new, pending=steps):
            details['migrations'] = self.migrations.run(
                REFRESH, old=old, new=new, journal=self.journal
            )
        details['migrate'] = time.monotonic() - began

    def _migrations_settled(self, snap: str, refresh: charm_refresh.Machines) -> bool:
        # Whether post_snap_refresh may start the workload and check health:
        # no applied migration unknown to the code, no failed refresh
        # migration left (it is retried here, once per event).
        migrations = self.migrations
        if migrations is None:
            return True
        failure = migrations.failure
        try:
            if failure is not None and failure.kind == REFRESH:
                if self._retried_migration:
                    return False
                self._retried_migration = True
                revision = self.snapd.snap(snap).revision
                details: dict[str, Any] = {'retry_of': failure.id}
                self._migrate(str(failure.old or revision), revision, details)
            else:
                migrations.check(REFRESH)
        except MigrationError as e:
            self._block_on_migration(e, refresh)
            return False
        except SnapdError as e:
            logger.error('Cannot read the revision of snap %r: %s', snap, e)
            return False
        return True

    def _block_on_migration(self, error: MigrationError, refresh: charm_refresh.Machines) -> None:
        self._retried_migration = True  # once per hook: the refresh just tried it
        logger.error('Refresh held by a migration: %s', error)
        blocked = self.migrations.blocked_message() if self.migrations is not None else None
        text = blocked or f'migration {error.migration_id} failed'
        status = charm_.BlockedStatus(_status_message(f'{text}; next unit waits'))
        self.unhealthy_status = _ops_status(status)
        if refresh.unit_status_higher_priority is None:
            _set_unit_status(status)

    @property
    def before_state_path(self) -> pathlib.Path:
        """Where the before-state of the current or last refresh is recorded."""
        return _state.state_dir() / BEFORE_STATE_NAME

    def read_before_state(self) -> dict[str, Any] | None:
        """Return the before-state of the current or last refresh, if any.

        Keys: ``snap``, ``base``, ``revision``, ``channel``, ``target``,
        ``services`` (``snap.app`` -> ``enabled``, ``active``),
        ``recorded_at``, ``phase`` (``started`` or ``completed``).
        """
        record = _state.read_json(self.before_state_path)
        return record if isinstance(record, dict) else None  # pyright: ignore[reportUnknownVariableType]

    def _record_before_state(self, info: SnapInfo, target: str) -> dict[str, Any]:
        snap_name = info.name
        record = self.read_before_state()
        if (
            record is not None
            and record.get('phase') == 'started'
            and record.get('snap') == snap_name
            and record.get('target') == target
        ):
            return record  # a retry: the services may be half-stopped now
        services = {
            s.full_name: {'enabled': s.enabled, 'active': s.active}
            for s in self.snapd.services(snap_name)
        }
        record = {
            'v': _BEFORE_VERSION,
            'phase': 'started',
            'recorded_at': _clock.utc_now(),
            'snap': snap_name,
            'base': _bases.current_base(),
            'revision': info.revision,
            'channel': info.channel,
            'target': target,
            'services': services,
        }
        _state.write_json(self.before_state_path, record)
        return record

    def _complete_before_state(self) -> None:
        record = self.read_before_state()
        if record is not None and record.get('phase') != 'completed':
            record['phase'] = 'completed'
            record['completed_at'] = _clock.utc_now()
            _state.write_json(self.before_state_path, record)

    def preview(self, *, revision_to: str | None) -> Preview:
        """Say what a refresh to ``revision_to`` would do now; change nothing.

        Args:
            revision_to: The revision charm-refresh would install (its
                ``pinned_snap_revision``), or None if not known.

        Raises:
            SnapdError: snapd could not be asked, or the snap is not installed.
        """
        snap = charm_refresh.snap_name()
        info = self.snapd.snap(snap)
        services = self.snapd.services(snap)
        same = revision_to is None or revision_to == info.revision
        rows = tuple(
            ServicePreview(
                s.full_name,
                'enabled' if s.enabled else 'disabled',
                s.active,
                'none' if same else 'stop, disable, refresh, enable, start',
            )
            for s in services
        )
        steps: tuple[str, ...] = ()
        if self.migrations is not None:
            steps = tuple(self.migrations.describe(REFRESH, target_revision=revision_to))
        blocked: str | None = None
        if self.migrations is not None:
            blocked = self.migrations.blocked_message()
            try:
                if revision_to is not None:
                    self.migrations.check(REFRESH, target_revision=revision_to)
            except MigrationError as e:
                blocked = blocked or e.message
        if revision_to is None:
            summary, disruption = 'no target revision given: nothing to refresh', 'none'
        elif same:
            summary, disruption = f'{snap} is at revision {info.revision} already', 'none'
        else:
            summary = f'stop {snap}, refresh it to revision {revision_to}, ' + (
                'run the migrations, start it' if steps else 'start it'
            )
            disruption = f'every service of {snap} is down from the stop until the start'
            last = self._last_downtime()
            if last is not None:
                disruption += f'; the last refresh here was down {last:.1f} s'
        if blocked:
            summary = f'refused: {blocked}'
        return Preview(
            step='snap-refresh',
            summary=summary,
            services=rows,
            current_base=_bases.current_base(),
            revision_from=info.revision,
            revision_to=revision_to,
            pending_migrations=steps,
            disruption=disruption,
            before_state=self.read_before_state(),
        )

    def _last_downtime(self) -> float | None:
        for entry in reversed(self.journal.timeline()):
            if entry.stage == JOURNAL_STAGE and entry.result == 'ended':
                downtime = entry.details.get('downtime')
                if isinstance(downtime, (int, float)):
                    return float(downtime)
        return None

    def _start_after_refresh(
        self, snap_name: str, details: dict[str, Any], down: float, refreshed: float
    ) -> None:
        # A start that fails here is not a failed refresh: the revision is
        # recorded, and post_snap_refresh (now and on every event) tries again.
        try:
            self.start_workload(snap_name=snap_name)
        except SnapdError as e:
            logger.error('Cannot start the workload of snap %r: %s', snap_name, e)
            details['start_error'] = e.message
            return
        started = time.monotonic()
        details['start'] = started - refreshed
        details['downtime'] = started - down

    def _start_after_failure(self, snap_name: str, details: dict[str, Any], down: float) -> bool:
        begin = time.monotonic()
        try:
            self.start_workload(snap_name=snap_name)
        except Exception as e:
            logger.exception('Cannot start the workload of snap %r again', snap_name)
            details['start_error'] = f'{type(e).__name__}: {e}'
            return False
        started = time.monotonic()
        details['start'] = started - begin
        details['downtime'] = started - down
        return True

    def _read_revision(self, snap_name: str) -> str | None:
        try:
            info = self.snapd.find_snap(snap_name)
        except SnapdError as e:
            logger.error('Cannot read the revision of snap %r: %s', snap_name, e)
            return None
        return info.revision if info is not None else None

    def _inactive_services(self) -> list[str]:
        snap = charm_refresh.snap_name()
        services = self.snapd.services(snap)
        enable, start_only = _split_by_before_state(services, self._recorded_services(snap))
        expected = {*enable, *start_only}
        return [s.full_name for s in services if s.full_name in expected and not s.active]

    def _services_to_start(self, snap_name: str) -> tuple[list[str], list[str]]:
        recorded = self._recorded_services(snap_name)
        if recorded is None or all(s.get('enabled') for s in recorded.values()):
            # The usual case: the whole snap, with no request in the downtime.
            return [snap_name], []
        return _split_by_before_state(self.snapd.services(snap_name), recorded)

    def _recorded_services(self, snap_name: str) -> dict[str, dict[str, Any]] | None:
        """The before-state's ``snap.app`` -> ``enabled``, ``active``, if it is of this snap."""
        record = self.read_before_state()
        if record is None or record.get('snap') != snap_name:
            return None
        services = record.get('services')
        if not isinstance(services, dict):
            return None
        return {
            str(name): cast('dict[str, Any]', state)
            for name, state in cast('dict[object, object]', services).items()
            if isinstance(state, dict)
        }

    def _clear_own_status(self) -> None:
        try:
            current = charm_.unit_status
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
            logger.warning('Could not read the unit status: %s', e)
            return
        if current is not None and str(current).startswith(STATUS_PREFIX):
            _set_unit_status(charm_.ActiveStatus(''))


def _split_by_before_state(
    services: list[ServiceInfo], recorded: dict[str, dict[str, Any]] | None
) -> tuple[list[str], list[str]]:
    """Split the services into those to enable and start, and those only to start."""
    enable: list[str] = []
    start_only: list[str] = []
    for service in services:
        before = (recorded or {}).get(service.full_name)
        if before is None or before.get('enabled'):
            enable.append(service.full_name)
        elif before.get('active'):
            start_only.append(service.full_name)
    return enable, start_only


def _refresh_error(
    snap: str,
    revision_before: str | None,
    revision_requested: str,
    revision_after: str | None,
    cause: SnapdError,
    details: dict[str, Any],
    outcome: str,
    *,
    change: Change | None = None,
    change_id: str | None = None,
) -> SnapRefreshError:
    details['error_kind'] = cause.kind
    return SnapRefreshError(
        f'refresh of snap {snap!r} from revision {revision_before or "unknown"} to '
        f'{revision_requested} failed: {cause.message}; revision now '
        f'{revision_after or "unknown"}: {outcome}',
        snap=snap,
        revision_before=revision_before,
        revision_requested=revision_requested,
        revision_after=revision_after,
        change_id=change_id or cause.change_id,
        change_status=change.status if change is not None else None,
        change_error=(change.err or None) if change is not None else None,
    )


def _status_message(text: str) -> str:
    message = STATUS_PREFIX + text
    if len(message) > _STATUS_MAX:
        message = message[: _STATUS_MAX - 3] + '...'
    return message


def _ops_status(status: charm_.Status) -> ops.StatusBase:
    import ops

    if isinstance(status, charm_.BlockedStatus):
        return ops.BlockedStatus(str(status))
    return ops.WaitingStatus(str(status))


def _set_unit_status(status: charm_.Status) -> None:
    # charm-refresh sets its statuses with the status-set hook tool (charm-api),
    # outside ops; so does this library, since it has no charm object.
    try:
        charm_.unit_status = status
    except (OSError, subprocess.SubprocessError) as e:
        logger.warning('Could not set the unit status %r: %s', status, e)
