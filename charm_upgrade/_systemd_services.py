# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""systemd units as an upgrade takes them down and brings them back: :class:`SystemdServices`.

The record of each unit says what its enablement is made of, not only what
``systemctl is-enabled`` printed: its id and every name it has, its
``[Install]`` section, the symlinks in ``/etc/systemd/system`` named after it
(a ``systemctl link``, an alias, a mask) and those in ``<target>.wants/``
that start it at boot (from ``systemctl enable`` or an operator's
``add-wants``). Taking down removes only the last kind, so a linked unit
stays linked and an alias stays an alias; bringing back puts exactly those
links back. No ``systemctl enable``/``disable`` runs for a unit that is
still itself after the OS upgrade, so ``Also=`` never drags in a unit that
is not listed (see :mod:`charm_upgrade._systemd`).

What the OS upgrade changed is read again at complete, with one ``show``: a
unit that now answers to another id (the new unit carries ``Alias=old``) is
brought back as that unit, with ``systemctl enable`` or ``disable`` of its
new id; a unit that no longer exists is skipped and reported. Every unit
that can come back does, whatever happens to the others; the result says
which did not, and why.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from . import _systemd, _systemd_links
from ._services import BringBackResult, Services
from .errors import ServiceError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ._systemd import UnitState

__all__ = ['SystemdServices']

logger = logging.getLogger(__name__)

_TRIGGER_SUFFIXES = ('.socket', '.path')
_MAX_TRIGGER_WAIT = 30.0  # seconds: the default trigger-limit window is 2 s


