# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Kill points: a hook killed after the library ran a given number of its own lines.

A unit's hook can die anywhere (SIGKILL, the OOM killer, a restarted agent). To test
that an upgrade converges from every such point, :class:`LineCounter` counts the lines
of charm-upgrade's own code (not the test kit's) that an event runs, and can raise
:class:`HookKilled` at the n-th. ``HookKilled`` is a ``BaseException``, so the library's
``except Exception`` recovery does not run, as it would not after a real kill; what
was written to disk stays, and snapd's changes go on.
"""

from __future__ import annotations

import gc
import pathlib
import sys
import traceback
import warnings
from typing import TYPE_CHECKING, Any

from .. import _lock

if TYPE_CHECKING:
    from types import FrameType, TracebackType

__all__ = ['HookKilled', 'LineCounter', 'close_what_the_kill_left']

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]
_KIT = pathlib.Path(__file__).resolve().parent


class HookKilled(BaseException):
    """The hook was killed (simulated) after the library ran ``line`` of its lines.

    Attributes:
        line: How many lines of the library's code had run.
        where: The file and line number it was about to run.
    """

    def __init__(self, line: int, where: str):
        super().__init__(f'hook killed at library line {line} ({where})')
        self.line = line
        self.where = where


def _is_library(filename: str) -> bool:
    # Decided once per code object: the trace function is on every call's path.
    path = pathlib.Path(filename)
    return path.is_relative_to(_PACKAGE) and not path.is_relative_to(_KIT)


class LineCounter:
    """Counts the library's lines run in a block, and kills the block at one of them.

    Args:
        kill_at: The line (1 for the first) at which to raise :class:`HookKilled`;
            None only counts.
    """

    def __init__(self, kill_at: int | None = None):
        if kill_at is not None and kill_at < 1:
            raise ValueError(f'kill_at must be 1 or more, not {kill_at}')
        self.kill_at = kill_at
        self.count = 0
        self._library: dict[str, bool] = {}
        self._previous: Any = None

    def __enter__(self) -> LineCounter:
        self._previous = sys.gettrace()
        sys.settrace(self._on_call)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.settrace(self._previous)

    def _on_call(self, frame: FrameType, event: str, arg: object) -> Any:
        filename = frame.f_code.co_filename
        library = self._library.get(filename)
        if library is None:
            library = self._library[filename] = _is_library(filename)
        return self._on_line if library else None

    def _on_line(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == 'line':
            self.count += 1
            if self.count == self.kill_at:
                # Raised into the traced frame, as if the process stopped on that line.
                raise HookKilled(self.count, f'{frame.f_code.co_filename}:{frame.f_lineno}')
        return self._on_line


def close_what_the_kill_left(killed: HookKilled) -> HookKilled:
    """Free what the killed frames held, as the end of a process would; return a bare copy.

    A killed process has its files closed by the kernel. Here the frames of the killed
    event still hold them (a file opened in a ``with`` statement whose exit never ran):
    clear those frames so the files close now, without the warning of a file left open,
    which a real kill would not give either.
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        traceback.clear_frames(killed.__traceback__)
        killed.__traceback__ = None
        gc.collect()
    _lock.forget_process_locks()
    return HookKilled(killed.line, killed.where)
