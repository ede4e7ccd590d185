# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The snap-refresh flow, free of ops and charm-refresh, level-triggered from the unit's records.

The same model as the series flow: record the before-state, take the workload down,
transition (here, snapd's refresh change), run that kind's migrations, bring the
workload back as recorded, mark the record completed. Every step is decided from
the record in ``snap-refresh.json`` and from snapd, never from whether charm-refresh
calls ``refresh_snap`` again: its constructor re-records the installed revision at
every event, so once snapd has the new revision it never calls it again, and a
refresh that died half-way is finished by :meth:`RefreshFlow.converge`, which the
adapter runs at every event.

The rules that hold at every point:

- The revision is recorded (``update_snap_revision``) the moment snapd's change is
  ready, with nothing that can block in between.
- The workload is never started while a change of the snap is in flight, nor while a
  series upgrade holds it down. A change that outlives the time limit leaves the
  workload stopped with a status naming the change, and the next event waits again.
- Whatever fails after the stop, the workload is brought back to its before-state
  (when the revision is unchanged, on the old revision) before the error is raised.
- The refresh migrations run exactly once, with the workload stopped, between
  recording the revision and the start.
- Services the before-state does not know (new in the target revision) are left as
  snapd left them.

The flow talks to the outside world only through its ports: a :class:`Workload`
(stop, start, running, healthy), the revision recorder charm-refresh gives, the snapd
client and a clock. The adapter (:class:`~charm_upgrade.CharmSpecificMachines`) maps
charm-refresh's calls and the charm's hooks onto them.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from . import _bases, _clock, _lock, _records, _state, _systemd
from ._migrations import REFRESH
from ._records import RefreshRecord
from ._services import snap_unit
from ._status import StatusIntent
from .errors import (
    ChangeFailed,
    MigrationError,
    SnapdError,
    SnapdTimeout,
    SnapRefreshError,
    StateFileError,
)
from .snapd import validate_revision

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable

    from ._journal import Journal
    from ._migrations import Migrations
    from .snapd import Change, Snapd, SnapInfo

__all__ = [
    'FINISH_STAGE',
    'HEALTH_STAGE',
    'MIGRATIONS_STAGE',
    'RECORD_NAME',
    'REFRESH_STAGE',
    'STATUS_PREFIX',
    'Outcome',
    'RefreshFlow',
    'RefreshRecord',
    'Workload',
    'hold_refreshes',
]

logger = logging.getLogger(__name__)

RECORD_NAME = _records.REFRESH_RECORD_NAME
"""File name of the refresh's record (its before-state and phase) in the unit's state directory."""

REFRESH_STAGE = 'snap-refresh'
"""The journal stage of one refresh attempt (``refresh_snap``)."""

FINISH_STAGE = 'refresh-finish'
"""The journal stage of finishing a refresh from its record at a later event."""

MIGRATIONS_STAGE = 'migrations'
"""The journal stage around a run of refresh migrations (each migration has its own too)."""

HEALTH_STAGE = 'health'
"""The journal stage of the health gate before the next unit may refresh."""

STATUS_PREFIX = 'Snap refresh: '
"""How every unit status the refresh flow wants shown begins, for the operator."""


class Workload(Protocol):
    """How the flow stops, starts and checks the workload; the adapter implements it."""

    def stop(self, record: RefreshRecord) -> None:
        """Stop the workload so that the refresh does not start it again."""
        ...

    def start(self, record: RefreshRecord) -> None:
        """Bring the workload back as ``record`` says it was; harmless when it runs."""
        ...

    def healthy(self, record: RefreshRecord | None) -> bool:
        """Whether the unit is healthy enough for the next unit to refresh."""
        ...

    def unhealthy_message(self, record: RefreshRecord | None) -> str:
        """Say what is unhealthy, for the status."""
        ...


class Outcome(enum.Enum):
    """What :meth:`RefreshFlow.converge` found or did."""

    NOTHING = 'nothing'
    """No unfinished refresh."""

    FINISHED = 'finished'
    """An unfinished refresh was finished: the workload is back as recorded."""

    WAITING = 'waiting'
    """A change of the snap is still in flight, or a series upgrade holds the workload."""

    HELD = 'held'
    """A migration or a start failed, or snapd could not be asked: tried again next event."""


class _InFlight(Exception):  # noqa: N818 (a state, not an error)
    """A change of the snap outlived the time limit; the next event finishes the refresh."""


@dataclasses.dataclass
class _Attempt:
    """What one refresh attempt learned, for the journal and the error."""

    details: dict[str, Any]
    down: float | None = None


class RefreshFlow:
    """Refreshes a snap by charm-refresh's contract and finishes what a dead hook left.

    One is built per event by the adapter; it keeps what it learns during the event
    (the record, the status it wants shown) and nothing across events but files.

    Args:
        snapd: The snapd client.
        workload: How to stop, start and check the workload.
        journal: Where each stage is journaled.
        migrations: The charm's migrations, or None; refresh migrations run after the snap change.
        change_timeout: Seconds one wait for a change of the snap may take in one event.
        keep_held: Hold the snap's automatic refreshes after each refresh (snapd 2.58 or
            later), so that snapd cannot move the revision behind charm-refresh.
        hold_units: Hold the snap's service units with the library's systemd drop-in from
            the stop until the start (the default). False leaves the take-down to the
            workload alone, as before the drop-in: snapd's stop with ``disable`` and start
            with ``enable``, two more snapd changes in the downtime (kept to measure
            against, and for a snapd that would bypass the drop-in).
        record_path: The record's path; by default ``snap-refresh.json`` in the state directory.
        clock: Monotonic seconds, for durations and the health wait.
        sleep: How to wait, for the health wait.
    """

    def __init__(
        self,
        *,
        snapd: Snapd,
        workload: Workload,
        journal: Journal,
        migrations: Migrations | None = None,
        change_timeout: float | None = None,
        keep_held: bool = False,
        hold_units: bool = True,
        record_path: pathlib.Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.snapd = snapd
        self.workload = workload
        self.journal = journal
        self.migrations = migrations
        self.change_timeout = snapd.change_timeout if change_timeout is None else change_timeout
        self.keep_held = keep_held
        self.hold_units = hold_units
        self._record_path = record_path
        self._clock = clock
        self._sleep = sleep
        self._record: RefreshRecord | None = None
        self._record_read = False
        self._intent: StatusIntent | None = None
        # When this event's start of the workload returned: the end of the downtime.
        self._started_at: float | None = None
        # A wait for a change that ran out of time is not repeated in the same event.
        self._gave_up_on: str | None = None
        # A refresh of this unit finished in this event: the health gate checks it
        # even when charm-refresh says the application's refresh is over.
        self._finished_now = False

    # Records ---------------------------------------------------------------

    @property
    def record_path(self) -> pathlib.Path:
        """Where the record lives."""
        if self._record_path is None:
            self._record_path = _state.state_dir() / RECORD_NAME
        return self._record_path

    @property
    def record(self) -> RefreshRecord | None:
        """The record of the current or last refresh, read once per flow.

        Raises:
            StateFileError: the record exists and is not a refresh record.
        """
        if not self._record_read:
            self._record = _records.load(self.record_path, RefreshRecord)
            self._record_read = True
        return self._record

    def _write(self, record: RefreshRecord) -> None:
        _records.save(self.record_path, record)
        self._record = record
        self._record_read = True

    @property
    def held(self) -> bool:
        """Whether a refresh holds the workload down: its record is not completed."""
        record = self.record
        return record is not None and not record.finished

    @property
    def intent(self) -> StatusIntent | None:
        """The unit status the flow wants shown after what it did in this event, if any."""
        return self._intent

    # The refresh -----------------------------------------------------------

    def refresh(self, snap: str, target: str, record_revision: Callable[[], None]) -> None:
        """Refresh ``snap`` to ``target`` once, by charm-refresh's contract.

        Waits (bounded) for a change of the snap already in flight; finishes an
        unfinished earlier refresh to another target; records the before-state;
        stops the workload; asks snapd to refresh; calls ``record_revision`` the moment
        the change is ready; then runs the migrations and brings the workload back.

        Args:
            snap: The snap, as charm-refresh names it.
            target: The revision to refresh to.
            record_revision: charm-refresh's ``update_snap_revision``.

        Raises:
            ValueError: ``target`` is not a valid revision; nothing was touched.
            SnapRefreshError: the snap was not refreshed to ``target``. Nothing was
                touched, or the workload was brought back to its before-state, or (when
                snapd could not be asked) it stays stopped for the next event to finish.
                Never retried here: charm-refresh calls again at a later event.
        """
        validate_revision(target)
        # One step at a time on this unit: an action or `juju exec` must not refresh,
        # or finish a refresh, beside a hook.
        with _lock.unit_lock(self.record_path.parent, step=f'refresh of snap {snap}'):
            self._attempt(snap, target, record_revision)

    def _attempt(self, snap: str, target: str, record_revision: Callable[[], None]) -> None:
        attempt = _Attempt({'snap': snap, 'revision_requested': target})
        self.journal.write(REFRESH_STAGE, 'start', details=attempt.details)
        began = self._clock()
        try:
            self._refresh(snap, target, record_revision, attempt)
        except _InFlight as e:
            # Not a failure: the change goes on in snapd and the next event finishes
            # it. The status says which change; nothing is raised into the hook.
            self.journal.write(
                REFRESH_STAGE,
                'failed',
                duration=self._clock() - began,
                error=str(e),
                details=attempt.details,
            )
            return
        except BaseException as e:
            if attempt.down is not None:
                attempt.details['downtime_so_far'] = self._clock() - attempt.down
            self.journal.write(
                REFRESH_STAGE,
                'failed',
                duration=self._clock() - began,
                error=f'{type(e).__name__}: {e}',
                details=attempt.details,
            )
            raise
        self.journal.write(
            REFRESH_STAGE, 'ended', duration=self._clock() - began, details=attempt.details
        )

    def _refresh(
        self,
        snap: str,
        target: str,
        record_revision: Callable[[], None],
        attempt: _Attempt,
    ) -> None:
        details = attempt.details
        # A change of this snap in flight (a hook killed earlier, an auto-refresh):
        # snapd shows its new revision before it is ready, so wait for it first.
        info = self._settled_snap(snap, target, details)
        details['revision_before'] = info.revision

        record = self.record
        finished_earlier = False
        if record is not None and not record.finished:
            if (
                record.snap == snap
                and record.target == target
                and record.revision == info.revision
            ):
                # A retry of an attempt that died before snapd changed anything:
                # keep the first before-state (the services may be half-stopped now).
                details['retry_of'] = record.recorded_at
            else:
                # An earlier refresh is unfinished (its hook died; or a rollback to
                # another target came since): finish it from its record first. If
                # it cannot finish now, its status says why and this one waits.
                logger.info('Finishing the refresh of snap %r to %s first', snap, record.target)
                if self.converge(record_revision) is not Outcome.FINISHED:
                    details['waits_for'] = record.target
                    return
                finished_earlier = True
                record = None
        if info.revision == target:
            # Only reachable when charm-refresh's record lagged behind snapd (the
            # refresh finished above recorded it already). Never refresh again: a
            # refresh to the installed revision restarts the services.
            if not finished_earlier:
                record_revision()
            details['already_at_target'] = True
            return
        if self.migrations is not None:
            try:
                # Refuse before anything is touched: unknown applied migrations, or
                # an undo without a down.
                self.migrations.check(REFRESH, target_revision=target)
            except MigrationError as e:
                self._intent = _blocked(f'{_hold_text(self.migrations, e)}; next unit waits')
                details['refused'] = e.message
                logger.error('Refresh of snap %r refused: %s', snap, e)
                return
        if record is None or record.finished:
            record = self._new_record(snap, info, target)
        details['before'] = record.services

        logger.info('Refreshing snap %r from revision %s to %s', snap, info.revision, target)
        if record.held_units:
            # Hold first: a hold keeps units from starting, not from running, so its
            # daemon-reload costs no downtime. snapd's refresh, which starts the
            # services at its end, then finds them held until the revision is recorded.
            began = self._clock()
            try:
                _systemd.hold(record.held_units, releasable=True)
            except Exception as e:
                raise self._after_failure(e, record, record_revision, attempt, None) from e
            details['hold'] = self._clock() - began
        attempt.down = down = self._clock()
        try:
            self.workload.stop(record)
            if record.held_units:
                # After the charm's own (perhaps graceful) stop: whatever still runs.
                _systemd.systemctl('stop', '--', *record.held_units)
        except Exception as e:
            details['stop'] = self._clock() - down
            raise self._after_failure(e, record, record_revision, attempt, None) from e
        stopped = self._clock()
        details['stop'] = stopped - down

        change: Change | None = None
        try:
            change_id = self.snapd.refresh(snap, target)
            details['change_id'] = change_id
            change = self.snapd.wait_change(change_id, timeout=self.change_timeout)
        except SnapdTimeout as e:
            # The change goes on in snapd: starting the workload now would race it.
            details['refresh'] = self._clock() - stopped
            raise self._in_flight(snap, e) from e
        except Exception as e:
            details['refresh'] = self._clock() - stopped
            raise self._after_failure(e, record, record_revision, attempt, change) from e
        if change.status == 'Done':
            # charm-refresh's contract: record the revision as the very next
            # statement once the snap is refreshed; nothing that can block first.
            record_revision()
            refreshed = self._clock()
            details['refresh'] = refreshed - stopped
            details['revision_after'] = target
            record.phase = 'refreshed'
            record.revision_after = target
            record.change_id = change.id
            self._write(record)
            if self._bring_back(record, details) and self._started_at is not None:
                details['downtime'] = self._started_at - down
            logger.info('Refreshed snap %r to revision %s (change %s)', snap, target, change.id)
            return
        details['refresh'] = self._clock() - stopped
        details['change_status'] = change.status
        failure = ChangeFailed(
            f'snapd could not refresh snap {snap!r} to revision {target}: change {change.id} '
            f'ended {change.status}: {change.err or "no error text"}; see '
            f'`snap tasks {change.id}`',
            change_id=change.id,
            status=change.status,
            err=change.err,
        )
        raise self._after_failure(failure, record, record_revision, attempt, change) from failure

    def _settled_snap(self, snap: str, target: str, details: dict[str, Any]) -> SnapInfo:
        """Wait for the snap's changes in flight, then read it; nothing is touched."""
        try:
            waited = self.snapd.wait_snap_idle(snap, timeout=self.change_timeout)
            info = self.snapd.find_snap(snap)
        except SnapdTimeout as e:
            raise self._in_flight(snap, e) from e
        except SnapdError as e:
            raise SnapRefreshError(
                f'refresh of snap {snap!r} to revision {target} did not start: {e.message}; '
                'nothing was touched, charm-refresh calls refresh_snap again at the next event',
                snap=snap,
                revision_before=None,
                revision_requested=target,
                revision_after=None,
                change_id=e.change_id,
            ) from e
        if waited:
            details['waited_changes'] = [f'{c.id} {c.kind} {c.status}' for c in waited]
        if info is None:
            raise SnapRefreshError(
                f'snap {snap!r} is not installed, so it cannot be refreshed to revision '
                f'{target}; install it first (CharmSpecificMachines.install_snap)',
                snap=snap,
                revision_before=None,
                revision_requested=target,
                revision_after=None,
            )
        return info

    def _in_flight(self, snap: str, timeout: SnapdTimeout) -> _InFlight:
        self._gave_up_on = timeout.change_id
        self._intent = _still_in_flight(snap, timeout.change_id, self.change_timeout)
        logger.error('%s', timeout)
        return _InFlight(self._intent.message)

    def _new_record(self, snap: str, info: SnapInfo, target: str) -> RefreshRecord:
        services = {
            s.full_name: {'enabled': s.enabled, 'active': s.active}
            for s in self.snapd.services(snap)
        }
        record = RefreshRecord(
            snap=snap,
            revision=info.revision,
            target=target,
            channel=info.channel,
            base=_bases.current_base(),
            services=services,
            phase='started',
            recorded_at=_clock.utc_now(),
            migrations_record=self.migrations is not None and self.migrations.path.exists(),
            # Known before the stop, so that whatever dies after it finds the hold.
            held_units=[snap_unit(name) for name in services] if self.hold_units else [],
        )
        self._write(record)
        return record

    def _after_failure(
        self,
        error: Exception,
        record: RefreshRecord,
        record_revision: Callable[[], None],
        attempt: _Attempt,
        change: Change | None,
    ) -> SnapRefreshError:
        """After a failure past the stop: converge from the record, then say what happened."""
        details = attempt.details
        logger.error('Refresh of snap %r failed: %s', record.snap, error)
        outcome = self.converge(record_revision)
        details['converged'] = outcome.value
        record = self.record or record  # converge read it afresh under the lock
        revision_after = record.revision_after
        if outcome is Outcome.FINISHED:
            revision_after = revision_after or record.revision
            if attempt.down is not None:
                details['downtime'] = (self._started_at or self._clock()) - attempt.down
        return self._refresh_error(error, record, record.revision, revision_after, details, change)

    def _refresh_error(
        self,
        error: Exception,
        record: RefreshRecord,
        revision_before: str,
        revision_after: str | None,
        details: dict[str, Any],
        change: Change | None = None,
    ) -> SnapRefreshError:
        kind = error.kind if isinstance(error, SnapdError) else type(error).__name__
        details['error_kind'] = kind
        details['revision_after'] = revision_after
        if record.finished:
            now = (
                f'revision {revision_after} is installed and recorded, the workload was brought '
                'back as it was before'
            )
        elif self._intent is not None:
            now = f'the workload stays stopped: {self._intent.message}'
        else:
            now = 'the workload stays stopped until the next event finishes the refresh'
        message = error.message if isinstance(error, SnapdError) else f'{kind}: {error}'
        return SnapRefreshError(
            f'refresh of snap {record.snap!r} from revision {revision_before} to {record.target} '
            f'failed: {message}; {now}. charm-refresh calls refresh_snap again at a later event',
            snap=record.snap,
            revision_before=revision_before,
            revision_requested=record.target,
            revision_after=revision_after,
            change_id=(change.id if change else None)
            or (error.change_id if isinstance(error, SnapdError) else None),
            change_status=change.status if change else None,
            change_error=(change.err or None) if change else None,
        )

    # Finishing from the record ---------------------------------------------

    def converge(self, record_revision: Callable[[], None]) -> Outcome:
        """Finish the unfinished refresh the record describes, if any.

        Waits (bounded) for a change of the snap in flight, records the installed
        revision, runs the refresh migrations if the revision changed, brings the
        workload back as recorded and marks the record completed. Whatever stops it
        (a change still in flight, a failing migration or start, snapd unreachable,
        a series upgrade holding the workload) leaves the record as it is and a
        status that says why: the next event tries again. Raises nothing but for a
        damaged record.

        Args:
            record_revision: charm-refresh's ``update_snap_revision``.

        Raises:
            StateFileError: the record exists and is not a refresh record.
        """
        record = self.record
        if record is None or record.finished:
            return Outcome.NOTHING  # the usual case: one read, no lock
        with _lock.unit_lock(
            self.record_path.parent, step=f'finish of the refresh of {record.snap}'
        ):
            # Another process may have finished it while this one waited for the lock.
            self._record_read = False
            record = self.record
            if record is None or record.finished:
                return Outcome.NOTHING
            details: dict[str, Any] = {'snap': record.snap, 'phase': record.phase}
            with self.journal.stage(FINISH_STAGE, **details) as stage:
                outcome = self._converge(record, record_revision, stage.details)
                stage.details['outcome'] = outcome.value
        return outcome

    def _converge(
        self, record: RefreshRecord, record_revision: Callable[[], None], details: dict[str, Any]
    ) -> Outcome:
        snap = record.snap
        try:
            if self._gave_up_on is not None:
                in_flight = self.snapd.changes_in_progress(snap)
                if in_flight:
                    self._intent = _still_in_flight(snap, in_flight[0].id, self.change_timeout)
                    return Outcome.WAITING
            else:
                self.snapd.wait_snap_idle(snap, timeout=self.change_timeout)
            info = self.snapd.find_snap(snap)
        except SnapdTimeout as e:
            self._gave_up_on = e.change_id
            self._intent = _still_in_flight(snap, e.change_id, self.change_timeout)
            details['error'] = e.message
            return Outcome.WAITING
        except SnapdError as e:
            self._intent = _waiting(f'Cannot finish the refresh of {snap}: {e.message}')
            details['error'] = e.message
            return Outcome.HELD
        if info is None:
            self._intent = _blocked(
                f'Snap {snap} was removed during its refresh; install it again, or remove '
                f'{self.record_path} if it is gone for good'
            )
            return Outcome.HELD
        try:
            record_revision()
        except Exception as e:
            # charm-refresh re-records the revision at every event itself: not fatal.
            logger.warning('Could not record revision %s of %r: %s', info.revision, snap, e)
        if info.revision != record.revision and record.phase == 'started':
            record.phase = 'refreshed'
            record.revision_after = info.revision
            self._write(record)
        details['revision'] = info.revision
        return Outcome.FINISHED if self._bring_back(record, details) else Outcome.HELD

    def _bring_back(self, record: RefreshRecord, details: dict[str, Any]) -> bool:
        """Migrate if the revision changed, start as recorded, complete; False if held."""
        new = record.revision_after or record.revision
        if self.migrations is not None and new != record.revision:
            old = self.migrations.data_revision or record.revision
            began = self._clock()
            steps = self.migrations.describe(REFRESH, target_revision=new)
            try:
                with self.journal.stage(
                    MIGRATIONS_STAGE, kind=REFRESH, old=old, new=new, pending=steps
                ) as stage:
                    stage.details['ran'] = self.migrations.run(
                        REFRESH, old=old, new=new, journal=self.journal
                    )
            except MigrationError as e:
                self._intent = _blocked(f'{_hold_text(self.migrations, e)}; next unit waits')
                details['migration_error'] = e.message
                return False
            details['migrate'] = self._clock() - began
        if _series_holds(self.record_path.parent):
            # The workload is down for the series upgrade, so the migrations ran
            # above; its complete brings the services back, and the next converge
            # (the series adapter asks for one right after) finishes this record.
            self._intent = None
            details['held_by'] = 'series upgrade'
            return False
        began = self._clock()
        try:
            if record.held_units and not _systemd.let_start(record.held_units):
                # A hold that cannot be opened without a reload (written by a series
                # upgrade, or by hand): release it now, before the start.
                _systemd.release(record.held_units)
            details['release'] = self._clock() - began
            self.workload.start(record)
            self._started_at = self._clock()
            details['start'] = self._started_at - began
            if record.held_units:
                # The drop-ins go now, and their daemon-reload is no downtime.
                _systemd.release(record.held_units)
        except Exception as e:
            logger.exception('Cannot start the workload of snap %r', record.snap)
            details['start_error'] = f'{type(e).__name__}: {e}'
            self._intent = _blocked(f'Cannot start {record.snap}: {_message_of(e)}')
            return False
        record.phase = 'completed'
        record.outcome = 'refreshed' if new != record.revision else 'unchanged'
        record.completed_at = _clock.utc_now()
        self._write(record)
        self._intent = None
        self._finished_now = True
        if self.keep_held:
            details['held'] = hold_refreshes(self.snapd, record.snap)
        return True

    # The health gate -------------------------------------------------------

    def gate(
        self,
        *,
        in_progress: bool,
        allowed: bool,
        allow: Callable[[], None],
        before_next_unit: Callable[[], str | None],
        health_wait: float = 0.0,
        health_poll: float = 1.0,
    ) -> bool:
        """Let the next unit refresh once this one is healthy; return whether it may.

        Called after :meth:`converge` at every event. Nothing happens while a refresh
        of this unit is unfinished, or once the next unit is allowed. While a refresh
        of the application is in progress, and in the event a refresh of this unit
        finished, the workload must be healthy (waiting up to
        ``health_wait`` seconds for it in this event); then, in progress or not,
        ``before_next_unit`` may hold the next unit with a message; then ``allow``.

        Args:
            in_progress: charm-refresh's ``in_progress``.
            allowed: charm-refresh's ``next_unit_allowed_to_refresh``.
            allow: Sets ``next_unit_allowed_to_refresh = True``.
            before_next_unit: The charm's step before the next unit; a message holds it.
            health_wait: Seconds to wait in this event for the workload to become healthy.
            health_poll: Seconds between two health checks in that wait.
        """
        if allowed or self.held:
            return allowed
        record = self.record
        if in_progress or self._finished_now:
            self.journal.write(HEALTH_STAGE, 'start', details={'wait': health_wait})
            began = self._clock()
            healthy = self._wait_healthy(record, health_wait, health_poll)
            if not healthy:
                message = self._unhealthy_message(record)
                self.journal.write(
                    HEALTH_STAGE,
                    'failed',
                    duration=self._clock() - began,
                    error=f'unhealthy: {message}',
                )
                logger.warning('Not allowing the next unit to refresh: %s', message)
                self._intent = _waiting(f'{message}; next unit waits')
                return False
            self.journal.write(HEALTH_STAGE, 'ended', duration=self._clock() - began)
        hold = before_next_unit()
        if hold:
            logger.info('The charm holds the next unit: %s', hold)
            self._intent = _waiting(f'{hold}; next unit waits')
            return False
        allow()
        self._intent = None
        return True

    def _wait_healthy(self, record: RefreshRecord | None, wait: float, poll: float) -> bool:
        deadline = self._clock() + wait
        while True:
            try:
                if self.workload.healthy(record):
                    return True
            except SnapdError as e:
                logger.warning('Cannot check the health of the workload: %s', e)
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._sleep(min(poll, remaining))

    def _unhealthy_message(self, record: RefreshRecord | None) -> str:
        try:
            return self.workload.unhealthy_message(record)
        except Exception as e:
            return f'health unknown ({_message_of(e)})'


def _series_holds(state_dir: pathlib.Path) -> bool:
    try:
        record = _records.load(state_dir / _records.SeriesRecord.NAME, _records.SeriesRecord)
    except StateFileError:
        return True  # the series flow reports its damaged record; hold meanwhile
    return record is not None and record.phase == 'prepared'


def hold_refreshes(snapd: Snapd, snap: str) -> bool:
    """Hold snapd's automatic refreshes of ``snap``, unless they are held; return whether held.

    Not a failure when snapd cannot (before 2.58, or while it cannot be asked): the
    snap stays as it is, with a warning, and the next install or refresh tries again.
    """
    try:
        info = snapd.find_snap(snap)
        if info is None:
            return False
        if not info.held:
            snapd.wait_done(snapd.hold(snap))
    except SnapdError as e:
        logger.warning(
            'Cannot hold the automatic refreshes of snap %r (snapd 2.58 or later holds them): %s',
            snap,
            e,
        )
        return False
    return True


def _hold_text(migrations: Migrations, error: MigrationError) -> str:
    # The record's reason first (a failure, unknown applied ids); else the refusal's own
    # words, e.g. a migration without a down: nothing failed then.
    return migrations.blocked_message() or error.message


def _message_of(error: Exception) -> str:
    message = getattr(error, 'message', None)
    return message if isinstance(message, str) and message else str(error) or type(error).__name__


def _still_in_flight(snap: str, change_id: str | None, timeout: float) -> StatusIntent:
    change = f'change {change_id}' if change_id else 'a change'
    return _waiting(
        f'snapd {change} of {snap} still in flight after {timeout:g} s; {snap} stays stopped '
        f'until it ends (`snap tasks {change_id or "--last=refresh"}`)'
    )


def _blocked(message: str) -> StatusIntent:
    return StatusIntent('blocked', STATUS_PREFIX + message, 'refresh')


def _waiting(message: str) -> StatusIntent:
    return StatusIntent('waiting', STATUS_PREFIX + message, 'refresh')