class SystemdServices(Services):
    """systemd units of the application.

    Taking them down costs two ``systemctl`` calls after the ``show`` that
    records them (``daemon-reload`` and ``stop``), and bringing them back four
    (``show``, ``daemon-reload``, ``start``, and a last ``show`` that checks
    the result), whatever the number of units; plus one ``enable`` or
    ``disable`` when the OS upgrade renamed a unit. Units are held down with a
    drop-in (see :mod:`charm_upgrade._systemd`), which works for unit files in
    ``/etc/systemd/system`` where ``systemctl mask`` is refused.

    Some units cannot be held and brought back, and prepare refuses them with
    a :class:`~charm_upgrade.ServiceError` before anything is touched:

    - a unit with ``RefuseManualStop=yes``, which ``systemctl stop`` cannot stop;
    - a service started by a ``.socket`` or ``.path`` unit that is not listed
      too: while the service is held, the trigger fails at its first
      activation and stays failed. List the trigger, or pass
      ``allow_unlisted_triggers=True`` to have complete start the triggers
      that were running and are not any more (once their trigger limit's
      window has passed, after a ``reset-failed``: one more call).

    Args:
        names: Unit names as systemd knows them (``myapp.service``,
            ``myapp-worker.socket``); a name with no suffix means ``.service``.
            A template (``myapp@``) is not a unit: name its instances.
        allow_unlisted_triggers: Take down services whose socket or path
            trigger is not listed.

    Raises:
        ServiceError: ``names`` is empty, has duplicates, or has an invalid
            name or a template.

    Example::

        SystemdServices(['myapp', 'myapp-worker.socket'])
    """

    def __init__(self, names: Iterable[str], *, allow_unlisted_triggers: bool = False):
        if isinstance(names, str):
            names = [names]
        units = [_systemd.normalise_unit_name(name) for name in names]
        if not units:
            raise ServiceError('SystemdServices needs at least one unit name')
        duplicates = sorted({u for u in units if units.count(u) > 1})
        if duplicates:
            raise ServiceError(f'SystemdServices got these units more than once: {duplicates}')
        self._units = units
        self._allow_unlisted_triggers = allow_unlisted_triggers

    def __repr__(self) -> str:
        extra = ', allow_unlisted_triggers=True' if self._allow_unlisted_triggers else ''
        return f'SystemdServices({self._units!r}{extra})'

    @property
    def key(self) -> str:
        """``systemd:`` followed by the unit names."""
        return 'systemd:' + ','.join(self._units)

    @property
    def names(self) -> list[str]:
        """The full unit names."""
        return list(self._units)

    # Prepare ------------------------------------------------------------------------------

    def read_state(self) -> dict[str, Any]:
        """Read every unit's state and enablement, with one ``systemctl show``.

        Raises:
            ServiceError: systemd knows no unit of one of the names, or a unit
                cannot be held and brought back (see the class).
            SystemdError: ``systemctl`` failed or is missing.
        """
        states = _systemd.show(self._units)
        self._refuse(states)
        triggers = self._unlisted_triggers(states)
        trigger_states = _systemd.show(triggers) if triggers else {}
        links = _systemd_links.enablement_links(
            {s.id: s.names or (s.id,) for s in states.values()}
        )
        units: dict[str, Any] = {}
        for name, state in states.items():
            late = _systemd.dropins_after_hold(state)
            if late:
                logger.warning(
                    'These drop-ins of %s come after the hold and may undo it (an empty '
                    'Condition...= resets the conditions): %s; rename them to sort before %s',
                    state.id,
                    ', '.join(late),
                    _systemd.HOLD_DROPIN_NAME,
                )
            unit_links = links[state.id]
            units[name] = {
                'id': state.id,
                'names': list(state.names or (state.id,)),
                'is_enabled': state.unit_file_state,
                'running': state.running,
                'fragment': state.fragment_path,
                'install': _systemd_links.install_section(state.fragment_path),
                'links': unit_links.names,
                'wants': unit_links.wants,
                'refuse_manual_start': state.refuse_manual_start,
                **({'dropins_after_hold': late} if late else {}),
            }
        record: dict[str, Any] = {'kind': 'systemd', 'units': units}
        if self._allow_unlisted_triggers:
            record['allow_unlisted_triggers'] = True
            record['triggers'] = {t: s.running for t, s in trigger_states.items()}
        return record

    def _refuse(self, states: Mapping[str, UnitState]) -> None:
        unknown = [name for name, state in states.items() if not state.exists]
        if unknown:
            raise ServiceError(
                f'systemd knows no unit named {", ".join(unknown)}; check the names given to '
                'SystemdServices, and that the charm installed the unit files first'
            )
        unstoppable = [s.id for s in states.values() if s.refuse_manual_stop]
        if unstoppable:
            raise ServiceError(
                f'{", ".join(unstoppable)} refuse a manual stop (RefuseManualStop=yes), so they '
                'cannot be taken down; list the units that pull them in instead'
            )
        if not self._allow_unlisted_triggers:
            unlisted = self._unlisted_triggers(states)
            if unlisted:
                raise ServiceError(
                    f'{", ".join(unlisted)} start listed services but are not listed: while the '
                    'services are held, a trigger fails at its first activation and stays failed. '
                    'List them in the same SystemdServices, or pass allow_unlisted_triggers=True'
                )

    def _unlisted_triggers(self, states: Mapping[str, UnitState]) -> list[str]:
        listed = {name for state in states.values() for name in (state.id, *state.names)}
        listed.update(self._units)
        return sorted(
            {
                trigger
                for state in states.values()
                for trigger in state.triggered_by
                if trigger.endswith(_TRIGGER_SUFFIXES) and trigger not in listed
            }
        )

    def take_down(self, before: Mapping[str, Any]) -> None:
        """Remove the units' boot links, hold them, stop them all.

        The hold and the removed links take effect with one ``daemon-reload``,
        before the stop: nothing can start a unit again between its stop and
        the end of the hook.
        """
        units = _units_of(before, self._units)
        ids = [units[name]['id'] for name in self._units]
        if any('wants' not in unit for unit in units.values()):
            # Recorded by a version that kept no links: disable as it did.
            _systemd.hold(ids)
            enabled = [units[name]['id'] for name in self._units if _was_enabled(units[name])]
            if enabled:
                _systemd.systemctl('disable', '--', *enabled)
        else:
            _systemd_links.remove_links(link for unit in units.values() for link in unit['wants'])
            _systemd.hold(ids)
        _systemd.systemctl('stop', '--', *ids)

    # Complete -----------------------------------------------------------------------------

    def bring_back(self, before: Mapping[str, Any]) -> BringBackResult:
        """Put each unit back as recorded; skip what cannot come back, and say why.

        Raises:
            SystemdError: ``systemctl`` is missing or a ``show`` or
                ``daemon-reload`` failed (a failing ``start`` does not raise:
                the last ``show`` tells which units it did not start).
        """
        units = _units_of(before, self._units)
        if any('wants' not in unit for unit in units.values()):
            return self._bring_back_without_links(units)
        result = BringBackResult()
        triggers: dict[str, bool] = dict(before.get('triggers') or {})
        now = _systemd.show([*self._units, *triggers])
        present = self._present(units, now, result)
        self._restore_enablement(units, now, present, result)
        _systemd.release({units[name]['id'] for name in self._units} | set(present.values()))
        start = [
            present[name]
            for name in present
            if units[name]['running']
            and now[name].load_state != 'masked'
            and not (units[name].get('refuse_manual_start') or now[name].refuse_manual_start)
        ]
        # An unlisted trigger that activated while its service was held has
        # failed on its trigger limit. systemd 257 keeps the limit's window
        # across reset-failed and start: a trigger started within it fails at
        # its first activation again. So wait for the window to end.
        restart = [t for t, was_running in triggers.items() if was_running and not now[t].running]
        if restart:
            window_ends = max(
                now[t].state_changed_at + now[t].trigger_limit_interval for t in restart
            )
            time.sleep(min(max(window_ends - time.monotonic(), 0.0), _MAX_TRIGGER_WAIT))
            _systemd.try_systemctl('reset-failed', '--', *restart)
        start += restart
        failure = _systemd.try_systemctl('start', '--', *start) if start else None
        after = _systemd.show([*(present[name] for name in present), *restart])
        for name, unit_id in present.items():
            reason = _why_not_restored(units[name], now[name], after[unit_id], failure)
            if reason:
                result.skipped[name] = reason
        for trigger in restart:
            if not after[trigger].running:
                detail = (
                    _stderr_line(failure, trigger) or f'ActiveState={after[trigger].active_state}'
                )
                result.skipped[trigger] = (
                    f'a trigger that failed while held, not started ({detail})'
                )

        for name, reason in result.skipped.items():
            logger.warning('%s was not brought back as recorded: %s', name, reason)
        return result

    def _present(
        self,
        units: Mapping[str, dict[str, Any]],
        now: Mapping[str, UnitState],
        result: BringBackResult,
    ) -> dict[str, str]:
        """Each listed unit that can come back -> the id it has now."""
        present: dict[str, str] = {}
        for name in self._units:
            unit, state = units[name], now[name]
            if state.exists:
                present[name] = state.id
                if state.id != unit['id']:
                    result.renamed[name] = state.id
                continue
            names = {k: v for k, v in unit['links'].items() if v != '/dev/null'}
            if names and all(os.path.exists(target) for target in names.values()):
                # A linked unit whose link someone removed: its file is still there.
                present[name] = unit['id']
            else:
                result.skipped[name] = 'no longer exists after the OS upgrade: skipped'
        return present

    def _restore_enablement(
        self,
        units: Mapping[str, dict[str, Any]],
        now: Mapping[str, UnitState],
        present: Mapping[str, str],
        result: BringBackResult,
    ) -> None:
        # Links first, the way the record has them; "disable" (links no longer
        # wanted) before "enable" (links put back).
        same = {name: present[name] for name in present if name not in result.renamed}
        current = _systemd_links.enablement_links(
            {
                present[name]: now[name].names if name in result.renamed else units[name]['names']
                for name in present
            }
        )
        stale = [
            link
            for name, unit_id in same.items()
            for link in current[unit_id].wants
            if link not in units[name]['wants']
        ]
        _systemd_links.remove_links(stale)
        wanted: dict[str, str] = {}
        for name in same:
            wanted.update(units[name]['links'])
            wanted.update(units[name]['wants'])
        dangling = set(_systemd_links.create_links(wanted))
        for name in same:
            missing = sorted(dangling & {*units[name]['links'], *units[name]['wants']})
            if missing:
                result.skipped[name] = f'links not put back, their targets are gone: {missing}'
        # A renamed unit: its recorded links were the old unit's, so it is
        # enabled or disabled by its new id, if its boot links say otherwise
        # (is-enabled would count an alias link as enabled).
        renamed = {name: present[name] for name in result.renamed}
        disable = [
            unit_id
            for name, unit_id in renamed.items()
            if units[name]['is_enabled'] == 'disabled' and current[unit_id].wants
        ]
        enable = [
            unit_id
            for name, unit_id in renamed.items()
            if _was_enabled(units[name]) and not current[unit_id].wants
        ]
        for verb, ids in (('disable', disable), ('enable', enable)):
            if ids:
                failure = _systemd.try_systemctl(verb, '--no-reload', '--', *ids)
                if failure is not None:
                    logger.warning('Could not %s %s: %s', verb, ', '.join(ids), failure)

    def _bring_back_without_links(self, units: Mapping[str, dict[str, Any]]) -> BringBackResult:
        # A record from a version that kept no links: bring back as it did.
        _systemd.release([units[name]['id'] for name in self._units])
        enabled = [units[name]['id'] for name in self._units if _was_enabled(units[name])]
        if enabled:
            _systemd.systemctl('enable', '--', *enabled)
        disabled = [
            units[name]['id'] for name in self._units if units[name]['is_enabled'] == 'disabled'
        ]
        if disabled:
            _systemd.systemctl('disable', '--', *disabled)
        running = [units[name]['id'] for name in self._units if units[name]['running']]
        if running:
            _systemd.systemctl('start', '--', *running)
        return BringBackResult()


