# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The series-upgrade flow, free of ops and charms.reactive.

The flow is level-triggered, like the handlers charms.reactive documents: on
every call it looks at three flags and does what they call for, or nothing.

- *started*, *in progress* and not *disabled*: record the before-state, take
  the services down, set *disabled*;
- *disabled* and no longer *in progress*: run the charm's ``migrate``
  callback, then its pending series migrations (:mod:`charm_upgrade._migrations`),
  bring the services back, clear *disabled*.

Every step can be re-run after a failure at any point and converges. The
before-state (:class:`~charm_upgrade._records.SeriesRecord`) is written
atomically to the unit's state directory before the first service is touched,
and a retried prepare reuses it, so a half-stopped system is never recorded as
"before". The migration is recorded as done once it succeeds, so a retried
complete does not run it twice, and a complete that finds the record
completed (a hook that failed after it, another process) touches nothing.

Each step holds the unit's state lock (:mod:`charm_upgrade._lock`) and reads
each record once: a second process waits for the first one's step, then sees
what it did.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _bases, _clock, _lock, _records, _state
from ._flags import APPLICATION_DISABLED, APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS
from ._journal import Journal
from ._migrations import SERIES, STATE_NAME
from ._preview import Preview, ServicePreview
from ._records import SeriesRecord
from ._services import Services, group_from_record
from .errors import ServiceError

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Sequence

    from ._flags import FlagStore
    from ._migrations import Migrations

__all__ = [
    'RECORD_NAME',
    'MigrateCallback',
    'SeriesUpgradeFlow',
    'Step',
    'as_service_groups',
    'status_message',
]

logger = logging.getLogger(__name__)

RECORD_NAME = SeriesRecord.NAME
"""File name of the before-state record in the unit's state directory."""

# How the blocked status of a series upgrade held by a migration ends, in both adapters.
MIGRATION_HOLD_SUFFIX = '; services stay down'

