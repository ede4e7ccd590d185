# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Ordered data migrations with ``up`` and ``down``, run at series upgrades and snap refreshes.

A charm lists its migrations once, in a :class:`Migrations` registry, and
hands the registry to :class:`~charm_upgrade.SeriesUpgrade` (series
migrations run after ``complete``, before the services come back) and to
:class:`~charm_upgrade.CharmSpecificMachines` (refresh migrations run after
the snap is refreshed, before the workload starts; a refresh to an older
revision runs their ``down``). The ids applied on this unit are recorded in
``migrations.json`` in the unit's state directory, written atomically.

Rules (see ``docs/howto/migrations.md`` for the why):

- Ids start with a number (``20260110``, ``0003``) and may go on with a
  name (``20260110-move-config``); migrations run in the order of that
  number, and no two may share it.
- Pending means *known to the code and not applied*: an unapplied id older
  than an applied one runs once, in id order; an applied one never runs again.
- Before ``up`` (or ``down``) runs, a *started* mark is written. If the
  process dies before the migration is recorded, the next run passes
  ``interrupted=True``: a migration is either idempotent or checks that flag
  to finish a half-done run.
- A failure stops the run: earlier migrations stay applied, the failed one is
  not, and :class:`~charm_upgrade.MigrationError` names it.
- A migration that declares ``backup`` paths gets them copied before it runs
  and put back if it fails, or if the process died while it ran: its retry
  then starts from the data as it was, not half-migrated.
- Applied ids the code does not know (the data is newer than the code):
  nothing runs, :class:`~charm_upgrade.MigrationError`.
- A fresh install (:meth:`Migrations.mark_installed`) records every known
  migration as applied without running it.
- A missing record reads as "nothing applied" (a unit deployed before the
  charm had migrations) only when nothing says it existed: if the series
  before-state was written while it existed, or the journal records applied
  migrations, it was lost, and nothing runs until it is put back
  (:class:`~charm_upgrade.StateFileError`).
- A run holds the unit's state lock (:mod:`charm_upgrade._lock`): a second
  process waits for it, then reads the record afresh, and never runs the
  same migration alongside.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import re
import time
from typing import TYPE_CHECKING, Any, Literal

from . import _backup, _clock, _lock, _records, _state
from ._journal import Journal
from ._machine import machine_path
from ._records import (
    AppliedMigration,
    InstallRecord,
    MigrationFailure,
    MigrationsRecord,
    SeriesRecord,
    StartedMark,
)
from .errors import MigrationError, StateFileError

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Sequence

__all__ = [
    'REFRESH',
    'SERIES',
    'STATE_NAME',
    'Migration',
    'MigrationContext',
    'MigrationKind',
    'Migrations',
]

logger = logging.getLogger(__name__)

MigrationKind = Literal['series', 'refresh']
"""When a migration runs: after a series upgrade, or after a snap refresh."""

SERIES: MigrationKind = 'series'
"""Runs after a series upgrade completes; ``old`` and ``new`` are bases (``ubuntu@22.04``)."""

REFRESH: MigrationKind = 'refresh'
"""Runs after a snap refresh; ``old`` and ``new`` are snap revisions (``'182'``)."""

STATE_NAME = MigrationsRecord.NAME
"""File name of the applied-migrations record in the unit's state directory."""

_BACKUPS_NAME = 'migration-backups'
_JOURNAL_NAME = 'journal.jsonl'
_ID = re.compile(r'(?P<number>[0-9]+)(?:-[A-Za-z0-9][A-Za-z0-9._-]*)?')
_REVISION = re.compile(r'(?P<local>x?)(?P<number>[1-9][0-9]*)')


@dataclasses.dataclass(frozen=True)
class MigrationContext:
    """What a migration's ``up`` or ``down`` is called with.

    Attributes:
        migration_id: The migration's id.
        kind: ``series`` or ``refresh``.
        direction: ``up`` or ``down``.
        old: Where the data comes from: the old base (series) or the snap
            revision before the refresh; None if unknown.
        new: Where it goes: the new base, or the snap revision after the refresh.
        interrupted: A run of this same migration started before and never
            finished (the process died, or it raised): the data may be
            half-migrated. An idempotent migration ignores it.
    """

    migration_id: str
    kind: MigrationKind
    direction: Literal['up', 'down']
    old: str | None
    new: str | None
    interrupted: bool = False