def _why_not_restored(
    unit: Mapping[str, Any],
    before_start: UnitState,
    after: UnitState,
    failure: Exception | None,
) -> str:
    """Say why a unit is not as recorded after bring-back, or ``''`` if it is."""
    reasons: list[str] = []
    if unit['running'] and not after.running:
        if before_start.load_state == 'masked' or after.load_state == 'masked':
            reasons.append('masked, so not started')
        elif unit.get('refuse_manual_start') or after.refuse_manual_start:
            reasons.append('refuses a manual start (RefuseManualStart=yes) and nothing started it')
        else:
            detail = _stderr_line(failure, after.id)
            reasons.append(f'did not start ({detail or f"ActiveState={after.active_state}"})')
    recorded = unit['is_enabled']
    if after.id != unit['id']:
        if _was_enabled(unit) != after.enabled and recorded in ('enabled', 'disabled'):
            reasons.append(f'{after.id} is {after.unit_file_state}, {unit["id"]} was {recorded}')
    elif after.unit_file_state != recorded and after.load_state != 'masked':
        reasons.append(f'is {after.unit_file_state or "unknown"}, was {recorded}')
    return '; '.join(reasons)


def _stderr_line(failure: Exception | None, unit_id: str) -> str:
    stderr = getattr(failure, 'stderr', '') or ''
    return next((line.strip() for line in stderr.splitlines() if unit_id in line), '')


def _units_of(before: Mapping[str, Any], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    units = before.get('units')
    if not isinstance(units, dict) or any(name not in units for name in names):
        raise ServiceError(
            f'the recorded before-state does not cover the units {list(names)}; the service '
            'list changed during the upgrade: restore the list or remove the record'
        )
    return units  # pyright: ignore[reportUnknownVariableType]


def _was_enabled(unit: Mapping[str, Any]) -> bool:
    return unit.get('is_enabled') == 'enabled'
