# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""An append-only journal of upgrade stages, one JSON object per line.

Each stage of a series upgrade or a snap refresh writes a ``start`` record,
then an ``ended`` or a ``failed`` one. A ``start`` with neither after it means
the process died in that stage. Records look like::

    {"v": 1, "ts": "2026-11-24T10:00:00.123456Z", "stage": "services-down",
     "event": "ended", "duration": 0.412, "details": {"services": ["myapp.service"]}}

The journal is a record for people, not a source of truth: a journal that
cannot be written logs a warning and never fails the upgrade.

Each line is written with one ``write(2)`` of the whole line on an
``O_APPEND`` descriptor, checked, and fsynced. A short write (a full disk) is
reported as a warning, and the next record starts on a new line: a torn line
never swallows the record after it, and a reader skips it alone. A journal
that cannot be read (a directory at its path, no permission) is reported, and
reads as what could be read. The file is bounded: when a line would take it past ``max_bytes``, it
is renamed to ``journal.jsonl.1`` (replacing the previous one) and a new file
begins, so the newest entries are always kept, at most twice ``max_bytes`` in
all. :meth:`Journal.timeline` pairs the records into stages (start, duration,
result); a ``start`` with no end reads as ``interrupted``.

Format versions: ``v`` is 1 in every record written so far. A record without
``v`` reads as version 1; keys a reader does not know are ignored, so newer
records stay readable by older code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import pathlib
import time
from typing import TYPE_CHECKING, Any

from . import _clock, _state

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping

__all__ = [
    'DEFAULT_MAX_BYTES',
    'JOURNAL_FORMAT_VERSION',
    'Journal',
    'JournalRead',
    'JournalRecord',
    'StageTimer',
    'TimelineEntry',
    'build_timeline',
    'format_record',
    'format_timeline',
    'one_line',
    'read_journal',
]

logger = logging.getLogger(__name__)

JOURNAL_FORMAT_VERSION = 1
"""The value of every record's ``v`` key; it changes only if a key changes meaning."""

_JOURNAL_NAME = 'journal.jsonl'

DEFAULT_MAX_BYTES = 1024 * 1024
"""The size past which the journal rotates: about 3,000 records."""

JournalRecord = dict[str, Any]
"""One decoded journal line."""