MigrateCallback = Callable[[str, str], None]
"""A charm's migration: called as ``migrate(old_base, new_base)`` before the services return."""


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
    per hook and call :meth:`run`.

    Args:
        services: The groups of services, taken down in this order and
            brought back in reverse order.
        flags: Where the flags are read and set.
        migrate: Called as ``migrate(old_base, new_base)`` after the upgrade
            completes and before the services come back; ``new_base`` is the
            base the machine runs then. Not called, and no series migration
            runs, if the machine still runs ``old_base``.
        migrations: The charm's migrations; the pending series ones run after
            ``migrate``, in id order, before the services come back. A
            failure raises :class:`~charm_upgrade.MigrationError` and the
            services stay down until a later run succeeds.
        started_flag: The flag that says the application's services were started.
        disabled_flag: The flag that says the services are held down.
        journal: Where stages are journaled; by default the unit's journal.
        record_path: Where the before-state is recorded; by default
            ``series-upgrade.json`` in the unit's state directory.
    """

    def __init__(
        self,
        services: Services | Sequence[Services],
        *,
        flags: FlagStore,
        migrate: Callable[[str, str], None] | None = None,
        migrations: Migrations | None = None,
        started_flag: str = APPLICATION_STARTED,
        disabled_flag: str = APPLICATION_DISABLED,
        journal: Journal | None = None,
        record_path: pathlib.Path | None = None,
    ):
        self.services = as_service_groups(services)
        self.flags = flags
        self.migrate = migrate
        self.migrations = migrations
        self.started_flag = started_flag
        self.disabled_flag = disabled_flag
        self.journal = journal or Journal()
        self._record_path = record_path

    @property
    def record_path(self) -> pathlib.Path:
        """Where the before-state record lives."""
        if self._record_path is None:
            self._record_path = _state.state_dir() / RECORD_NAME
        return self._record_path

    def next_step(self) -> Step:
        """Return what :meth:`run` would do now, without doing it."""
        in_progress = self.flags.is_set(UPGRADE_SERIES_IN_PROGRESS)
        disabled = self.flags.is_set(self.disabled_flag)
        if in_progress and not disabled and self.flags.is_set(self.started_flag):
            return Step.TOOK_DOWN
        if disabled and not in_progress:
            return Step.BROUGHT_BACK
        return Step.NOTHING

    def run(self, *, target_base: str | None = None) -> Step:
        """Do the step the flags call for, and return it.

        Args:
            target_base: The base the machine is being upgraded to, if Juju
                said (``JUJU_TARGET_BASE``); recorded at prepare.

        Raises:
            ServiceError: a service is missing or the record does not match.
            SystemdError: ``systemctl`` failed.
            SnapdError: snapd failed.
            MigrationError: a series migration failed or was refused; the
                services stay down and the next run tries again.
            StateFileError: a record is damaged, lost, or cannot be written.
            StateLockTimeout: another process kept the unit's state locked;
                nothing was done.
            Exception: whatever the charm's ``migrate`` raised.
        """
        step = self.next_step()
        if step is Step.NOTHING:
            return step
        name = 'series-prepare' if step is Step.TOOK_DOWN else 'series-complete'
        with _lock.unit_lock(self.record_path.parent, step=name):
            if step is Step.TOOK_DOWN:
                self._take_down(target_base)
                self.flags.set(self.disabled_flag)
            else:
                self._bring_back()
                self.flags.clear(self.disabled_flag)
        return step

    def read_record(self) -> SeriesRecord | None:
        """Return the before-state record of the current or last upgrade, if any.

        Raises:
            StateFileError: the record exists and is not exactly its shape.
        """
        return _records.load(self.record_path, SeriesRecord)

    def preview(self, *, target_base: str | None = None) -> Preview:
        """Say what the next step would do, with no side effect.

        While the services are down, that is what *complete* would do;
        otherwise what *prepare* would do if the operator ran it now.

        Args:
            target_base: The base the operator means to upgrade to, if known.

        Raises:
            ServiceError: a service does not exist.
            SystemdError: ``systemctl`` failed.
            SnapdError: snapd failed.
        """
        current = _bases.current_base()
        if self.flags.is_set(self.disabled_flag):
            record = self.read_record()
            states = record.services if record is not None else {}
            rows = [
                ServicePreview(name, enabled, running, _up_action(enabled, running))
                for group in self.services
                for name, enabled, running in _rows(states.get(group.key, {}))
            ]
            target = (record.target_base if record is not None else None) or current
            migrated = record is not None and record.migrated
            return Preview(
                step='series-complete',
                summary='bring the services back as they were before the upgrade',
                services=tuple(rows),
                current_base=current,
                target_base=target,
                pending_migrations=() if migrated else self._pending_migrations(),
                disruption='services start again after the migration',
                before_state=record.to_json() if record is not None else None,
            )
        if not self.flags.is_set(self.started_flag):
            return Preview(
                step='series-prepare',
                summary='the services were never started: prepare leaves them alone',
                current_base=current,
                target_base=target_base,
            )
        rows = [
            ServicePreview(name, enabled, running, _down_action(enabled, running))
            for group in self.services
            for name, enabled, running in _rows(group.read_state())
        ]
        return Preview(
            step='series-prepare',
            summary='stop the services and hold them down until complete',
            services=tuple(rows),
            current_base=current,
            target_base=target_base,
            pending_migrations=self._pending_migrations(),
            disruption='every service listed is down from prepare until complete, across reboots',
        )

    # Steps -----------------------------------------------------------------

    def _take_down(self, target_base: str | None) -> None:
        with self.journal.stage('series-prepare', target_base=target_base) as stage:
            record = self.read_record()
            if record is None or record.phase == 'completed':
                record = self._new_record(target_base)
            elif target_base and not record.target_base:
                record.target_base = target_base
                _records.save(self.record_path, record)
            stage.details['before'] = record.services
            for group in self.services:
                before = self._before_of(record, group)
                with self.journal.stage('services-down', services=group.names):
                    group.take_down(before)

    def _bring_back(self) -> None:
        with self.journal.stage('series-complete') as stage:
            record = self.read_record()
            if record is not None and record.phase == 'completed':
                # Done already: by another process while this one waited for
                # the lock, or by a hook that failed after it (its flags were
                # not committed). Nothing is run twice.
                logger.info('The series upgrade was completed at %s already', record.completed_at)
                stage.details['completed_already'] = record.completed_at
                return
            if record is None:
                record = self._assumed_record()
            if not record.migrated:
                self._migrate(record, stage.details)
            for group in reversed(self.services):
                before = self._before_of(record, group)
                with self.journal.stage('services-up', services=group.names):
                    group.bring_back(before)
            self._bring_back_unlisted(record)
            record.phase = 'completed'
            record.completed_at = _clock.utc_now()
            _records.save(self.record_path, record)
            stage.details['restored'] = record.services

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
            with self.journal.stage('series-migrate', old_base=old_base, new_base=new_base):
                self.migrate(old_base, new_base)
        if self.migrations is not None:
            self._run_migrations(record.old_base, new_base)
        record.migrated = True
        record.migrations_record = self._migrations_path().exists()
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

    def _pending_migrations(self) -> tuple[str, ...]:
        # What complete would run: the migrate callback, then the registry's.
        names = ['migrate'] if self.migrate is not None else []
        if self.migrations is not None:
            names += self.migrations.describe(SERIES)
        return tuple(names)

    def _bring_back_unlisted(self, record: SeriesRecord) -> None:
        # Groups taken down at prepare that the charm no longer lists (its
        # services= changed in an upgrade-charm between prepare and complete):
        # bring them back from the record rather than leave them held down.
        listed = {group.key for group in self.services}
        for key, before in record.services.items():
            if key in listed:
                continue
            group = group_from_record(before)
            if group is None:
                logger.warning('Cannot bring back %s: its record is not understood', key)
                continue
            with self.journal.stage('services-up', services=group.names, unlisted=True):
                group.bring_back(before)

    # Record ----------------------------------------------------------------

    def _new_record(self, target_base: str | None) -> SeriesRecord:
        # Read every group before touching any: a missing service fails here,
        # with nothing stopped and no record written.
        states = {group.key: group.read_state() for group in self.services}
        record = SeriesRecord(
            phase='prepared',
            services=states,
            recorded_at=_clock.utc_now(),
            old_base=_bases.current_base(),
            target_base=target_base,
            migrations_record=self._migrations_path().exists(),
        )
        _records.save(self.record_path, record)
        return record

    def _before_of(self, record: SeriesRecord, group: Services) -> dict[str, Any]:
        if group.key not in record.services:
            # The service list grew after the record was written: record the
            # new group now, before touching it.
            record.services[group.key] = group.read_state()
            _records.save(self.record_path, record)
        return record.services[group.key]

    def _assumed_record(self) -> SeriesRecord:
        logger.warning(
            'No before-state record at %s: bringing every service back enabled and running',
            self.record_path,
        )
        return SeriesRecord(
            phase='prepared',
            services={group.key: _all_up(group.read_state()) for group in self.services},
            recorded_at=_clock.utc_now(),
            assumed=True,
        )


def _all_up(state: dict[str, Any]) -> dict[str, Any]:
    for unit in state.get('units', {}).values():
        unit['is_enabled'] = 'enabled'
        unit['running'] = True
    for service in state.get('services', {}).values():
        service['enabled'] = True
        service['active'] = True
    return state


def _rows(state: dict[str, Any]) -> list[tuple[str, str, bool]]:
    # One (name, enabled, running) per service of a group's recorded state.
    if 'units' in state:
        return [(n, str(u['is_enabled']), bool(u['running'])) for n, u in state['units'].items()]
    return [
        (n, 'enabled' if s['enabled'] else 'disabled', bool(s['active']))
        for n, s in state.get('services', {}).items()
    ]


def _down_action(enabled: str, running: bool) -> str:
    steps = ['stop'] if running else []
    if enabled == 'enabled':
        steps.append('disable')
    steps.append('hold')
    return ', '.join(steps)


def _up_action(enabled: str, running: bool) -> str:
    steps = ['release']
    if enabled == 'enabled':
        steps.append('enable')
    steps.append('start' if running else 'stays stopped')
    return ', '.join(steps)


def status_message(juju_major: int | None, machine: str | None) -> str:
    """Return the blocked status message shown while the services are down for the upgrade.

    It names the command that finishes the upgrade on this machine: ``juju
    upgrade-machine <machine> complete``, or ``upgrade-series`` before Juju 3.

    Args:
        juju_major: Juju's major version, if known (3 is assumed if not).
        machine: The machine's id (``JUJU_MACHINE_ID``), if known.
    """
    command = 'upgrade-series' if juju_major is not None and juju_major < 3 else 'upgrade-machine'
    return (
        'Services stopped and disabled for the OS upgrade; when it is done, '
        f'run `juju {command} {machine or "<machine>"} complete`'
    )


def migration_hold_message(migrations: Migrations | None) -> str | None:
    """Return the blocked status message while migrations hold the services down, else None."""
    blocked = None if migrations is None else migrations.blocked_message()
    return None if blocked is None else blocked + MIGRATION_HOLD_SUFFIX