@dataclasses.dataclass(frozen=True)
class Migration:
    """One migration: an id, what it does, and how to do and undo it.

    Attributes:
        id: Sortable id: a number (a date such as ``20260110`` or a sequence
            such as ``0003``), optionally followed by ``-name``.
        description: One line for people: the journal, the preview, errors.
        kind: :data:`SERIES` or :data:`REFRESH`.
        up: Called with a :class:`MigrationContext` to migrate the data.
        down: Called with a :class:`MigrationContext` to undo ``up`` when the
            snap is refreshed back to an older revision; None if it cannot be
            undone (a rollback across it is refused). Series migrations are
            never undone: an OS is not downgraded.
        backup: Absolute paths of the files and directories the migration
            changes. They are copied (with modes, owners, times, extended
            attributes and the hard links within each tree; a symlink on the
            way is followed) into the unit's state directory before ``up`` or
            ``down`` runs, put back if it raises or the process dies while it
            runs, and dropped once it is recorded. No path may contain the
            state directory or another declared path. Declare only what it
            changes: the copy is taken on every run, inside the workload's
            downtime. Each is mapped with :func:`~charm_upgrade.machine_path`
            when the migration runs: itself on a machine, the simulated
            unit's own copy under the test kit.

    Raises:
        ValueError: the id or the kind is invalid, or a backup path is relative.
    """

    id: str
    description: str
    kind: MigrationKind
    up: Callable[[MigrationContext], None]
    down: Callable[[MigrationContext], None] | None = None
    backup: Sequence[str | os.PathLike[str]] = ()

    def __post_init__(self):
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(
                f'migration id {self.id!r} is not sortable: start it with a number, such as '
                "'20260110-move-config' or '0003'"
            )
        if self.kind not in (SERIES, REFRESH):
            raise ValueError(
                f'migration {self.id!r} has kind {self.kind!r}: use {SERIES!r} or {REFRESH!r}'
            )
        if isinstance(self.backup, (str, bytes)) or not all(
            isinstance(p, (str, pathlib.PurePath)) for p in self.backup
        ):
            raise ValueError(
                f'migration {self.id!r} has backup={self.backup!r}: give a list of paths'
            )
        # Frozen: store a tuple, so that the migration stays hashable and unchanged.
        object.__setattr__(self, 'backup', tuple(str(p) for p in self.backup))
        relative = [p for p in map(pathlib.Path, self.backup) if not p.is_absolute()]
        if relative:
            raise ValueError(
                f'migration {self.id!r} backs up relative paths {[str(p) for p in relative]}: '
                'hooks run in the charm directory; give absolute paths'
            )

    @property
    def backup_paths(self) -> tuple[pathlib.Path, ...]:
        """The ``backup`` paths, as :func:`~charm_upgrade.machine_path` maps them now."""
        return tuple(machine_path(p) for p in self.backup)

    @property
    def number(self) -> int:
        """The id's leading number, which orders migrations."""
        match = _ID.fullmatch(self.id)
        assert match is not None  # checked in __post_init__
        return int(match['number'])


