# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""One typed record per state file, read once per step and checked whole.

Each file the library keeps in the unit's state directory has one record
class here: :class:`SeriesRecord` (``series-upgrade.json``, the before-state of
a series upgrade), :class:`RefreshRecord` (``snap-refresh.json``, the
before-state and progress of a snap refresh), :class:`MigrationsRecord`
(``migrations.json``, the applied migrations) and :class:`BackupManifest`
(``manifest.json`` in a migration's backup). Each class says what its file
looks like (``from_json``), how it is written (``to_json``) and what to tell
an operator whose file is damaged (``ADVICE``): removing a file is not always
the way out, since without ``migrations.json`` every migration runs again.

:func:`load` reads a file once and returns its record, or None if the file
does not exist. A file that exists and is not exactly the shape written here
(``null``, ``[]``, a string where an object belongs, a missing key, bytes that
are not UTF-8) is a :class:`~charm_upgrade.StateFileError` that names the
file, the key and the value: it never reads as "nothing recorded". Keys a
newer version added are kept as they are. :func:`save` writes a record with
:func:`charm_upgrade._state.atomic_write`.

Each is a dataclass with ``ADVICE``, a ``from_json`` that checks through a
:class:`ShapeReader`, and ``to_json``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, cast

from . import _state

if TYPE_CHECKING:
    import pathlib

    from .errors import StateFileError

__all__ = [
    'FORMAT_VERSION',
    'MIGRATIONS_SHAPE',
    'REFRESH_RECORD_NAME',
    'AppliedMigration',
    'BackupEntry',
    'BackupManifest',
    'InstallRecord',
    'MigrationFailure',
    'MigrationsRecord',
    'RefreshRecord',
    'SeriesRecord',
    'ShapeReader',
    'StartedMark',
    'load',
    'save',
]

FORMAT_VERSION = 1
"""The ``v`` of every record written so far."""

REFRESH_RECORD_NAME = 'snap-refresh.json'
"""The file of a snap refresh's record (:class:`RefreshRecord`)."""

Kind = Literal['series', 'refresh']
Direction = Literal['up', 'down']
Phase = Literal['prepared', 'completed']
RefreshPhase = Literal['started', 'refreshed', 'completed']

_WRITE_ADVICE = (
    'the file as it was before is unchanged; free space on its file system or make it '
    'writable, then run the step again'
)


class ShapeReader:
    """Checks a decoded JSON document against a record's shape, naming what is wrong.

    Args:
        path: The file the document was read from.
        advice: What to do about a damaged file, for the error message.
    """

    def __init__(self, path: pathlib.Path, advice: str):
        self.path = path
        self.advice = advice

    def error(self, problem: str) -> StateFileError:
        """Return the error for ``problem`` (``has no 'phase'``...) in this file."""
        return _state.state_file_error(self.path, problem, self.advice)

    def mapping(self, value: object, where: str) -> dict[str, Any]:
        """Return ``value`` if it is a JSON object; ``where`` names it (``'' `` for the file)."""
        if not isinstance(value, dict):
            if not where:
                raise self.error(f'holds {_describe(value)} where a JSON object belongs')
            raise self.error(f'has {where} = {_show(value)}, expected a JSON object')
        return cast('dict[str, Any]', value)

    def version(self, document: dict[str, Any]) -> None:
        """Check the record's format version ``v``."""
        version = self.value(document, 'v', '')
        if isinstance(version, bool) or not isinstance(version, int):
            raise self.error(f'has v = {_show(version)}, expected {FORMAT_VERSION}')
        if version > FORMAT_VERSION:
            raise self.error(
                f'is format {version}, written by a newer charm-upgrade (this one reads format '
                f'{FORMAT_VERSION}); refresh the charm to the revision that wrote it. Otherwise'
            )
        if version != FORMAT_VERSION:
            raise self.error(f'has v = {version}, expected {FORMAT_VERSION}')

    def value(self, document: dict[str, Any], key: str, where: str) -> Any:
        """Return ``document[key]``, which must be there."""
        if key not in document:
            raise self.error(f'has no {_join(where, key)}')
        return document[key]

    def text(self, document: dict[str, Any], key: str, where: str) -> str:
        """Return the string at ``key``, which must be there."""
        value = self.value(document, key, where)
        if not isinstance(value, str):
            raise self.error(f'has {_join(where, key)} = {_show(value)}, expected a string')
        return value

    def optional_text(self, document: dict[str, Any], key: str, where: str) -> str | None:
        """Return the string at ``key``, or None if it is missing or ``null``."""
        value = document.get(key)
        if value is not None and not isinstance(value, str):
            raise self.error(
                f'has {_join(where, key)} = {_show(value)}, expected a string or null'
            )
        return value

    def flag(self, document: dict[str, Any], key: str, where: str, *, required: bool) -> bool:
        """Return the boolean at ``key``; a missing optional one is False."""
        if not required and key not in document:
            return False
        value = self.value(document, key, where)
        if not isinstance(value, bool):
            raise self.error(f'has {_join(where, key)} = {_show(value)}, expected true or false')
        return value

    def choice(
        self, document: dict[str, Any], key: str, where: str, choices: tuple[str, ...]
    ) -> str:
        """Return the string at ``key``, which must be one of ``choices``."""
        value = self.value(document, key, where)
        if value not in choices:
            expected = ' or '.join(repr(c) for c in choices)
            raise self.error(f'has {_join(where, key)} = {_show(value)}, expected {expected}')
        return cast('str', value)

    def text_list(self, document: dict[str, Any], key: str, where: str) -> list[str]:
        """Return the list of strings at ``key``; a missing one is empty."""
        value: object = document.get(key)
        if value is None:
            return []
        problem = f'has {_join(where, key)} = {_show(value)}, expected a list of strings'
        items = cast('list[object]', value) if isinstance(value, list) else None
        if items is None or not all(isinstance(item, str) for item in items):
            raise self.error(problem)
        return [str(item) for item in items]

    def unknown_keys(self, document: dict[str, Any], record_type: type) -> dict[str, Any]:
        """Return the keys of ``document`` that ``record_type`` has no field for."""
        known = {'v', *(f.name for f in dataclasses.fields(record_type))}
        return {k: v for k, v in document.items() if k not in known}

    def document(self, value: object) -> dict[str, Any]:
        """Return a whole record's document: a JSON object of this format version."""
        data = self.mapping(value, '')
        self.version(data)
        return data


class _Record(Protocol):
    ADVICE: ClassVar[str]

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader) -> _Record: ...

    def to_json(self) -> dict[str, Any]: ...


