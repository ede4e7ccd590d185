# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Every private ops.testing (Scenario) internal that the refresh harness relies on.

The harness answers charm-refresh's hook-tool subprocesses through the same model backend that
ops uses in that run, so that the output :class:`ops.testing.State` shows charm-refresh's writes
(statuses, relation data, workload version, action results and failures). Scenario has no public
way to reach that backend, so this module reaches in; ``ops[testing]`` is pinned by the package,
and nothing else in :mod:`charm_upgrade.testing` touches a private Scenario name.

Checked against ops 3.9.0 / ops-scenario 8.9.0:

- ``scenario._ops_main_mock._MockModelBackend``: the module global that ``Ops.__init__`` calls
  with keyword arguments (``state``, ``event``, ``context``, ``charm_spec``, ``juju_context``) to
  build the backend for one run. Swapped for a factory while a harness run is in progress.
- ``scenario.mocking._MockModelBackend``: subclassed; its ``_state`` (the run's output State,
  mutated in place), ``_event`` (the event being run, with ``.action.params``) and
  ``_charm_spec`` (``.actions``) are read.
- ``Context._charm_spec`` (``.meta``, ``.actions``, ``.config``) and ``_Event.name`` /
  ``_Event.relation_remote_unit_id``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import TYPE_CHECKING, Any

from scenario import _ops_main_mock
from scenario.mocking import _MockModelBackend

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Mapping

    from ops import testing
    from scenario.state import _Event

__all__ = [
    'Backend',
    'capture_backends',
    'charm_actions',
    'charm_meta',
    'event_name',
    'event_remote_unit',
]


class Backend(_MockModelBackend):
    """Scenario's model backend, plus what Juju does and Scenario does not: action defaults."""

    @property
    def state(self) -> testing.State:
        """The run's output State, which the backend updates in place."""
        return self._state

    @property
    def action_name(self) -> str | None:
        """The name of the action being run, or None for a hook."""
        action = self._event.action
        return action.name if action is not None else None

    def action_get(self) -> dict[str, Any]:
        """The action's parameters, with the defaults from the charm's actions filled in."""
        params: dict[str, Any] = dict(super().action_get())
        name = self.action_name
        actions: Mapping[str, Any] = self._charm_spec.actions or {}
        spec: Mapping[str, Any] = actions.get(name, {}) if name is not None else {}
        declared: Mapping[str, Any] = spec.get('params') or {}
        for key, param in declared.items():
            if key not in params and isinstance(param, dict) and 'default' in param:
                params[key] = copy.deepcopy(param['default'])  # pyright: ignore[reportUnknownArgumentType]
        return params


@contextlib.contextmanager
def capture_backends(sink: Callable[[Backend], None]) -> Generator[None, None, None]:
    """Build every run's backend as a :class:`Backend` and hand it to ``sink``.

    Args:
        sink: called with the backend of each run that starts inside the block.

    Yields:
        None.
    """
    original = _ops_main_mock._MockModelBackend  # pyright: ignore[reportPrivateImportUsage]

    def factory(**kwargs: Any) -> Backend:
        backend = Backend(**kwargs)
        sink(backend)
        return backend

    _ops_main_mock._MockModelBackend = factory  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        _ops_main_mock._MockModelBackend = original  # type: ignore[misc]


def charm_meta(ctx: testing.Context[Any]) -> Mapping[str, Any]:
    """The charm's metadata as the Context loaded it."""
    return ctx._charm_spec.meta


def charm_actions(ctx: testing.Context[Any]) -> Mapping[str, Any]:
    """The charm's actions as the Context loaded them (empty if it has none)."""
    return ctx._charm_spec.actions or {}


def event_name(event: _Event) -> str:
    """The Python name of an event, e.g. ``upgrade_charm`` or ``resume_refresh_action``."""
    return event.name


def event_remote_unit(event: _Event) -> int | None:
    """The remote unit id a relation event was built with, if any."""
    return event.relation_remote_unit_id
