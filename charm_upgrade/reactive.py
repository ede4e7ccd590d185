# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Series upgrades for charms.reactive charms: :func:`register_series_upgrade_handlers`.

One call, at import time in the charm's ``reactive/<name>.py``, makes the
library run the series-upgrade flow (:class:`~charm_upgrade.SeriesUpgradeFlow`)
at the start of every hook, before any handler of the charm:

- charms.reactive sets ``upgrade.series.in-progress`` at the start of
  ``pre-series-upgrade`` and clears it at the start of ``post-series-upgrade``,
  in its own start-of-hook callbacks (``hookenv.atstart``);
- the library's start-of-hook callback, registered when the charm's modules
  are imported and so run right after charms.reactive's, takes the services
  down at prepare and brings them back at complete. Whatever order the charm's
  modules and handlers are registered in, no handler of the charm runs in the
  prepare hook before the take-down, nor in the complete hook before the
  bring-back;
- the library's exit callback runs after every other one (charmhelpers runs
  exit callbacks newest first; this one is put first in its list) and, while
  the services are held or after a complete that could not bring everything
  back, sets the library's blocked status with the ``status-set`` hook tool
  itself. So neither a status callback the charm registered at import nor
  layer:status, which ranks the library's ``hookenv.status_set`` calls below
  the charm's own and settles the status in its own exit callback, can hide
  why the services are down.

The flags are kept in charms.reactive's unit state database, so they are
committed with the hook.

This module imports charms.reactive and charmhelpers (install
``juju-charm-upgrade[reactive]``); ``import charm_upgrade`` does not import it.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import charms.reactive
from charmhelpers.core import hookenv, unitdata

from . import _bases, _series_status
from ._flags import APPLICATION_DISABLED, APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS
from ._series_flow import SeriesUpgradeFlow, Step, as_service_groups
from ._status import StatusLedger
from .errors import CharmUpgradeError, MigrationError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Sequence

    from ._journal import Journal
    from ._migrations import Migrations
    from ._series_flow import Callback, MigrateCallback, Started
    from ._services import Services

__all__ = ['register_series_upgrade_handlers']


class _Reactive(Protocol):
    """The parts of ``charms.reactive`` used here, which has no annotations."""

    def is_flag_set(self, flag: str) -> bool: ...

    def set_flag(self, flag: str, value: object = None) -> None: ...

    def clear_flag(self, flag: str) -> None: ...


class _KeyValue(Protocol):
    def get(self, key: str, default: object = None) -> object: ...


class _HookEnv(Protocol):
    """The parts of ``charmhelpers.core.hookenv`` used here, which has no annotations."""

    def status_set(self, workload_state: str, message: str) -> None: ...

    def status_get(self) -> tuple[str, str]: ...

    def log(self, message: str, level: str | None = None) -> None: ...

    def hook_name(self) -> str: ...

    def atstart(self, callback: Callable[..., object], *args: object) -> None: ...

    def atexit(self, callback: Callable[..., object], *args: object) -> None: ...


_reactive = cast('_Reactive', charms.reactive)
_hookenv = cast('_HookEnv', hookenv)


class _Registration(NamedTuple):
    flow: SeriesUpgradeFlow
    arguments: tuple[Any, ...]


# What this process registered: one flow per charm, as hooks run one per process.
_registered: _Registration | None = None


class _ReactiveFlags:
    """The flow's flags, kept by charms.reactive in the unit state database."""

    def is_set(self, flag: str) -> bool:
        return _reactive.is_flag_set(flag)

    def set(self, flag: str, value: str | None = None) -> None:
        _reactive.set_flag(flag, value)

    def clear(self, flag: str) -> None:
        _reactive.clear_flag(flag)

    def value(self, flag: str) -> str | None:
        # charms.reactive keeps a flag's value under this key (see its flags module).
        kv = cast('_KeyValue', unitdata.kv())
        value = kv.get(f'reactive.states.{flag}')
        return value if isinstance(value, str) else None


