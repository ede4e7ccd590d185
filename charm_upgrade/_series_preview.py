# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What the next step of a series upgrade would do: :func:`series_preview`.

Read with no side effect: the services' state now (for prepare) or as
recorded (for complete), the flags, the base, the pending migrations and the
charm's callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _bases
from ._preview import Preview, ServicePreview

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._series_flow import SeriesUpgradeFlow

__all__ = ['callback_name', 'series_preview']


def series_preview(flow: SeriesUpgradeFlow, *, target_base: str | None = None) -> Preview:
    """Say what the flow's next step would do; see :meth:`SeriesUpgradeFlow.preview`."""
    current = _bases.current_base()
    record = flow.read_record() if flow.flags.is_set(flow.disabled_flag) else None
    if record is not None and record.phase == 'prepared':
        rows = [
            ServicePreview(name, enabled, running, _up_action(enabled, running))
            for state in record.services.values()
            for name, enabled, running in _rows(state)
        ]
        return Preview(
            step='series-complete',
            summary='bring the services back as they were before the upgrade',
            services=tuple(rows),
            current_base=current,
            target_base=record.target_base or current,
            pending_migrations=() if record.migrated else flow.pending_migrations(),
            disruption='services start again after the migration',
            before_state=record.to_json(),
            callbacks=_callbacks(after_bring_back=flow.after_bring_back),
        )
    if not flow.is_started():
        return Preview(
            step='series-prepare',
            summary='the services were never started: prepare leaves them alone',
            current_base=current,
            target_base=target_base,
        )
    rows = [
        ServicePreview(name, enabled, running, _down_action(enabled, running))
        for group in flow.services
        for name, enabled, running in _rows(group.read_state())
    ]
    return Preview(
        step='series-prepare',
        summary='stop the services and hold them down until complete',
        services=tuple(rows),
        current_base=current,
        target_base=target_base,
        pending_migrations=flow.pending_migrations(),
        disruption='every service listed is down from prepare until complete, across reboots',
        callbacks=_callbacks(
            before_take_down=flow.before_take_down, after_bring_back=flow.after_bring_back
        ),
    )


def callback_name(callback: Callable[..., object]) -> str:
    """A callback's name, for the journal and the preview."""
    return getattr(callback, '__name__', None) or repr(callback)


def _callbacks(**callbacks: Callable[..., object] | None) -> tuple[str, ...]:
    return tuple(
        f'{kind}: {callback_name(cb)}' for kind, cb in callbacks.items() if cb is not None
    )


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