RecordT = TypeVar('RecordT', bound=_Record)


def load(path: pathlib.Path, record_type: type[RecordT]) -> RecordT | None:
    """Read the record at ``path``, or return None if there is no such file.

    Raises:
        StateFileError: the file exists and is not exactly the record's shape.
    """
    try:
        document = _state.read_document(path, advice=record_type.ADVICE)
    except FileNotFoundError:
        return None
    return cast('RecordT', record_type.from_json(document, ShapeReader(path, record_type.ADVICE)))


def save(path: pathlib.Path, record: _Record) -> None:
    """Write ``record`` to ``path``, atomically and durably.

    Raises:
        StateFileError: the file cannot be written (``ENOSPC``, ``EROFS``...);
            the old file is unchanged.
    """
    try:
        _state.write_json(path, record.to_json())
    except OSError as e:
        problem = f'cannot be written ({e.strerror or e})'
        raise _state.state_file_error(path, problem, _WRITE_ADVICE) from e


# series-upgrade.json ----------------------------------------------------------


@dataclasses.dataclass
class SeriesRecord:
    """The before-state of a series upgrade: ``series-upgrade.json``.

    Attributes:
        phase: ``prepared`` from prepare until complete, then ``completed``.
        services: Each services group's state before the upgrade, by the
            group's key (see :meth:`charm_upgrade.Services.read_state`).
        recorded_at: When prepare recorded it.
        old_base: The base the machine ran at prepare.
        target_base: The base the upgrade targets, if Juju said.
        migrated: Whether complete ran the migration and the series
            migrations (so that a retried complete does not run them again).
        completed_at: When complete finished.
        assumed: The record was lost and complete assumed every service
            enabled and running (earlier versions did; this one brings back
            only what a record says was taken down).
        migrations_record: ``migrations.json`` existed when this was written:
            if it is missing later, it was lost, and the migrations must not
            all run again.
        token: A random token of this prepare, also the value of the
            library's *disabled* flag: it tells the flag the library set from
            one someone else set.
        migrate_error: What the charm's ``migrate`` callback raised the last
            time, while that stands (it holds the services down).
        skipped: What complete could not bring back as recorded, and why.
        extra: Keys a newer version wrote, kept as they are.
    """

    NAME: ClassVar[str] = 'series-upgrade.json'
    ADVICE: ClassVar[str] = (
        'if you know which services were enabled and running before the upgrade, fix it by '
        'hand (each group\'s "units" or "services" as prepare recorded them); removing it makes '
        'complete bring nothing back (the services stay held down until you release them by '
        'hand) and leave the disabled flag set'
    )

    phase: Phase
    services: dict[str, dict[str, Any]]
    recorded_at: str | None = None
    old_base: str | None = None
    target_base: str | None = None
    migrated: bool = False
    completed_at: str | None = None
    assumed: bool = False
    migrations_record: bool = False
    token: str | None = None
    migrate_error: str | None = None
    skipped: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    extra: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader) -> SeriesRecord:
        """Return the record of a decoded ``series-upgrade.json``.

        Raises:
            StateFileError: it is not exactly this shape.
        """
        data = reader.document(document)
        return cls(
            phase=cast('Phase', reader.choice(data, 'phase', '', ('prepared', 'completed'))),
            services=_service_groups(reader, reader.value(data, 'services', '')),
            recorded_at=reader.optional_text(data, 'recorded_at', ''),
            old_base=reader.optional_text(data, 'old_base', ''),
            target_base=reader.optional_text(data, 'target_base', ''),
            migrated=reader.flag(data, 'migrated', '', required=False),
            completed_at=reader.optional_text(data, 'completed_at', ''),
            assumed=reader.flag(data, 'assumed', '', required=False),
            migrations_record=reader.flag(data, 'migrations_record', '', required=False),
            token=reader.optional_text(data, 'token', ''),
            migrate_error=reader.optional_text(data, 'migrate_error', ''),
            skipped=_texts(reader, data.get('skipped', {}), 'skipped'),
            extra=reader.unknown_keys(data, cls),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the record as ``series-upgrade.json`` holds it."""
        document: dict[str, Any] = {
            'v': FORMAT_VERSION,
            'phase': self.phase,
            'recorded_at': self.recorded_at,
            'old_base': self.old_base,
            'target_base': self.target_base,
            'migrated': self.migrated,
            'migrations_record': self.migrations_record,
            'services': self.services,
        }
        if self.completed_at is not None:
            document['completed_at'] = self.completed_at
        if self.assumed:
            document['assumed'] = True
        if self.token is not None:
            document['token'] = self.token
        if self.migrate_error is not None:
            document['migrate_error'] = self.migrate_error
        if self.skipped:
            document['skipped'] = self.skipped
        return {**self.extra, **document}


def _texts(reader: ShapeReader, value: object, where: str) -> dict[str, str]:
    texts = reader.mapping(value, where)
    for key in texts:
        reader.text(texts, key, where)
    return cast('dict[str, str]', texts)


def _service_groups(reader: ShapeReader, value: object) -> dict[str, dict[str, Any]]:
    groups = reader.mapping(value, 'services')
    for key, raw in groups.items():
        where = f'services[{key!r}]'
        group = reader.mapping(raw, where)
        kind = group.get('kind')
        if kind == 'systemd':
            units = reader.mapping(reader.value(group, 'units', where), f'{where}.units')
            for name, unit in units.items():
                here = f'{where}.units[{name!r}]'
                unit = reader.mapping(unit, here)
                reader.text(unit, 'id', here)
                reader.text(unit, 'is_enabled', here)
                reader.flag(unit, 'running', here, required=True)
        elif kind == 'snap':
            reader.text(group, 'snap', where)
            services = reader.mapping(reader.value(group, 'services', where), f'{where}.services')
            for name, service in services.items():
                here = f'{where}.services[{name!r}]'
                service = reader.mapping(service, here)
                reader.flag(service, 'enabled', here, required=True)
                reader.flag(service, 'active', here, required=True)
        # Any other kind is a Services subclass of the charm's own: its shape is its own.
    return groups


# snap-refresh.json -----------------------------------------------------------


@dataclasses.dataclass
class RefreshRecord:
    """The record of a snap refresh: its before-state, target and progress (``snap-refresh.json``).

    Attributes:
        snap: The snap refreshed (as charm-refresh named it to ``refresh_snap``).
        revision: The revision installed before the refresh.
        target: The revision asked for.
        channel: The channel tracked before, or ``''``.
        base: The machine's base then (``ubuntu@24.04``), if known.
        services: ``snap.app`` -> ``{'enabled': bool, 'active': bool}`` before the stop.
        phase: ``started`` (recorded; the workload is being or was stopped),
            ``refreshed`` (snapd ended with another revision, recorded), ``completed``
            (the workload is back; nothing is left to do).
        recorded_at: When the before-state was recorded.
        revision_after: The revision snapd ended with, once known.
        change_id: snapd's refresh change, once known.
        outcome: ``refreshed`` or ``unchanged`` (the refresh failed or was undone),
            once completed.
        completed_at: When the workload was brought back.
        migrations_record: ``migrations.json`` existed when this was written.
        held_units: The systemd units the refresh holds down with the library's drop-in
            from the stop until the start; empty for a refresh that stopped the services
            through snapd with ``disable`` (records of earlier versions).
        extra: Keys a newer version wrote, kept as they are.
    """

    NAME: ClassVar[str] = REFRESH_RECORD_NAME
    ADVICE: ClassVar[str] = (
        'it says which services ran before a refresh and how far the refresh got; without it '
        'an unfinished refresh is not finished. Fix it by hand from the journal (`python -m '
        'charm_upgrade journal`), or remove it if no refresh is under way (`snap changes` shows '
        'none in flight and every service runs as it should)'
    )

    snap: str
    revision: str
    target: str
    channel: str
    base: str | None
    services: dict[str, dict[str, bool]]
    phase: RefreshPhase
    recorded_at: str
    revision_after: str | None = None
    change_id: str | None = None
    outcome: str | None = None
    completed_at: str | None = None
    migrations_record: bool = False
    held_units: list[str] = dataclasses.field(default_factory=list[str])
    extra: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])

    @property
    def finished(self) -> bool:
        """Whether nothing is left to do for this refresh."""
        return self.phase == 'completed'

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader) -> RefreshRecord:
        """Return the record of a decoded ``snap-refresh.json``.

        Raises:
            StateFileError: it is not exactly this shape.
        """
        data = reader.document(document)
        return cls(
            snap=reader.text(data, 'snap', ''),
            revision=reader.text(data, 'revision', ''),
            target=reader.text(data, 'target', ''),
            channel=reader.optional_text(data, 'channel', '') or '',
            base=reader.optional_text(data, 'base', ''),
            services=_snap_services(reader, reader.value(data, 'services', ''), 'services'),
            phase=cast(
                'RefreshPhase',
                reader.choice(data, 'phase', '', ('started', 'refreshed', 'completed')),
            ),
            recorded_at=reader.optional_text(data, 'recorded_at', '') or '',
            revision_after=reader.optional_text(data, 'revision_after', ''),
            change_id=reader.optional_text(data, 'change_id', ''),
            outcome=reader.optional_text(data, 'outcome', ''),
            completed_at=reader.optional_text(data, 'completed_at', ''),
            migrations_record=reader.flag(data, 'migrations_record', '', required=False),
            held_units=reader.text_list(data, 'held_units', ''),
            extra=reader.unknown_keys(data, cls),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the record as ``snap-refresh.json`` holds it."""
        document: dict[str, Any] = {
            'v': FORMAT_VERSION,
            'snap': self.snap,
            'phase': self.phase,
            'recorded_at': self.recorded_at,
            'base': self.base,
            'revision': self.revision,
            'channel': self.channel,
            'target': self.target,
            'services': self.services,
            'migrations_record': self.migrations_record,
        }
        for key in ('revision_after', 'change_id', 'outcome', 'completed_at'):
            value = getattr(self, key)
            if value is not None:
                document[key] = value
        if self.held_units:
            document['held_units'] = list(self.held_units)
        return {**self.extra, **document}


def _snap_services(reader: ShapeReader, value: object, where: str) -> dict[str, dict[str, bool]]:
    services: dict[str, dict[str, bool]] = {}
    for name, raw in reader.mapping(value, where).items():
        state = reader.mapping(raw, f'{where}[{name!r}]')
        services[name] = {
            key: reader.flag(state, key, f'{where}[{name!r}]', required=True)
            for key in ('enabled', 'active')
        }
    return services


# migrations.json -----------------------------------------------------------------


@dataclasses.dataclass
class AppliedMigration:
    """One applied migration in ``migrations.json``.

    Attributes:
        kind: ``series`` or ``refresh``.
        how: ``ran``, or ``installed`` (recorded at a fresh install, not
            run); None if not said (a record written by hand).
        at: When it was recorded.
        old: The base or snap revision the data came from.
        new: The base or snap revision it brought the data to.
        extra: Keys a newer version wrote, kept as they are.
    """

    kind: Kind
    how: str | None = None
    at: str | None = None
    old: str | None = None
    new: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader, where: str) -> AppliedMigration:
        """Return the entry at ``where``, checked."""
        data = reader.mapping(document, where)
        return cls(
            kind=cast('Kind', reader.choice(data, 'kind', where, ('series', 'refresh'))),
            how=reader.optional_text(data, 'how', where),
            at=reader.optional_text(data, 'at', where),
            old=reader.optional_text(data, 'old', where),
            new=reader.optional_text(data, 'new', where),
            extra=reader.unknown_keys(data, cls),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the entry as the file holds it."""
        document: dict[str, Any] = {'kind': self.kind, 'at': self.at, 'how': self.how}
        if self.old is not None or self.how == 'ran':
            document['old'] = self.old
        document['new'] = self.new
        return {**self.extra, **document}


@dataclasses.dataclass(frozen=True)
class StartedMark:
    """The mark written before a migration runs, cleared once it is recorded.

    Attributes:
        id: The migration's id.
        direction: ``up`` or ``down``.
        at: When it started.
    """

    id: str
    direction: Direction
    at: str | None = None

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader) -> StartedMark:
        """Return the mark, checked."""
        data = reader.mapping(document, 'started')
        return cls(
            id=reader.text(data, 'id', 'started'),
            direction=cast(
                'Direction', reader.choice(data, 'direction', 'started', ('up', 'down'))
            ),
            at=reader.optional_text(data, 'at', 'started'),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the mark as the file holds it."""
        return {'id': self.id, 'direction': self.direction, 'at': self.at}


@dataclasses.dataclass(frozen=True)
class MigrationFailure:
    """The last failure of a migration, while it stands.

    Attributes:
        id: The migration's id.
        kind: ``series`` or ``refresh``.
        direction: ``up`` or ``down``.
        error: What it raised, as ``Type: message``.
        at: When it failed.
        old: The base or snap revision the data came from.
        new: The base or snap revision it was going to.
    """

    id: str
    kind: Kind
    direction: Direction
    error: str
    at: str | None = None
    old: str | None = None
    new: str | None = None

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader) -> MigrationFailure:
        """Return the failure, checked."""
        data = reader.mapping(document, 'failed')
        return cls(
            id=reader.text(data, 'id', 'failed'),
            kind=cast('Kind', reader.choice(data, 'kind', 'failed', ('series', 'refresh'))),
            direction=cast(
                'Direction', reader.choice(data, 'direction', 'failed', ('up', 'down'))
            ),
            error=reader.text(data, 'error', 'failed'),
            at=reader.optional_text(data, 'at', 'failed'),
            old=reader.optional_text(data, 'old', 'failed'),
            new=reader.optional_text(data, 'new', 'failed'),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the failure as the file holds it."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class InstallRecord:
    """A fresh install: every migration known then was recorded as applied, none run.

    Attributes:
        at: When.
        base: The machine's base then.
        revision: The snap revision installed, if known.
    """

    at: str | None = None
    base: str | None = None
    revision: str | None = None

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader) -> InstallRecord:
        """Return the install record, checked."""
        data = reader.mapping(document, 'installed')
        return cls(
            at=reader.optional_text(data, 'at', 'installed'),
            base=reader.optional_text(data, 'base', 'installed'),
            revision=reader.optional_text(data, 'revision', 'installed'),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the install record as the file holds it."""
        return dataclasses.asdict(self)


MIGRATIONS_SHAPE = (
    '{"v": 1, "applied": {"<id>": {"kind": "series" or "refresh", "how": "ran", '
    '"at": "<when>", "new": "<base or snap revision>"}, ...}}'
)
"""The least a hand-written ``migrations.json`` holds, for error messages."""


@dataclasses.dataclass
class MigrationsRecord:
    """The migrations applied on this unit: ``migrations.json``.

    Attributes:
        applied: Each applied migration by id, in the order recorded.
        started: The migration running now, or that died running; None between runs.
        failed: The last failure, while it stands.
        installed: The fresh install, if one was recorded.
        revision: The snap revision the data was last migrated to (or installed at).
        extra: Keys a newer version wrote, kept as they are.
    """

    NAME: ClassVar[str] = 'migrations.json'
    ADVICE: ClassVar[str] = (
        'do not remove it: without it every migration runs again, including the ones applied '
        'here. Fix it by hand, or rebuild it from the journal (`python3 -m charm_upgrade '
        'journal <state dir>/journal.jsonl` lists the migrations that ran, as stages '
        f'migration:<id>); its shape is {MIGRATIONS_SHAPE}'
    )

    applied: dict[str, AppliedMigration] = dataclasses.field(
        default_factory=dict[str, AppliedMigration]
    )
    started: StartedMark | None = None
    failed: MigrationFailure | None = None
    installed: InstallRecord | None = None
    revision: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader) -> MigrationsRecord:
        """Return the record of a decoded ``migrations.json``.

        Raises:
            StateFileError: it is not exactly this shape.
        """
        data = reader.document(document)
        applied = reader.mapping(reader.value(data, 'applied', ''), 'applied')
        started, failed, installed = (data.get(k) for k in ('started', 'failed', 'installed'))
        return cls(
            applied={
                migration_id: AppliedMigration.from_json(
                    entry, reader, f'applied[{migration_id!r}]'
                )
                for migration_id, entry in applied.items()
            },
            started=None if started is None else StartedMark.from_json(started, reader),
            failed=None if failed is None else MigrationFailure.from_json(failed, reader),
            installed=None if installed is None else InstallRecord.from_json(installed, reader),
            revision=reader.optional_text(data, 'revision', ''),
            extra=reader.unknown_keys(data, cls),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the record as ``migrations.json`` holds it."""
        document: dict[str, Any] = {
            'v': FORMAT_VERSION,
            'applied': {i: entry.to_json() for i, entry in self.applied.items()},
            'started': None if self.started is None else self.started.to_json(),
            'failed': None if self.failed is None else self.failed.to_json(),
        }
        if self.installed is not None:
            document['installed'] = self.installed.to_json()
        if self.installed is not None or self.revision is not None:
            document['revision'] = self.revision
        return {**self.extra, **document}


# A backup's manifest.json ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BackupEntry:
    """One declared path of a backup.

    Attributes:
        path: The path as the migration declared it.
        resolved: Where it led when the backup was taken (symlinks followed):
            what was copied, and where it is put back.
        present: Whether anything was there; an absent path is removed on restore.
    """

    path: str
    resolved: str
    present: bool


@dataclasses.dataclass
class BackupManifest:
    """What a migration's backup holds: ``manifest.json``, written last.

    Entry ``i`` is copied to the backup's file or directory named ``i``.

    Attributes:
        entries: The declared paths, in the order declared.
    """

    NAME: ClassVar[str] = 'manifest.json'
    ADVICE: ClassVar[str] = (
        'the backup it describes cannot be put back. Fix it by hand, or remove its backup '
        'directory: the next run then runs the migration again with interrupted=True, on the '
        'data as the interrupted run left it'
    )

    entries: list[BackupEntry]

    @classmethod
    def from_json(cls, document: object, reader: ShapeReader) -> BackupManifest:
        """Return the manifest, checked.

        Raises:
            StateFileError: it is not exactly this shape.
        """
        data = reader.document(document)
        raw = reader.value(data, 'entries', '')
        if not isinstance(raw, list):
            raise reader.error(f'has entries = {_show(raw)}, expected a JSON array')
        entries: list[BackupEntry] = []
        for index, item in enumerate(cast('list[object]', raw)):
            where = f'entries[{index}]'
            entry = reader.mapping(item, where)
            path = reader.text(entry, 'path', where)
            entries.append(
                BackupEntry(
                    path=path,
                    resolved=reader.optional_text(entry, 'resolved', where) or path,
                    present=reader.flag(entry, 'present', where, required=True),
                )
            )
        return cls(entries)

    def to_json(self) -> dict[str, Any]:
        """Return the manifest as the file holds it."""
        return {'v': FORMAT_VERSION, 'entries': [dataclasses.asdict(e) for e in self.entries]}


def _join(where: str, key: str) -> str:
    return f'{where}.{key}' if where else repr(key)


def _describe(value: object) -> str:
    if value is None:
        return 'null'
    if isinstance(value, list):
        return 'a JSON array'
    if isinstance(value, str):
        return 'a string'
    if isinstance(value, bool):
        return 'a boolean'
    return 'a number'


def _show(value: object) -> str:
    text = 'null' if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + '...'
