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
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import pathlib
import time
from typing import TYPE_CHECKING, Any

from . import _state

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping

__all__ = ['JOURNAL_FORMAT_VERSION', 'Journal', 'JournalRecord', 'StageTimer']

logger = logging.getLogger(__name__)

JOURNAL_FORMAT_VERSION = 1
"""The value of every record's ``v`` key; it changes only if a key changes meaning."""

_JOURNAL_NAME = 'journal.jsonl'

JournalRecord = dict[str, Any]
"""One decoded journal line."""


class Journal:
    """An append-only JSON-lines journal in the unit's state directory.

    Args:
        path: Where the journal lives; by default ``journal.jsonl`` in the
            unit's state directory (see :ref:`state-dir`).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self._path = pathlib.Path(path) if path is not None else None

    @property
    def path(self) -> pathlib.Path:
        """The journal file's path."""
        if self._path is None:
            self._path = _state.state_dir() / _JOURNAL_NAME
        return self._path

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
            'ts': _utc_now(),
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
            line = json.dumps(record, sort_keys=True, default=str) + '\n'
            # One write(2) on an O_APPEND descriptor: a line is never interleaved
            # with another writer's, and a crash leaves at most one torn last line.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except (OSError, TypeError, ValueError) as e:
            logger.warning('Could not write to the upgrade journal %s: %s', self._path, e)

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
        """Return every readable record, oldest first.

        A line that is not a JSON object (a torn last line after a crash) is
        skipped with a warning.
        """
        try:
            lines = self.path.read_text(encoding='utf-8', errors='replace').splitlines()
        except FileNotFoundError:
            return []
        records: list[JournalRecord] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                logger.warning('Skipping unreadable line %d of %s', number, self.path)
                continue
            records.append(record)  # pyright: ignore[reportUnknownArgumentType]
        return records


class StageTimer:
    """Measures one journaled stage and collects details for its closing record."""

    def __init__(self):
        self._start = time.monotonic()
        self.details: dict[str, Any] = {}
        """Details to write with the stage's ``ended`` or ``failed`` record."""

    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.monotonic() - self._start


def _utc_now() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime('%Y-%m-%dT%H:%M:%S.%fZ')