class Migrations:
    """A charm's migrations and the record of those applied on this unit.

    Build it once (a module-level constant is fine: it reads nothing until
    used) and pass it to the adapters as ``migrations=``.

    Args:
        migrations: The charm's migrations, in any order.
        path: Where the applied ids are recorded; by default
            ``migrations.json`` in the unit's state directory.

    Raises:
        ValueError: two migrations share an id's number.

    Example::

        MIGRATIONS = charm_upgrade.Migrations([
            charm_upgrade.Migration(
                '20260110-config-path', 'Move the config to /etc/myapp', kind='series',
                up=move_config,
            ),
            charm_upgrade.Migration(
                '20260301-db-v2', 'Database format 2', kind='refresh',
                up=to_v2, down=to_v1,
            ),
        ])
    """

    def __init__(
        self,
        migrations: Iterable[Migration] = (),
        *,
        path: str | pathlib.Path | None = None,
    ):
        self._migrations: list[Migration] = []
        self._path = None if path is None else pathlib.Path(path)
        for migration in migrations:
            self.add(migration)

    def add(self, migration: Migration) -> None:
        """Add a migration to the registry.

        Raises:
            ValueError: its id's number is taken already.
        """
        for known in self._migrations:
            if known.number == migration.number:
                raise ValueError(
                    f'migrations {known.id!r} and {migration.id!r} share the number '
                    f'{migration.number}: their order would be ambiguous; renumber one'
                )
        self._migrations.append(migration)
        self._migrations.sort(key=lambda m: m.number)

    @property
    def path(self) -> pathlib.Path:
        """The record's path."""
        # Not cached: a registry is often a module-level constant, built
        # before the state directory is known.
        return self._path if self._path is not None else _state.state_dir() / STATE_NAME

    def all(self, kind: MigrationKind | None = None) -> list[Migration]:
        """Return the known migrations (of one kind, if given), in id order."""
        return [m for m in self._migrations if kind is None or m.kind == kind]

    def get(self, migration_id: str) -> Migration | None:
        """Return the known migration with that id, or None."""
        return next((m for m in self._migrations if m.id == migration_id), None)

    # Reading the record ----------------------------------------------------

    def read_state(self) -> MigrationsRecord:
        """Read the record once; pass it on as ``record=`` to read it no more in one step.

        An absent record reads as nothing applied, unless something says it
        existed and was lost.

        Raises:
            StateFileError: the record is not exactly its shape, or it is
                missing while the series before-state or the journal says
                migrations were applied here. Nothing is run until it is put back.
        """
        record = _records.load(self.path, MigrationsRecord)
        if record is not None:
            return record
        evidence = self._evidence_of_a_record()
        if evidence:
            problem = f'is missing, but {"; ".join(evidence)}'
            raise _state.state_file_error(
                self.path,
                problem,
                'every migration would run again, including those applied here, so nothing '
                'runs. Put it back from a backup, or write it by hand from the journal '
                f'(stages migration:<id>): {_records.MIGRATIONS_SHAPE}. If no migration was '
                'ever applied on this unit, write {"v": 1, "applied": {}} and they all run',
            )
        return MigrationsRecord()

    def applied(self, *, record: MigrationsRecord | None = None) -> list[str]:
        """Return the ids applied on this unit, in id order where known.

        Args:
            record: The record as :meth:`read_state` returned it; read if None.
        """
        record = self._read(record)
        return sorted(record.applied, key=lambda i: (_number(i), i))

    def unknown_applied(
        self, kind: MigrationKind | None = None, *, record: MigrationsRecord | None = None
    ) -> list[str]:
        """Return applied ids that this code does not know: the data is newer than the code.

        Args:
            kind: Only those recorded as of this kind; every kind if None.
            record: The record as :meth:`read_state` returned it; read if None.
        """
        record = self._read(record)
        known = {m.id for m in self._migrations}
        return [
            i
            for i in self.applied(record=record)
            if i not in known and (kind is None or record.applied[i].kind == kind)
        ]

    def pending(
        self, kind: MigrationKind, *, record: MigrationsRecord | None = None
    ) -> list[Migration]:
        """Return the migrations of ``kind`` that are known and not applied, in id order."""
        applied = set(self._read(record).applied)
        return [m for m in self.all(kind) if m.id not in applied]

    def to_undo(
        self, target_revision: str, *, record: MigrationsRecord | None = None
    ) -> list[Migration]:
        """Return the refresh migrations a refresh to ``target_revision`` undoes, newest first.

        Those applied at a snap revision newer than ``target_revision``: a
        rollback brings the data back to where that revision reads it. A
        revision that cannot be compared (a store one with a local ``xN``)
        undoes nothing.
        """
        applied = self._read(record).applied
        undo: list[Migration] = []
        for migration in self.all(REFRESH):
            entry = applied.get(migration.id)
            if entry is not None and _is_older(target_revision, entry.new):
                undo.append(migration)
        return list(reversed(undo))

    @property
    def failure(self) -> MigrationFailure | None:
        """The last failure, while it stands, or None."""
        return self.read_state().failed

    def blocked_message(
        self, kind: MigrationKind | None = None, *, record: MigrationsRecord | None = None
    ) -> str | None:
        """Say why migrations cannot go on, for a blocked status; None if nothing stops them.

        Args:
            kind: Only what stops migrations of this kind; every kind if None.
            record: The record as :meth:`read_state` returned it; read if None.
        """
        record = self._read(record)
        unknown = self.unknown_applied(kind, record=record)
        if unknown:
            return (
                f'Migration {unknown[-1]} applied here is unknown to this charm revision; '
                'refresh to the revision that has it'
            )
        failure = record.failed
        if failure is not None and (kind is None or failure.kind == kind):
            return f'Migration {failure.id} failed ({failure.error}); see upgrade-journal'
        return None

    def describe(
        self,
        kind: MigrationKind,
        *,
        target_revision: str | None = None,
        record: MigrationsRecord | None = None,
    ) -> list[str]:
        """Return what a run would do, one ``id (up|down): description`` string each, in order.

        A migration a rollback would have to undo but cannot (it has no
        ``down``) reads ``id (down: none, refused): description``.
        """
        record = self._read(record)
        steps: list[str] = []
        if kind == REFRESH and target_revision is not None:
            steps += [
                f'{m.id} ({"down" if m.down else "down: none, refused"}): {m.description}'
                for m in self.to_undo(target_revision, record=record)
            ]
        steps += [f'{m.id} (up): {m.description}' for m in self.pending(kind, record=record)]
        return steps

    # Changing the record ---------------------------------------------------

    def mark_installed(self, *, base: str | None = None, revision: str | None = None) -> bool:
        """Record a fresh install: every known migration applied, none run.

        Call it where the charm creates the workload's data for the first
        time (the ``install`` event), before that: a unit whose record is
        missing at any later time is taken for one deployed before the
        charm had migrations, and all of them run. A second call adds the
        base or revision the first did not know, and changes nothing else.

        Args:
            base: The machine's base now.
            revision: The snap revision installed (or about to be).

        Returns:
            Whether the record was created by this call.

        Raises:
            StateFileError: the record exists and is damaged.
            StateLockTimeout: another process kept the unit's state locked.
        """
        with _lock.unit_lock(self.path.parent, step='migrations: install'):
            # Not read_state(): a missing record is what an install creates.
            record = _records.load(self.path, MigrationsRecord)
            now = _clock.utc_now()
            if record is None:
                record = MigrationsRecord(
                    applied={
                        m.id: AppliedMigration(
                            kind=m.kind,
                            how='installed',
                            at=now,
                            new=revision if m.kind == REFRESH else base,
                        )
                        for m in self._migrations
                    },
                    installed=InstallRecord(at=now, base=base, revision=revision),
                    revision=revision,
                )
                _records.save(self.path, record)
                logger.info(
                    'Fresh install: recorded %d migrations as applied', len(self._migrations)
                )
                return True
            if record.installed is not None and revision is not None and record.revision is None:
                # The install hook learned the revision after SeriesUpgrade recorded the install.
                record.installed = dataclasses.replace(record.installed, revision=revision)
                record.revision = revision
                for entry in record.applied.values():
                    if entry.how == 'installed' and entry.kind == REFRESH:
                        entry.new = entry.new or revision
                _records.save(self.path, record)
            return False

    def install_revision_missing(self, *, record: MigrationsRecord | None = None) -> bool:
        """Whether a fresh install was recorded without the snap revision (to add it)."""
        record = self._read(record)
        return record.installed is not None and record.revision is None

    def check(
        self,
        kind: MigrationKind,
        *,
        target_revision: str | None = None,
        record: MigrationsRecord | None = None,
    ) -> None:
        """Raise if a run of ``kind`` must be refused; touch nothing.

        Only migrations of ``kind`` are checked: a series upgrade is not held
        by a refresh migration the code no longer knows, nor the reverse.

        Raises:
            MigrationError: applied ids of ``kind`` unknown to the code, or a
                refresh to ``target_revision`` would have to undo a migration
                without ``down``.
            StateFileError: the record is damaged or lost (see :meth:`read_state`).
        """
        record = self._read(record)
        unknown = self.unknown_applied(kind, record=record)
        if unknown:
            raise MigrationError(
                f'migrations {", ".join(unknown)} are applied on this unit but unknown to this '
                'charm code: the data is newer than the code. Nothing was run. Refresh to the '
                'charm revision that has them (its refresh to the older snap revision runs their '
                'down), or remove them from ' + str(self.path) + ' if you know they are undone',
                migration_id=unknown[-1],
            )
        if kind == REFRESH and target_revision is not None:
            for migration in self.to_undo(target_revision, record=record):
                if migration.down is None:
                    raise MigrationError(
                        f'migration {migration.id} ({migration.description}) cannot be undone '
                        f'(it has no down), so the snap is not refreshed back to revision '
                        f'{target_revision}; refresh to a revision that has it applied',
                        migration_id=migration.id,
                    )

    def run(
        self,
        kind: MigrationKind,
        *,
        old: str | None,
        new: str | None,
        journal: Journal | None = None,
        record: MigrationsRecord | None = None,
    ) -> list[str]:
        """Bring the data of ``kind`` to ``new``: undo, then apply, then record.

        For :data:`REFRESH` and a ``new`` revision older than the one a
        migration was applied at, that migration's ``down`` runs first,
        newest first. Then every pending migration of ``kind`` runs ``up``,
        in id order. Each is recorded as soon as it succeeds. With nothing to
        do, nothing is written. The whole run holds the unit's state lock;
        backups a killed run left behind are dropped first.

        Args:
            kind: :data:`SERIES` or :data:`REFRESH`.
            old: The old base or snap revision.
            new: The new base or snap revision.
            journal: Where each migration is journaled (stage ``migration:<id>``).
            record: The record as :meth:`read_state` returned it under the
                same lock (the caller holds it); read here if None. It is
                updated in place as migrations are recorded.

        Returns:
            What ran, as ``<id>`` for ``up`` and ``<id>:down`` for ``down``.

        Raises:
            MigrationError: a migration raised (it is the ``__cause__``; the
                ones before it stay applied), or :meth:`check` refuses.
            StateFileError: the record is damaged, lost, or cannot be written.
            StateLockTimeout: another process kept the unit's state locked.
        """
        with _lock.unit_lock(self.path.parent, step=f'{kind} migrations'):
            record = self._read(record)
            self._drop_orphaned_backups(record)
            self.check(kind, target_revision=new if kind == REFRESH else None, record=record)
            downs = self.to_undo(new, record=record) if kind == REFRESH and new is not None else []
            ups = self.pending(kind, record=record)
            ran: list[str] = []
            for migration in downs:
                self._apply(migration, 'down', old, new, journal, record)
                ran.append(f'{migration.id}:down')
            for migration in ups:
                applied = self.applied(record=record)
                if applied and _number(applied[-1]) > migration.number:
                    logger.warning(
                        'Migration %s runs after the newer %s (it was added later): it runs once',
                        migration.id,
                        applied[-1],
                    )
                self._apply(migration, 'up', old, new, journal, record)
                ran.append(migration.id)
            if kind == REFRESH and new is not None and record.revision != new:
                record.revision = new
                _records.save(self.path, record)
            return ran

    @property
    def data_revision(self) -> str | None:
        """The snap revision the data was last migrated to (or installed at), if recorded."""
        return self.read_state().revision

    def backup_dir(self, migration: Migration, direction: Literal['up', 'down']) -> pathlib.Path:
        """Where the backup of ``migration``'s ``backup`` paths is kept while it runs."""
        return self.path.parent / _BACKUPS_NAME / f'{migration.id}-{direction}'

    def _read(self, record: MigrationsRecord | None) -> MigrationsRecord:
        return self.read_state() if record is None else record

    def _evidence_of_a_record(self) -> list[str]:
        """Say what shows that a missing record existed on this unit; empty if nothing does."""
        directory = self.path.parent
        evidence: list[str] = []
        with contextlib.suppress(StateFileError):  # a damaged one says nothing here
            series = _records.load(directory / SeriesRecord.NAME, SeriesRecord)
            if series is not None and series.migrations_record:
                evidence.append(
                    f'{SeriesRecord.NAME} (recorded {series.recorded_at}) was written while it '
                    'existed'
                )
        with contextlib.suppress(StateFileError):
            refresh = _state.read_json(directory / _records.REFRESH_RECORD_NAME)
            if isinstance(refresh, dict) and refresh.get('migrations_record') is True:  # pyright: ignore[reportUnknownMemberType]
                evidence.append(f'{_records.REFRESH_RECORD_NAME} was written while it existed')
        ran = sorted(
            {
                stage.removeprefix('migration:')
                for record in Journal(directory / _JOURNAL_NAME).read()
                if isinstance(stage := record.get('stage'), str)
                and stage.startswith('migration:')
                and not stage.endswith(':down')
                and record.get('event') == 'ended'
            },
            key=lambda i: (_number(i), i),
        )
        if ran:
            evidence.append(f'the journal records migrations {", ".join(ran)} as applied')
        return evidence

    def _drop_orphaned_backups(self, record: MigrationsRecord) -> None:
        """Remove the backups a killed run left that no run will put back.

        A backup is needed only while its migration's started mark stands:
        one left once the migration was recorded (killed before it was
        dropped), before the mark was written, or half taken, is dropped.
        """
        started = record.started
        keep = None if started is None else f'{started.id}-{started.direction}'
        try:
            leftovers = sorted((self.path.parent / _BACKUPS_NAME).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return
        for leftover in leftovers:
            if leftover.name == keep:
                continue
            logger.warning(
                'Dropping the backup %s that a killed run left: no migration needs it', leftover
            )
            try:
                _backup.discard(leftover)
            except OSError as e:  # it takes space, nothing more; the next run tries again
                logger.warning('Cannot remove the backup %s: %s', leftover, e)

    def _apply(
        self,
        migration: Migration,
        direction: Literal['up', 'down'],
        old: str | None,
        new: str | None,
        journal: Journal | None,
        record: MigrationsRecord,
    ) -> None:
        started = record.started
        interrupted = started is not None and (started.id, started.direction) == (
            migration.id,
            direction,
        )
        # A mark the other kind left (a refresh migration that failed or died, when a
        # series upgrade completes) is that kind's: put back once this one is done.
        others_mark = started if self._of_other_kind(started, migration.kind) else None
        stage = f'migration:{migration.id}' + (':down' if direction == 'down' else '')
        details: dict[str, Any] = {
            'description': migration.description,
            'old': old,
            'new': new,
            'interrupted': interrupted,
        }
        backup = self.backup_dir(migration, direction) if migration.backup else None
        if backup is not None:
            # Before the started mark: a crash while the copy is taken leaves
            # no mark, and the next run takes it again.
            interrupted = self._prepare_backup(migration, direction, backup, interrupted, details)
        # The started mark goes to disk before the migration touches anything:
        # a crash after it tells the next run that this one may be half done.
        record.started = StartedMark(migration.id, direction, _clock.utc_now())
        _records.save(self.path, record)
        context = MigrationContext(migration.id, migration.kind, direction, old, new, interrupted)
        func = migration.up if direction == 'up' else migration.down
        assert func is not None  # check() refused a down-less undo
        if journal is not None:
            journal.write(stage, 'start', details=details)
        began = time.monotonic()
        try:
            func(context)
        except Exception as e:
            took = time.monotonic() - began
            error = f'{type(e).__name__}: {e}'
            after = self._after_failure(backup, details)
            if backup is not None and 'restored' in details:
                # The data is as it was before: the retry is not an interrupted run.
                record.started = others_mark
            # Otherwise the started mark stays: the retry gets interrupted=True.
            record.failed = MigrationFailure(
                id=migration.id,
                kind=migration.kind,
                direction=direction,
                error=error,
                at=_clock.utc_now(),
                old=old,
                new=new,
            )
            _records.save(self.path, record)
            if journal is not None:
                journal.write(stage, 'failed', duration=took, error=error, details=details)
            raise MigrationError(
                f'migration {migration.id} ({migration.description}) failed {direction}: '
                f'{error}. {after}Migrations before it stay applied; fix the cause and the '
                'next hook runs it again',
                migration_id=migration.id,
            ) from e
        took = time.monotonic() - began
        if direction == 'up':
            record.applied[migration.id] = AppliedMigration(
                kind=migration.kind, how='ran', at=_clock.utc_now(), old=old, new=new
            )
        else:
            record.applied.pop(migration.id, None)
        record.started = others_mark
        if record.failed is not None and record.failed.kind == migration.kind:
            record.failed = None  # a failure of the other kind stands until its own retry
        _records.save(self.path, record)
        if backup is not None:
            try:
                _backup.discard(backup)
            except OSError as e:  # recorded already; the next run drops it
                logger.warning(
                    'Cannot remove the backup %s of migration %s: %s', backup, migration.id, e
                )
        if journal is not None:
            journal.write(stage, 'ended', duration=took, details=details)
        logger.info('Migration %s %s: done', migration.id, direction)

    def _of_other_kind(self, mark: StartedMark | None, kind: MigrationKind) -> bool:
        known = self.get(mark.id) if mark is not None else None
        return known is not None and known.kind != kind

    def _prepare_backup(
        self,
        migration: Migration,
        direction: str,
        backup: pathlib.Path,
        interrupted: bool,
        details: dict[str, Any],
    ) -> bool:
        """Take the backup, or restore the one an interrupted run left; return ``interrupted``."""
        if interrupted and _backup.exists(backup):
            # The last run died while it ran: start again from the data as it was.
            try:
                details['restored_after_crash'] = _backup.restore(backup)
            except (OSError, ValueError, StateFileError) as e:
                raise MigrationError(
                    f'migration {migration.id} ({migration.description}) was interrupted, and '
                    f'its backup in {backup} could not be put back: {e}. Fix the cause; the '
                    'next hook tries again',
                    migration_id=migration.id,
                ) from e
            logger.warning(
                'Migration %s %s was interrupted: restored %s from its backup',
                migration.id,
                direction,
                ', '.join(details['restored_after_crash']),
            )
            return False
        try:
            details['backup'] = _backup.take(
                backup, migration.backup_paths, state_dir=self.path.parent
            ).to_dict()
        except (OSError, ValueError) as e:
            raise MigrationError(
                f'cannot back up {", ".join(map(str, migration.backup_paths))} before migration '
                f'{migration.id} ({migration.description}): {e}. Nothing was changed; fix the '
                'cause and the next hook tries again',
                migration_id=migration.id,
            ) from e
        return interrupted

    def _after_failure(self, backup: pathlib.Path | None, details: dict[str, Any]) -> str:
        """Put the backup back after a failed run; say what happened, for the error."""
        if backup is None:
            return 'The next run gets interrupted=True. '
        try:
            details['restored'] = _backup.restore(backup)
        except (OSError, ValueError, StateFileError) as e:
            logger.exception('Cannot restore the backup %s', backup)
            details['restore_error'] = f'{type(e).__name__}: {e}'
            return (
                f'Putting back its backup failed too ({e}): the next run tries again, '
                'then runs it with interrupted=True. '
            )
        with contextlib.suppress(OSError):
            _backup.discard(backup)
        return 'Its backup paths were put back as they were. '


def _number(migration_id: str) -> int:
    match = _ID.fullmatch(migration_id)
    return int(match['number']) if match else -1


def _revision_key(revision: object) -> tuple[bool, int] | None:
    if not isinstance(revision, str):
        return None
    match = _REVISION.fullmatch(revision)
    return (bool(match['local']), int(match['number'])) if match else None


def _is_older(revision: str, than: object) -> bool:
    """Whether ``revision`` is older than ``than``; False when they cannot be compared."""
    a, b = _revision_key(revision), _revision_key(than)
    # Store revisions and local xN ones are numbered apart: never compared.
    return a is not None and b is not None and a[0] == b[0] and a[1] < b[1]
