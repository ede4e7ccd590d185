# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The series-upgrade flow, free of ops and charms.reactive.

The flow is level-triggered, like the handlers charms.reactive documents: on
every call it looks at the flags (and, when they call for a bring-back, at its
record) and does what they call for, or nothing.

- *in progress*, the application *started* and not *disabled*: record the
  before-state, call ``before_take_down``, take the services down, set
  *disabled*;
- *disabled*, no longer *in progress*, and a record of this library's
  prepare: run the charm's ``migrate`` callback, then its pending series
  migrations (:mod:`charm_upgrade._migrations`), bring the services back,
  call ``after_bring_back``, clear *disabled*.

*disabled* belongs to the library: it is set only once the record is on
disk, with the record's token as its value where the flag store keeps
values, and a *disabled* flag that no prepare of this library explains (set
by something else, such as a charm's pause) brings nothing back and is left
alone.

Every step can be re-run after a failure at any point and converges. The
before-state (:class:`~charm_upgrade._records.SeriesRecord`) is written
atomically to the unit's state directory before the first service is touched,
and a retried prepare reuses it, so a half-stopped system is never recorded as
"before". The migration is recorded as done once it succeeds, so a retried
complete does not run it twice, and a complete that finds the record
completed (a hook that failed after it, another process) touches nothing. The
callbacks run again with the step they belong to when it is retried.

Each step holds the unit's state lock (:mod:`charm_upgrade._lock`) and reads
each record once: a second process waits for the first one's step, then sees
what it did.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _bases, _clock, _lock, _records, _series_preview, _state
from ._flags import APPLICATION_DISABLED, APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS
from ._journal import Journal
from ._migrations import SERIES, STATE_NAME
from ._records import SeriesRecord
from ._services import BringBackResult, Services, group_from_record
from .errors import MigrationError, ServiceError

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Sequence

    from ._flags import FlagStore
    from ._migrations import Migrations
    from ._preview import Preview

__all__ = [
    'RECORD_NAME',
    'Callback',
    'MigrateCallback',
    'SeriesUpgradeFlow',
    'Started',
    'Step',
    'as_service_groups',
]

logger = logging.getLogger(__name__)

RECORD_NAME = SeriesRecord.NAME
"""File name of the before-state record in the unit's state directory."""

MigrateCallback = Callable[[str, str], None]
"""A charm's migration: called as ``migrate(old_base, new_base)`` before the services return."""

Callback = Callable[[], None]
"""A charm's callback around the hold: ``before_take_down()``, ``after_bring_back()``."""

Started = str | Callable[[], bool] | None
"""Whether there is something to take down: a flag's name, a callable, or None (always)."""


class Step(enum.Enum):
    """What one run of the flow did."""

    NOTHING = 'nothing'
    """The flags called for nothing (any hook outside the upgrade, or a repeat)."""

    TOOK_DOWN = 'took-down'
    """The services were taken down and the *disabled* flag set."""

    BROUGHT_BACK = 'brought-back'
    """The migration ran, the services came back, the *disabled* flag was cleared."""


def as_service_groups(services: Services | Sequence[Services]) -> list[Services]:
    """Return ``services`` as a list of groups, checking it.

    Raises:
        ServiceError: no group, something that is not a group, or a group
            given twice.
    """
    groups: list[Services] = [services] if isinstance(services, Services) else list(services)
    if not groups:
        raise ServiceError('no services given: pass SystemdServices or SnapServices')
    for group in groups:
        if not isinstance(group, Services):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ServiceError(
                f'{group!r} is not a services group: wrap names in SystemdServices([...]) '
                'or SnapServices(snap)'
            )
    keys = [group.key for group in groups]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ServiceError(f'these services are given more than once: {duplicates}')
    return groups


class SeriesUpgradeFlow:
    """Decides and does the next step of a series upgrade from the flags.

    Adapters (:class:`charm_upgrade.SeriesUpgrade` for ops,
    :func:`charm_upgrade.reactive.register_series_upgrade_handlers`) build one
    and call :meth:`run` in every hook.

    Args:
        services: The groups of services, taken down in this order and
            brought back in reverse order.
        flags: Where the flags are read and set.
        started: Whether the application's services were started (there is
            something to take down): the name of a flag, a callable that
            returns a bool (asked only at prepare), or None to take down at
            every prepare whatever runs (what was stopped stays stopped).
        before_take_down: Called at prepare after the before-state is
            recorded and before any service is touched: drain the unit.
        after_bring_back: Called at complete after the services are back:
            uncordon, warm caches.
        migrate: Called as ``migrate(old_base, new_base)`` after the upgrade
            completes and before the services come back; ``new_base`` is the
            base the machine runs then. Not called, and no series migration
            runs, if the machine still runs ``old_base``. If it raises, the
            services stay down and it runs again at the next run, as a
            failed series migration does.
        migrations: The charm's migrations; the pending series ones run after
            ``migrate``, in id order, before the services come back. A
            failure raises :class:`~charm_upgrade.MigrationError` and the
            services stay down until a later run succeeds.
        disabled_flag: The flag that says the services are held down by this
            library; no other code may set it.
        journal: Where stages are journaled; by default the unit's journal.
        record_path: Where the before-state is recorded; by default
            ``series-upgrade.json`` in the unit's state directory.
    """

    def __init__(
        self,
        services: Services | Sequence[Services],
        *,
        flags: FlagStore,
        started: Started = APPLICATION_STARTED,
        before_take_down: Callback | None = None,
        after_bring_back: Callback | None = None,
        migrate: MigrateCallback | None = None,
        migrations: Migrations | None = None,
        disabled_flag: str = APPLICATION_DISABLED,
        journal: Journal | None = None,
        record_path: pathlib.Path | None = None,
    ):
        self.services = as_service_groups(services)
        self.flags = flags
        self.started = started
        self.before_take_down = before_take_down
        self.after_bring_back = after_bring_back
        self.migrate = migrate
        self.migrations = migrations
        self.disabled_flag = disabled_flag
        self.journal = journal or Journal()
        self._record_path = record_path
        self.last_result: BringBackResult | None = None
        """What the last bring-back of this object did not restore, if it ran."""

    @property
    def record_path(self) -> pathlib.Path:
        """Where the before-state record lives."""
        if self._record_path is None:
            self._record_path = _state.state_dir() / RECORD_NAME
        return self._record_path

    # Deciding -------------------------------------------------------------------------------

    def is_started(self) -> bool:
        """Whether the started condition holds (there is something to take down)."""
        if self.started is None:
            return True
        if isinstance(self.started, str):
            return self.flags.is_set(self.started)
        return bool(self.started())

    def services_held(self) -> bool:
        """Whether this library holds the services down now (its flag, its record)."""
        return self.flags.is_set(self.disabled_flag) and _is_prepared(self.read_record())

    def next_step(self) -> Step:
        """Return what :meth:`run` would do now, without doing it."""
        in_progress = self.flags.is_set(UPGRADE_SERIES_IN_PROGRESS)
        disabled = self.flags.is_set(self.disabled_flag)
        if in_progress and not disabled and self.is_started():
            return Step.TOOK_DOWN
        if disabled and not in_progress and _is_prepared(self.read_record()):
            return Step.BROUGHT_BACK
        return Step.NOTHING

    def run(self, *, target_base: str | None = None) -> Step:
        """Do the step the flags call for, and return it.

        Args:
            target_base: The base the machine is being upgraded to, if Juju
                said (``JUJU_TARGET_BASE``); recorded at prepare.

        Raises:
            ServiceError: a service is missing, cannot be held, or the record
                does not match.
            SystemdError: ``systemctl`` failed.
            SnapdError: snapd failed.
            MigrationError: ``migrate`` or a series migration failed or was
                refused; the services stay down and the next run tries again.
            StateFileError: a record is damaged, lost, or cannot be written.
            StateLockTimeout: another process kept the unit's state locked;
                nothing was done.
            Exception: whatever ``before_take_down`` or ``after_bring_back`` raised.
        """
        in_progress = self.flags.is_set(UPGRADE_SERIES_IN_PROGRESS)
        disabled = self.flags.is_set(self.disabled_flag)
        if in_progress and not disabled and self.is_started():
            with _lock.unit_lock(self.record_path.parent, step='series-prepare'):
                self.flags.set(self.disabled_flag, self._take_down(target_base))
            return Step.TOOK_DOWN
        if not disabled or in_progress:
            return Step.NOTHING
        # The record decides, read once under the lock: another process may
        # have completed the upgrade while this one waited for it.
        with _lock.unit_lock(self.record_path.parent, step='series-complete'):
            record = self.read_record()
            if _is_prepared(record):
                assert record is not None
                self._bring_back(record)
                self.flags.clear(self.disabled_flag)
                return Step.BROUGHT_BACK
            if self._is_own_completed_flag(record):
                self.flags.clear(self.disabled_flag)
        return Step.NOTHING

    def read_record(self) -> SeriesRecord | None:
        """Return the before-state record of the current or last upgrade, if any.

        Raises:
            StateFileError: the record exists and is not exactly its shape.
        """
        return _records.load(self.record_path, SeriesRecord)

    def migrate_failure(self) -> str | None:
        """What the ``migrate`` callback raised the last time, while that stands."""
        record = self.read_record()
        return record.migrate_error if record is not None else None

    # Preview --------------------------------------------------------------------------------

    def preview(self, *, target_base: str | None = None) -> Preview:
        """Say what the next step would do, with no side effect.

        While the services are down, that is what *complete* would do;
        otherwise what *prepare* would do if the operator ran it now.

        Args:
            target_base: The base the operator means to upgrade to, if known.

        Raises:
            ServiceError: a service does not exist or cannot be held.
            SystemdError: ``systemctl`` failed.
            SnapdError: snapd failed.
        """
        return _series_preview.series_preview(self, target_base=target_base)

    # Steps ----------------------------------------------------------------------------------

    def _take_down(self, target_base: str | None) -> str | None:
        with self.journal.stage('series-prepare', target_base=target_base) as stage:
            record = self.read_record()
            if record is None or record.phase == 'completed':
                record = self._new_record(target_base)
            elif target_base and not record.target_base:
                record.target_base = target_base
                _records.save(self.record_path, record)
            stage.details['before'] = record.services
            if self.before_take_down is not None:
                with self.journal.stage(
                    'before-take-down',
                    callback=_series_preview.callback_name(self.before_take_down),
                ):
                    self.before_take_down()
            for group in self.services:
                before = self._before_of(record, group)
                with self.journal.stage(
                    'services-down',
                    group=group.key,
                    services=group.names,
                    upgrade=_upgrade_label(record),
                ):
                    group.take_down(before)
            return record.token

    def _bring_back(self, record: SeriesRecord) -> None:
        self.last_result = BringBackResult()
        with self.journal.stage('series-complete') as stage:
            if not record.migrated:
                self._migrate(record, stage.details)
            listed = {group.key: group for group in self.services}
            # Only what the record says was taken down: in the listed order
            # reversed, then groups the charm no longer lists.
            groups = [g for g in reversed(self.services) if g.key in record.services]
            for key, state in record.services.items():
                if key not in listed:
                    group = group_from_record(state)
                    if group is None:
                        logger.warning('Cannot bring back %s: its record is not understood', key)
                        continue
                    groups.append(group)
            for group in groups:
                with self.journal.stage(
                    'services-up',
                    group=group.key,
                    services=group.names,
                    upgrade=_upgrade_label(record),
                    **({} if group.key in listed else {'unlisted': True}),
                ) as up:
                    result = group.bring_back(record.services[group.key]) or BringBackResult()
                    if result.skipped:
                        up.details['skipped'] = result.skipped
                    if result.renamed:
                        up.details['renamed'] = result.renamed
                self.last_result.skipped.update(result.skipped)
                self.last_result.renamed.update(result.renamed)
            if self.after_bring_back is not None:
                with self.journal.stage(
                    'after-bring-back',
                    callback=_series_preview.callback_name(self.after_bring_back),
                ):
                    self.after_bring_back()
            record.phase = 'completed'
            record.completed_at = _clock.utc_now()
            record.skipped = dict(self.last_result.skipped)
            _records.save(self.record_path, record)
            stage.details['restored'] = record.services
            if self.last_result.skipped:
                stage.details['skipped'] = self.last_result.skipped

    def _is_own_completed_flag(self, record: SeriesRecord | None) -> bool:
        # *disabled* set outside the upgrade with no prepared record: either
        # this library completed the upgrade and its clear of the flag did not
        # commit (the hook failed after it, or another process completed it
        # while this one waited), which the record's token in the flag shows;
        # or someone else set the flag, and it is theirs to clear.
        return (
            record is not None
            and record.phase == 'completed'
            and record.token is not None
            and record.token == self.flags.value(self.disabled_flag)
        )

    def _migrate(self, record: SeriesRecord, details: dict[str, Any]) -> None:
        """Run ``migrate`` and the series migrations to the base the machine runs; record it."""
        old_base = record.old_base or 'unknown'
        now_base = _bases.current_base()
        if now_base is not None and now_base == old_base:
            # Complete without an OS upgrade (it failed, or was never run):
            # there is nothing to migrate; the migrations stay pending for
            # the next series upgrade.
            logger.warning(
                'This machine still runs %s: the OS was not upgraded, so the migrations '
                'did not run; they run after the next series upgrade',
                now_base,
            )
            details['not_migrated'] = f'the machine still runs {now_base}'
            return
        target_base = record.target_base
        # The data goes to the base the machine runs, whatever was targeted.
        new_base = now_base or target_base or 'unknown'
        if target_base and now_base and now_base != target_base:
            logger.warning(
                'The upgrade targeted %s but this machine now runs %s: migrating to %s',
                target_base,
                now_base,
                now_base,
            )
        if self.migrate is not None:
            self._run_migrate(record, old_base, new_base)
        if self.migrations is not None:
            self._run_migrations(record.old_base, new_base)
        record.migrated = True
        record.migrations_record = self._migrations_path().exists()
        _records.save(self.record_path, record)

    def _run_migrate(self, record: SeriesRecord, old_base: str, new_base: str) -> None:
        assert self.migrate is not None
        try:
            with self.journal.stage('series-migrate', old_base=old_base, new_base=new_base):
                self.migrate(old_base, new_base)
        except Exception as e:
            # Held like a failed series migration: recorded, so the status
            # names it at every hook until a run succeeds.
            error = f'{type(e).__name__}: {e}'
            record.migrate_error = error
            _records.save(self.record_path, record)
            raise MigrationError(
                f'the series migration callback migrate failed ({error}); the services stay '
                'down, and it runs again at the next hook',
                migration_id='migrate',
            ) from e
        if record.migrate_error is not None:
            record.migrate_error = None
            _records.save(self.record_path, record)

    def _run_migrations(self, old_base: str | None, new_base: str) -> None:
        assert self.migrations is not None
        migrations = self.migrations.read_state()  # once for the step: passed along
        pending = [m.id for m in self.migrations.pending(SERIES, record=migrations)]
        with self.journal.stage(
            'migrations', kind=SERIES, old=old_base, new=new_base, pending=pending
        ) as stage:
            stage.details['ran'] = self.migrations.run(
                SERIES, old=old_base, new=new_base, journal=self.journal, record=migrations
            )

    def _migrations_path(self) -> pathlib.Path:
        if self.migrations is not None:
            return self.migrations.path
        return self.record_path.parent / STATE_NAME

    def pending_migrations(self) -> tuple[str, ...]:
        """What complete would run: the ``migrate`` callback, then the registry's series ones."""
        names = ['migrate'] if self.migrate is not None else []
        if self.migrations is not None:
            names += self.migrations.describe(SERIES)
        return tuple(names)

    # Record ---------------------------------------------------------------------------------

    def _new_record(self, target_base: str | None) -> SeriesRecord:
        # Read every group before touching any: a missing service, or one
        # that cannot be held, fails here, with nothing stopped and no record.
        states = {group.key: group.read_state() for group in self.services}
        record = SeriesRecord(
            phase='prepared',
            services=states,
            recorded_at=_clock.utc_now(),
            old_base=_bases.current_base(),
            target_base=target_base,
            migrations_record=self._migrations_path().exists(),
            token=secrets.token_hex(8),
        )
        _records.save(self.record_path, record)
        return record

    def _before_of(self, record: SeriesRecord, group: Services) -> dict[str, Any]:
        if group.key not in record.services:
            # The service list grew after the record was written (a retried
            # prepare after an upgrade-charm): record the new group now,
            # before touching it.
            record.services[group.key] = group.read_state()
            _records.save(self.record_path, record)
        return record.services[group.key]


def _upgrade_label(record: SeriesRecord) -> str:
    """Name the series upgrade a services stage belongs to, for the journal's rows."""
    return f'series upgrade {record.old_base or "?"} -> {record.target_base or "?"}'


def _is_prepared(record: SeriesRecord | None) -> bool:
    return record is not None and record.phase == 'prepared'