def register_series_upgrade_handlers(
    services: Services | Sequence[Services],
    *,
    started: Started = APPLICATION_STARTED,
    before_take_down: Callback | None = None,
    after_bring_back: Callback | None = None,
    migrate: MigrateCallback | None = None,
    migrations: Migrations | None = None,
    disabled_flag: str = APPLICATION_DISABLED,
    journal: Journal | None = None,
) -> SeriesUpgradeFlow:
    """Make a reactive charm take its services down for a series upgrade, and back.

    Call it once, at import time, from a module in the charm's ``reactive/``
    directory; charms.reactive imports those modules at the start of every
    hook, before it runs any handler. Then, at the start of every hook, before
    any handler of the charm:

    - in ``pre-series-upgrade`` (``juju upgrade-machine <machine> prepare``),
      if the application is started, the services' state is recorded,
      ``before_take_down()`` is called, the services are stopped and held down
      across reboots, ``disabled_flag`` is set, and the unit shows a blocked
      status that names the command that finishes the upgrade, whatever the
      charm's handlers set later in the hook;
    - in ``post-series-upgrade`` (``complete``), after layer-basic has rebuilt
      the charm's environment, ``migrate(old_base, new_base)`` and the pending
      series ``migrations`` run, the services are restored as they were (a
      disabled one stays disabled), ``after_bring_back()`` is called,
      ``disabled_flag`` is cleared, and the blocked status is replaced with an
      active one if it still shows (or with one that names what could not
      come back).

    So one guard is enough in the charm: ``@when_not(disabled_flag)`` on every
    handler that starts, restarts or reconfigures the services. The flag is
    set before any handler of the prepare hook runs, and is cleared before
    any handler of the complete hook runs, unless a migration holds the
    services down.

    A migration, or ``migrate``, that fails or is refused does not fail the
    hook: the services stay down, the unit is blocked with a status that names
    it, and it is tried again at every hook until it passes (fix its cause, or
    refresh to a charm revision whose migration works). With ``migrations``,
    the ``install`` hook records a fresh install (every migration counts as
    applied) before any handler runs. Any other hook, during the upgrade or
    not, touches no service. A hook that fails part-way converges when Juju
    runs it again; the callbacks run again with it.

    Args:
        services: A group of services, or a sequence of groups, taken down in
            that order and brought back in reverse.
        started: Whether the services were started: the flag the charm sets
            once they are (``charm.application.started`` by default), a
            callable that returns a bool (asked at prepare), or None to take
            down whatever runs at prepare.
        before_take_down: Called at prepare, after the before-state is
            recorded and before any service stops: drain the unit.
        after_bring_back: Called at complete, after the services are back:
            uncordon, warm caches.
        migrate: Called as ``migrate(old_base, new_base)`` (``'ubuntu@22.04'``,
            ``'ubuntu@24.04'``) after the upgrade and before the services come
            back; ``new_base`` is the base the machine runs then, and if it
            still runs ``old_base`` (nothing was upgraded) neither ``migrate``
            nor the series migrations run.
        migrations: The charm's :class:`~charm_upgrade.Migrations`; its
            series migrations run after ``migrate``.
        disabled_flag: The flag this library sets while the services are
            down. It is the library's: don't set or clear it, and don't pass a
            flag that other code sets (a pause action's, say).
        journal: Where stages are journaled; by default the unit's journal.

    Make every callback idempotent: it runs again when its step is retried.

    Returns:
        The flow the library drives, for example to
        :meth:`~charm_upgrade.SeriesUpgradeFlow.preview` the next step.

    Raises:
        ServiceError: ``services`` is empty or names a group twice.
        CharmUpgradeError: it was already called with other arguments. A
            second call with the same arguments registers nothing and returns
            the same flow.
    """
    global _registered
    groups = as_service_groups(services)
    arguments = (
        tuple(g.key for g in groups),
        started,
        before_take_down,
        after_bring_back,
        disabled_flag,
        migrate,
        migrations,
        journal,
    )
    if _registered is not None:
        if _registered.arguments == arguments:
            return _registered.flow
        raise CharmUpgradeError(
            'register_series_upgrade_handlers() was already called with other arguments '
            f'(services {list(_registered.arguments[0])}): call it once, from one module in '
            'reactive/'
        )
    flow = SeriesUpgradeFlow(
        groups,
        flags=_ReactiveFlags(),
        started=started,
        before_take_down=before_take_down,
        after_bring_back=after_bring_back,
        migrate=migrate,
        migrations=migrations,
        disabled_flag=disabled_flag,
        journal=journal,
    )
    # charms.reactive's own start-of-hook callbacks (its automatic flags) were
    # registered when it was imported, before the charm's modules: this one
    # runs after them, and before any handler.
    _hookenv.atstart(_at_start, flow)
    _registered = _Registration(flow, arguments)
    return flow


