# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What the flows want the unit status to say, and whether the status shown is the library's.

Neither flow sets a status. Each says what it wants shown, a :class:`StatusIntent`,
computed from its records; the adapters hand the intent to the framework (ops'
collect-status, or charms.reactive's ``status_set``). When a flow no longer wants
anything shown, the adapter clears the unit status only if the
:class:`StatusLedger` says the status showing is the one the library set last:
ownership comes from that record, never from the text of a message.

:func:`workload_held` reads the same records to answer the one question a charm's
own handlers need: is the library holding the workload down now (a series upgrade
between prepare and complete, or a snap refresh between the stop and the start)?
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Literal, cast

from . import _state
from .errors import StateFileError

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterable

    import ops

__all__ = [
    'LEDGER_NAME',
    'MAX_MESSAGE',
    'StatusIntent',
    'StatusLedger',
    'most_important',
    'workload_held',
]

logger = logging.getLogger(__name__)

Level = Literal['blocked', 'maintenance', 'waiting', 'active']
"""The unit status levels the library uses."""

LEDGER_NAME = 'status.json'
"""File name, in the unit's state directory, of the status the library showed last."""

MAX_MESSAGE = 500
"""Longer messages are cut; snapd's error texts can run to many lines."""

# ops' collect-status order: the most important status is shown.
_RANK: dict[str, int] = {'blocked': 3, 'maintenance': 2, 'waiting': 1, 'active': 0}

# The records that say a flow holds the workload down (file name -> the phases that hold).
_SERIES_RECORD = 'series-upgrade.json'
_REFRESH_RECORD = 'snap-refresh.json'


@dataclasses.dataclass(frozen=True)
class StatusIntent:
    """A unit status a flow wants shown.

    Attributes:
        level: ``blocked`` (the operator must act), ``maintenance``, ``waiting`` or ``active``.
        message: What the operator reads: one line, cut to :data:`MAX_MESSAGE` characters.
        source: The flow that wants it: ``series`` or ``refresh``.
    """

    level: Level
    message: str
    source: str

    def __post_init__(self):
        # One line: snapd's errors list their tasks on lines of their own.
        message = ' '.join(self.message.split())
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + '...'
        object.__setattr__(self, 'message', message)

    def to_ops(self) -> ops.StatusBase:
        """Return the intent as an ops status."""
        import ops

        return ops.StatusBase.from_name(self.level, self.message)

    def matches(self, level: str, message: str) -> bool:
        """Whether a status shown with ``level`` and ``message`` is this one."""
        return (self.level, self.message) == (level, message)


def most_important(intents: Iterable[StatusIntent | None]) -> StatusIntent | None:
    """Return the intent ops' collect-status would show, the first of equals; None if none."""
    chosen: StatusIntent | None = None
    for intent in intents:
        if intent is not None and (chosen is None or _RANK[intent.level] > _RANK[chosen.level]):
            chosen = intent
    return chosen


class StatusLedger:
    """The record of the status the library showed last, in the unit's state directory.

    Args:
        path: The record's path; by default ``status.json`` in the unit's state directory.
    """

    def __init__(self, path: pathlib.Path | None = None):
        self._path = path

    @property
    def path(self) -> pathlib.Path:
        """The record's path."""
        return self._path or _state.state_dir() / LEDGER_NAME

    def shown(self) -> StatusIntent | None:
        """Return the status the library showed last and has not cleared, if any."""
        try:
            record = _state.read_json(self.path)
        except StateFileError as e:
            # Losing this record costs at most a status left for the charm to replace.
            logger.warning('Ignoring the status record: %s', e)
            return None
        if not isinstance(record, dict):
            return None
        fields: dict[str, object] = record  # pyright: ignore[reportUnknownVariableType]
        level, message, source = fields.get('level'), fields.get('message'), fields.get('source')
        if level not in _RANK or not isinstance(message, str) or not isinstance(source, str):
            return None
        return StatusIntent(cast('Level', level), message, source)

    def record(self, intent: StatusIntent) -> None:
        """Remember that the library shows ``intent`` now (written only when it changes)."""
        if self.shown() != intent:
            _state.write_json(self.path, dataclasses.asdict(intent))

    def owns(self, level: str, message: str) -> bool:
        """Whether the status showing (``level``, ``message``) is the one the library set."""
        shown = self.shown()
        return shown is not None and shown.matches(level, message)

    def forget(self) -> None:
        """Forget the library's status: it was cleared or replaced."""
        _state.remove(self.path)


def workload_held(state_dir: pathlib.Path | None = None) -> bool:
    """Whether the library holds the workload down now, from the unit's own records.

    True from the prepare of a series upgrade until its complete brought the services
    back, and from the stop of a snap refresh until the workload was started again. A
    charm guards its own handlers that start or restart the workload with it.

    Args:
        state_dir: The unit's state directory; by default the usual one.
    """
    directory = state_dir or _state.state_dir()
    series = _phase(directory / _SERIES_RECORD)
    refresh = _phase(directory / _REFRESH_RECORD)
    return series == 'prepared' or refresh not in (None, 'completed')


def _phase(path: pathlib.Path) -> str | None:
    # A damaged record counts as held: better a charm handler that waits than
    # one that starts services the library meant to keep down.
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return 'unreadable'
    try:
        record = json.loads(text)
    except ValueError:
        return 'unreadable'
    if not isinstance(record, dict):
        return 'unreadable'
    phase = record.get('phase')  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return phase if isinstance(phase, str) else 'unreadable'
