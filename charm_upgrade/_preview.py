# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What an upgrade step would do now, read with no side effect.

A preview reads the services' current state (``systemctl show``, snapd's
service list), the flags, the recorded before-state and the base, and says
what the next step would do to each service, which migrations would run, and
what disruption to expect. It writes nothing: no record, no journal line, no
flag. Charms expose it through an action (``preview-upgrade`` in the example
charm) so the operator can look before running ``prepare`` or ``complete``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._journal import one_line

__all__ = ['Preview', 'ServicePreview']


@dataclasses.dataclass(frozen=True)
class ServicePreview:
    """One service in a preview.

    Attributes:
        name: The unit or ``snap.app`` name.
        enabled: Whether it is enabled now (for systemd: what ``is-enabled`` says).
        running: Whether it is running now.
        action: What the step would do to it, in words (``stop, disable, hold``).
    """

    name: str
    enabled: str
    running: bool
    action: str


@dataclasses.dataclass(frozen=True)
class Preview:
    """What the next upgrade step would do.

    Attributes:
        step: ``series-prepare``, ``series-complete``, ``snap-refresh`` or ``nothing``.
        summary: One sentence for the operator.
        services: Each service, its state now and what would happen to it.
        current_base: The machine's base now, if known.
        target_base: The base being upgraded to, if known.
        revision_from: The snap revision installed now (refresh previews).
        revision_to: The snap revision a refresh would install.
        pending_migrations: Ids of the migrations that would run.
        disruption: What the workload would go through, in words.
        before_state: The recorded before-state of the current upgrade, if any.
        callbacks: The charm's callbacks the step would call, in order, as
            ``kind: name`` (``before_take_down: drain``).
    """

    step: str
    summary: str
    services: tuple[ServicePreview, ...] = ()
    current_base: str | None = None
    target_base: str | None = None
    revision_from: str | None = None
    revision_to: str | None = None
    pending_migrations: tuple[str, ...] = ()
    disruption: str = 'none'
    before_state: dict[str, Any] | None = None
    callbacks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the preview as JSON-serialisable data (for action results)."""
        return dataclasses.asdict(self)

    def format(self) -> str:
        """Return the preview as lines of text a person reads at a glance.

        One line per item: text that spans lines (snapd's errors do) has its
        lines joined with a slash.
        """
        lines = [f'{self.step}: {one_line(self.summary)}']
        if self.current_base or self.target_base:
            lines.append(f'base: {self.current_base or "?"} -> {self.target_base or "?"}')
        if self.revision_from or self.revision_to:
            lines.append(
                f'snap revision: {self.revision_from or "?"} -> {self.revision_to or "?"}'
            )
        for service in self.services:
            state = ('running' if service.running else 'stopped') + f', {service.enabled}'
            lines.append(f'  {service.name} ({state}): {one_line(service.action)}')
        if self.pending_migrations:
            lines.append('migrations: ' + one_line(', '.join(self.pending_migrations)))
        if self.callbacks:
            lines.append('callbacks: ' + one_line(', '.join(self.callbacks)))
        lines.append(f'disruption: {one_line(self.disruption)}')
        if self.before_state:
            lines.append('before: ' + one_line(_before_line(self.before_state)))
        return '\n'.join(lines)


def _before_line(record: dict[str, Any]) -> str:
    # One line from either before-state record: a refresh's (revision, channel,
    # services) or a series upgrade's (old base, services by group).
    parts = [f'recorded {record.get("recorded_at", "?")}']
    if record.get('revision'):
        channel = record.get('channel') or 'no channel'
        parts.append(f'revision {record["revision"]} ({channel})')
    if record.get('old_base'):
        parts.append(f'base {record["old_base"]}')
    services: dict[str, Any] = record.get('services') or {}
    running = [n for n, s in services.items() if isinstance(s, dict) and s.get('active')]  # pyright: ignore[reportUnknownMemberType]
    if 'revision' in record:
        parts.append('active: ' + (', '.join(running) or 'none'))
    return ', '.join(parts)