def _at_start(flow: SeriesUpgradeFlow) -> None:
    with _log_to_juju():
        # Before the charm's install handlers create the workload's data.
        if (
            flow.migrations is not None
            and _hookenv.hook_name() == 'install'
            and flow.migrations.mark_installed(base=_bases.current_base())
        ):
            _hookenv.log('charm-upgrade: fresh install; migrations recorded as applied')
        try:
            step = flow.run(target_base=_bases.target_base_from_env())
        except MigrationError as e:
            # Not raised: a failed hook says "hook failed", not which migration
            # failed, and charms.reactive would undo the flags anyway. The
            # disabled flag stays, so the next hook tries again.
            _hookenv.log(f'charm-upgrade: series upgrade held: {e}', level='ERROR')
            step = Step.NOTHING
    if step is Step.TOOK_DOWN:
        _hookenv.log(f'charm-upgrade: took down {_names(flow)} for the series upgrade')
    elif step is Step.BROUGHT_BACK:
        _hookenv.log(f'charm-upgrade: brought back {_names(flow)} after the series upgrade')
    intent = _series_status.series_intent(flow, in_progress=_in_progress())
    ledger = StatusLedger()
    if intent is not None:
        # Shown at once; and again, last of all, when the hook ends.
        _hookenv.status_set(intent.level, intent.message)
        ledger.record(intent)
        _run_last_at_exit(_final_status, flow)
    elif ledger.shown() is not None:
        # The library's status is no longer wanted: replaced with active if it
        # is still the one showing (the record says whose it is), before the
        # charm's handlers set theirs.
        workload_state, message = _hookenv.status_get()
        if ledger.owns(workload_state, str(message)):
            _hookenv.status_set('active', '')
        ledger.forget()


def _final_status(flow: SeriesUpgradeFlow) -> None:
    """Set the library's status with the hook tool, after every other exit callback."""
    intent = _series_status.series_intent(flow, in_progress=_in_progress())
    if intent is None or intent.matches(*_hookenv.status_get()):
        return
    # Not hookenv.status_set: layer:status reroutes that (it patches
    # subprocess.call) and would rank this call below the charm's own.
    try:
        subprocess.run(['status-set', intent.level, intent.message], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        _hookenv.log(f'charm-upgrade: could not set the status: {e}', level='WARNING')
        return
    StatusLedger().record(intent)


def _run_last_at_exit(callback: Callable[..., object], *args: object) -> None:
    # charmhelpers runs exit callbacks newest first, so the first of its list
    # runs last; callbacks registered at import (layer:status's own, a
    # charm's) are in the list already.
    queue = getattr(hookenv, '_atexit', None)
    if isinstance(queue, list):
        cast('list[Any]', queue).insert(0, (callback, args, {}))
    else:
        _hookenv.atexit(callback, *args)


def _in_progress() -> bool:
    return _reactive.is_flag_set(UPGRADE_SERIES_IN_PROGRESS)


def _names(flow: SeriesUpgradeFlow) -> str:
    return ', '.join(name for group in flow.services for name in group.names)


class _JujuLogHandler(logging.Handler):
    """Sends the library's log records to ``juju-log``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _hookenv.log(self.format(record), level=record.levelname)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _log_to_juju() -> Generator[None]:
    # ops routes logging to juju-log; charms.reactive does not. Unless the
    # charm has set up logging itself, the library's warnings (no before-state
    # record, a base that is not the target, a unit not brought back) go to
    # juju-log.
    library_logger = logging.getLogger('charm_upgrade')
    if library_logger.hasHandlers():
        yield
        return
    handler = _JujuLogHandler()
    library_logger.addHandler(handler)
    try:
        yield
    finally:
        library_logger.removeHandler(handler)