class Journal:
    """An append-only JSON-lines journal in the unit's state directory.

    Args:
        path: Where the journal lives; by default ``journal.jsonl`` in the
            unit's state directory (see :ref:`state-dir`).
        max_bytes: The size past which the file rotates to ``<path>.1``
            (replacing the older one); 0 for no bound.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
    ):
        self._path = pathlib.Path(path) if path is not None else None
        self.max_bytes = max_bytes

    @property
    def path(self) -> pathlib.Path:
        """The journal file's path."""
        if self._path is None:
            self._path = _state.state_dir() / _JOURNAL_NAME
        return self._path

    @property
    def rotated_path(self) -> pathlib.Path:
        """Where the older entries go when the journal rotates (``<path>.1``)."""
        return self.path.with_name(self.path.name + '.1')

    def write(
        self,
        stage: str,
        event: str,
        *,
        duration: float | None = None,
        error: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one record; log a warning instead of raising if that fails.

        Args:
            stage: The stage's name, such as ``services-down``.
            event: ``start``, ``ended`` or ``failed``.
            duration: Seconds the stage took, for ``ended`` and ``failed``.
            error: What went wrong, for ``failed``.
            details: Anything else worth keeping; must be JSON-serialisable.
        """
        record: JournalRecord = {
            'v': JOURNAL_FORMAT_VERSION,
            'ts': _clock.utc_now(),
            'stage': stage,
            'event': event,
        }
        if duration is not None:
            record['duration'] = round(duration, 6)
        if error is not None:
            record['error'] = error
        if details:
            record['details'] = dict(details)
        try:
            line = (json.dumps(record, sort_keys=True, default=str) + '\n').encode()
            self._append(line)
        except (OSError, TypeError, ValueError) as e:
            logger.warning(
                'Could not write to the upgrade journal %s: %s', self._path or _JOURNAL_NAME, e
            )

    def _append(self, line: bytes) -> None:
        # One write(2) of the whole line on an O_APPEND descriptor: a line is
        # never interleaved with another writer's.
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if self.max_bytes and size and size + len(line) > self.max_bytes:
                # Rename, not rewrite: O(1), and a crash leaves one file or
                # the other complete.
                os.close(fd)
                fd = -1
                os.replace(self.path, self.rotated_path)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                size = 0
            if size and os.pread(fd, 1, size - 1) != b'\n':
                # A torn last line (a crash, a full disk): end it, so that
                # this record stays a line of its own.
                line = b'\n' + line
            written = os.write(fd, line)
            if written != len(line):
                # A full disk took part of the line. The next record starts
                # on a new line (above), so only this one is lost.
                raise OSError(
                    f'short write: {written} of {len(line)} bytes (is the disk full?); this '
                    'record is lost'
                )
            os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)

    @contextlib.contextmanager
    def stage(self, stage: str, **details: Any) -> Generator[StageTimer]:
        """Journal a stage around a block: ``start``, then ``ended`` or ``failed``.

        The block may add details for the closing record through the yielded
        :class:`StageTimer`. An exception is journaled with its message and
        propagates unchanged.

        Example::

            with journal.stage('services-down', services=names) as timer:
                take_down()
                timer.details['stopped'] = stopped
        """
        self.write(stage, 'start', details=details)
        timer = StageTimer()
        try:
            yield timer
        except BaseException as e:
            self.write(
                stage,
                'failed',
                duration=timer.elapsed(),
                error=f'{type(e).__name__}: {e}',
                details=timer.details,
            )
            raise
        self.write(stage, 'ended', duration=timer.elapsed(), details=timer.details)

    def read(self) -> list[JournalRecord]:
        """Return every readable record, oldest first, the rotated file's first.

        A line that is not a JSON object (a torn line after a crash) is
        skipped with a warning; a record written after a torn fragment on the
        same line (by an older version) is recovered. A file that cannot be
        read (a directory at its path, no permission) is skipped with a
        warning: :func:`read_journal` says what was skipped.
        """
        return read_journal(self).records

    def timeline(self) -> list[TimelineEntry]:
        """Return the stages, oldest first: each start paired with its end.

        An ``ended`` or ``failed`` record closes the latest open ``start`` of
        the same stage (stages nest: ``series-prepare`` holds
        ``services-down``). A ``start`` that nothing closes reads as
        ``interrupted``: the process died in that stage, or, if the journal
        is read during a hook, the stage is still running. An end whose start
        was rotated away still makes an entry.
        """
        return build_timeline(self.read())


class StageTimer:
    """Measures one journaled stage and collects details for its closing record."""

    def __init__(self):
        self._start = time.monotonic()
        self.details: dict[str, Any] = {}
        """Details to write with the stage's ``ended`` or ``failed`` record."""

    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.monotonic() - self._start


@dataclasses.dataclass
class TimelineEntry:
    """One stage of the timeline.

    Attributes:
        stage: The stage's name, such as ``snap-refresh``.
        start: When it started (UTC, as journaled), or None if unknown.
        duration: Seconds it took, or None if it did not end.
        result: ``ended``, ``failed`` or ``interrupted``.
        error: What went wrong, for ``failed``.
        details: The start's details updated with the end's.
    """

    stage: str
    start: str | None
    duration: float | None
    result: str
    error: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as JSON-serialisable data."""
        return dataclasses.asdict(self)


def build_timeline(records: list[JournalRecord]) -> list[TimelineEntry]:
    """Pair journal records into stages; see :meth:`Journal.timeline`."""
    entries: list[TimelineEntry] = []
    open_stages: dict[str, list[TimelineEntry]] = {}
    for record in records:
        stage, event = record.get('stage'), record.get('event')
        if not isinstance(stage, str) or not isinstance(event, str):
            continue
        raw: Any = record.get('details')
        details: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}  # pyright: ignore[reportUnknownArgumentType]
        ts = record.get('ts') if isinstance(record.get('ts'), str) else None
        if event == 'start':
            entry = TimelineEntry(stage, ts, None, 'interrupted', details=details)
            entries.append(entry)
            open_stages.setdefault(stage, []).append(entry)
            continue
        if event not in ('ended', 'failed'):
            continue  # an event a newer version added: not a stage boundary here
        duration = record.get('duration')
        duration = float(duration) if isinstance(duration, (int, float)) else None
        stack = open_stages.get(stage)
        if stack:
            entry = stack.pop()
        else:
            entry = TimelineEntry(stage, _start_of(ts, duration), None, event)
            entries.append(entry)
        entry.duration = duration
        entry.result = event
        entry.details.update(details)
        error = record.get('error')
        entry.error = str(error) if error is not None else None
    return entries


def format_timeline(entries: list[TimelineEntry]) -> str:
    """Return the timeline as a text table: start, stage, duration, result.

    One row per stage: a stage that acts on one group of services names it
    and the upgrade it belongs to (``services-down systemd:myapp.service
    (series upgrade ubuntu@22.04 -> ubuntu@24.04)``), and a failed stage's
    error follows its result on the same row, its lines joined with a slash
    (the journal keeps the error as it was).
    """
    rows = [('START (UTC)', 'STAGE', 'DURATION', 'RESULT')]
    for entry in entries:
        start = one_line((entry.start or '?').replace('T', ' ').rstrip('Z')[:23])
        took = '-' if entry.duration is None else f'{entry.duration:.3f} s'
        result = entry.result + (f': {one_line(entry.error)}' if entry.error else '')
        rows.append((start, _stage_label(entry.stage, entry.details), took, one_line(result)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return '\n'.join(
        f'{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}'
        for row in rows
    )


def format_record(record: JournalRecord) -> str:
    """Return one journal record as one line: time, stage, event, duration, error.

    A stage that acts on one group of services names it and its upgrade, as
    :func:`format_timeline` does; an error's lines are joined with a slash.
    """
    duration = record.get('duration')
    took = f' ({duration:.3f} s)' if isinstance(duration, (int, float)) else ''
    error = record.get('error')
    error_text = f': {error}' if error is not None else ''
    raw: Any = record.get('details')
    details: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}  # pyright: ignore[reportUnknownArgumentType]
    stage = _stage_label(str(record.get('stage')), details)
    return one_line(f'{record.get("ts")} {stage} {record.get("event")}{took}{error_text}')


def one_line(text: str) -> str:
    """Return ``text`` on one line: its non-blank lines, stripped, joined with ``' / '``.

    snapd's change errors span lines (``cannot perform the following tasks:``
    then one ``- ...`` line per task); a table row or a status must not.
    """
    return ' / '.join(line.strip() for line in text.splitlines() if line.strip())


def _stage_label(stage: str, details: Mapping[str, Any]) -> str:
    # services-down and services-up name their group, and the upgrade they belong to.
    group, upgrade = details.get('group'), details.get('upgrade')
    label = f'{stage} {group}' if isinstance(group, str) and group else stage
    if isinstance(upgrade, str) and upgrade:
        label += f' ({upgrade})'
    return one_line(label)


def _start_of(ts: str | None, duration: float | None) -> str | None:
    if ts is None or duration is None:
        return ts
    end = _clock.parse_timestamp(ts)
    if end is None:
        return ts
    return (end - datetime.timedelta(seconds=duration)).strftime(_clock.TIMESTAMP_FORMAT)


@dataclasses.dataclass
class JournalRead:
    """What :func:`read_journal` found.

    Attributes:
        records: Every readable record, oldest first.
        unreadable: The files that could not be read, and why, one sentence each.
        skipped: The lines that were not records (torn by a crash), one sentence each.
    """

    records: list[JournalRecord] = dataclasses.field(default_factory=list[JournalRecord])
    unreadable: list[str] = dataclasses.field(default_factory=list[str])
    skipped: list[str] = dataclasses.field(default_factory=list[str])


def read_journal(journal: Journal) -> JournalRead:
    """Read both files of ``journal``, logging a warning for what cannot be read.

    Never raises for a damaged or unreadable journal: the journal is a
    record for people, and reading it must not fail a hook, a preview or the
    command line.
    """
    result = JournalRead()
    try:
        paths = [journal.rotated_path, journal.path]
    except OSError as e:  # the default path's state directory cannot be created
        result.unreadable.append(f'cannot find the journal: {e}')
    else:
        for path in paths:
            _read_file(path, result)
    for problem in result.unreadable + result.skipped:
        logger.warning('Upgrade journal: %s', problem)
    return result


def _read_file(path: pathlib.Path, result: JournalRead) -> None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as e:
        result.unreadable.append(f'cannot read {path}: {e.strerror or e}')
        return
    lines = data.decode('utf-8', errors='replace').split('\n')
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record, torn = _parse_line(line)
        if torn:
            result.skipped.append(f'skipping unreadable line {number} of {path}')
        if record is not None:
            result.records.append(record)


def _parse_line(line: str) -> tuple[JournalRecord | None, bool]:
    """Return a line's record, and whether part of it (a torn record) was skipped."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        return record, False  # pyright: ignore[reportUnknownVariableType]
    # A record appended to a torn one, on the same line (an older writer did
    # not end a torn line): recover the record that starts after the tear.
    start = line.find('{"', 1)
    while start != -1:
        try:
            recovered = json.loads(line[start:])
        except ValueError:
            start = line.find('{"', start + 1)
            continue
        if isinstance(recovered, dict):
            return recovered, True  # pyright: ignore[reportUnknownVariableType]
        break
    return None, True
