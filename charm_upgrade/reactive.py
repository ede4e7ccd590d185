# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Series upgrades for charms.reactive charms: :func:`register_series_upgrade_handlers`.

One call, at import time in the charm's ``reactive/<name>.py``, registers on
charms.reactive's bus the pair of handlers that charms.reactive documents for
``upgrade.series.in-progress``, with the guard the documented pair lacks::

    @when(started_flag, 'upgrade.series.in-progress')
    @when_not(disabled_flag)
    def take_down_services(): ...  # record, stop and hold; set disabled_flag

    @when(disabled_flag)
    @when_not('upgrade.series.in-progress')
    def bring_back_services(): ...  # migrate, restore; clear disabled_flag

Both drive :class:`~charm_upgrade.SeriesUpgradeFlow`, with the flags kept in
charms.reactive's unit state database, so they are committed with the hook.

This module imports charms.reactive and charmhelpers (install
``charm-upgrade[reactive]``); ``import charm_upgrade`` does not import it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import charms.reactive
from charmhelpers.core import hookenv

from . import _bases
from ._flags import APPLICATION_DISABLED, APPLICATION_STARTED, UPGRADE_SERIES_IN_PROGRESS
from ._series_flow import (
    MIGRATION_HOLD_SUFFIX,
    SeriesUpgradeFlow,
    Step,
    as_service_groups,
    migration_hold_message,
)
from .errors import CharmUpgradeError, MigrationError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Sequence

    from ._journal import Journal
    from ._migrations import Migrations
    from ._services import Services

__all__ = [
    'BRING_BACK_HANDLER_ID',
    'RECORD_INSTALL_HANDLER_ID',
    'TAKE_DOWN_HANDLER_ID',
    'register_series_upgrade_handlers',
]

TAKE_DOWN_HANDLER_ID = 'charm_upgrade.reactive:take_down_services'
"""The id of the handler that takes the services down, as charms.reactive logs it."""

BRING_BACK_HANDLER_ID = 'charm_upgrade.reactive:bring_back_services'
"""The id of the handler that brings the services back, as charms.reactive logs it."""

RECORD_INSTALL_HANDLER_ID = 'charm_upgrade.reactive:record_fresh_install'
"""The id of the ``install`` hook handler that records a fresh install for ``migrations``."""

# How the blocked status set at prepare begins; complete clears only a status that does.
_STATUS_PREFIX = 'Services stopped and disabled for the OS upgrade'


class _Handler(Protocol):
    """A handler on charms.reactive's bus (``charms.reactive.bus.Handler``)."""

    def id(self) -> str: ...


class _HandlerClass(Protocol):
    def get(self, action: Callable[[], None]) -> _Handler: ...

    def get_handlers(self) -> Iterable[_Handler]: ...


class _Bus(Protocol):
    Handler: _HandlerClass


class _Reactive(Protocol):
    """The parts of ``charms.reactive`` used here, which has no annotations."""

    bus: _Bus

    def when(self, *flags: str) -> Callable[[Callable[[], None]], object]: ...

    def when_not(self, *flags: str) -> Callable[[Callable[[], None]], object]: ...

    def hook(self, *hook_patterns: str) -> Callable[[Callable[[], None]], object]: ...

    def is_flag_set(self, flag: str) -> bool: ...

    def set_flag(self, flag: str) -> None: ...

    def clear_flag(self, flag: str) -> None: ...


class _HookEnv(Protocol):
    """The parts of ``charmhelpers.core.hookenv`` used here, which has no annotations."""

    def status_set(self, workload_state: str, message: str) -> None: ...

    def status_get(self) -> tuple[str, str]: ...

    def log(self, message: str, level: str | None = None) -> None: ...

    def atexit(self, callback: Callable[..., object], *args: object) -> None: ...


_reactive = cast('_Reactive', charms.reactive)
_hookenv = cast('_HookEnv', hookenv)


class _Registration(NamedTuple):
    flow: SeriesUpgradeFlow
    arguments: tuple[Any, ...]


# The take-down handler on charms.reactive's bus -> what registered it. Keyed
# weakly by the bus's own Handler object, so that whoever resets the bus
# (charms.reactive's Handler.clear()) resets this too.
_REGISTRATIONS: weakref.WeakKeyDictionary[Any, _Registration] = weakref.WeakKeyDictionary()


class _ReactiveFlags:
    """The flow's flags, kept by charms.reactive in the unit state database."""

    def is_set(self, flag: str) -> bool:
        return _reactive.is_flag_set(flag)

    def set(self, flag: str) -> None:
        _reactive.set_flag(flag)

    def clear(self, flag: str) -> None:
        _reactive.clear_flag(flag)


def register_series_upgrade_handlers(
    services: Services | Sequence[Services],
    *,
    started_flag: str = APPLICATION_STARTED,
    disabled_flag: str = APPLICATION_DISABLED,
    migrate: Callable[[str, str], None] | None = None,
    migrations: Migrations | None = None,
    journal: Journal | None = None,
) -> SeriesUpgradeFlow:
    """Register the series-upgrade handlers of a reactive charm on charms.reactive's bus.

    Call it once, at import time, from a module in the charm's ``reactive/``
    directory; charms.reactive imports those modules at the start of every
    hook, before it dispatches. Then:

    - in ``pre-series-upgrade`` (``juju upgrade-machine <machine> prepare``),
      if ``started_flag`` is set, the services' state is recorded, they are
      stopped and held down across reboots, ``disabled_flag`` is set, and the
      unit shows a blocked status that names the command that finishes the
      upgrade (set again at the end of the hook if a handler of the charm
      replaced it: Juju runs no hook until complete, so it must be the last);
    - in ``post-series-upgrade`` (``complete``), after layer-basic has rebuilt
      the charm's environment, ``migrate(old_base, new_base)`` is called, the
      services are restored as they were (a disabled one stays disabled),
      ``disabled_flag`` is cleared, and the blocked status is replaced with an
      active one if it still shows.

    With ``migrations``, the ``install`` hook records a fresh install (every
    migration counts as applied), and complete runs the pending series
    migrations after ``migrate``. A migration that fails or is refused does
    not fail the hook: the services stay down, the unit is blocked with a
    status that names the migration, and the migration is tried again at
    every hook until it passes (fix its cause, or refresh to a charm
    revision whose migration works).

    Any other hook, during the upgrade or not, touches no service. A hook
    that fails part-way converges when Juju runs it again.

    The charm sets ``started_flag`` itself once its services are started;
    its handlers that start or restart the services should also be guarded
    with ``@when_not(disabled_flag)``.

    Args:
        services: A group of services, or a sequence of groups, taken down in
            that order and brought back in reverse.
        started_flag: The flag the charm sets once its services are started.
        disabled_flag: The flag this library sets while the services are down.
        migrate: Called as ``migrate(old_base, new_base)`` (``'ubuntu@22.04'``,
            ``'ubuntu@24.04'``) after the upgrade and before the services come
            back; ``new_base`` is the base the machine runs then, and if it
            still runs ``old_base`` (nothing was upgraded) neither ``migrate``
            nor the series migrations run. Make it idempotent: if the hook
            fails after it, it runs again.
        migrations: The charm's :class:`~charm_upgrade.Migrations`; its
            series migrations run after ``migrate``.
        journal: Where stages are journaled; by default the unit's journal.

    Returns:
        The flow the handlers drive, for example to
        :meth:`~charm_upgrade.SeriesUpgradeFlow.preview` the next step.

    Raises:
        ServiceError: ``services`` is empty or names a group twice.
        CharmUpgradeError: the handlers were already registered with other
            arguments. A second call with the same arguments registers
            nothing and returns the same flow.
    """
    groups = as_service_groups(services)
    arguments = (
        tuple(g.key for g in groups),
        started_flag,
        disabled_flag,
        migrate,
        migrations,
        journal,
    )
    existing = _registration()
    if existing is not None:
        if existing.arguments == arguments:
            return existing.flow
        raise CharmUpgradeError(
            'register_series_upgrade_handlers() was already called with other arguments '
            f'(services {list(existing.arguments[0])}, flags {existing.arguments[1:3]}): '
            'call it once, from one module in reactive/'
        )
    flow = SeriesUpgradeFlow(
        groups,
        flags=_ReactiveFlags(),
        migrate=migrate,
        migrations=migrations,
        started_flag=started_flag,
        disabled_flag=disabled_flag,
        journal=journal,
    )

    def take_down_services() -> None:
        with _log_to_juju():
            step = flow.run(target_base=_bases.target_base_from_env())
        if step is Step.TOOK_DOWN:
            _hookenv.status_set('blocked', _status_message())
            _hookenv.log(f'charm-upgrade: took down {_names(flow)} for the series upgrade')
            # Juju runs no hook between prepare and complete: the status this
            # hook ends with is what the operator sees. A handler of the charm
            # that sets a status later in this dispatch must not hide it.
            _hookenv.atexit(_keep_blocked_status, flow, _status_message())

    def bring_back_services() -> None:
        with _log_to_juju():
            try:
                step = flow.run()
            except MigrationError as e:
                # Not raised: a failed hook says "hook failed", not which
                # migration failed, and charms.reactive would undo the flags
                # anyway. The disabled flag stays, so this handler runs (and
                # tries the migration) again at every hook.
                message = _migration_status(flow, e)
                _hookenv.log(f'charm-upgrade: series upgrade held: {e}', level='ERROR')
                _hookenv.status_set('blocked', message)
                _hookenv.atexit(_keep_blocked_status, flow, message)
                return
        if step is Step.BROUGHT_BACK:
            workload_state, message = _hookenv.status_get()
            if workload_state == 'blocked' and (
                str(message).startswith(_STATUS_PREFIX)
                or str(message).endswith(MIGRATION_HOLD_SUFFIX)
            ):
                _hookenv.status_set('active', '')
            _hookenv.log(f'charm-upgrade: brought back {_names(flow)} after the series upgrade')

    if migrations is not None:
        registered_migrations = migrations

        def record_fresh_install() -> None:
            # A hook handler runs before every flag handler of the hook, so
            # before the charm's own install handlers create the workload's data.
            if registered_migrations.mark_installed(base=_bases.current_base()):
                _hookenv.log('charm-upgrade: fresh install; migrations recorded as applied')

        # charms.reactive calls @hook "generally deprecated"; no flag marks
        # the install hook, and a flag handler may run after the charm's.
        record_fresh_install.__dict__.update(
            _action_id=RECORD_INSTALL_HANDLER_ID, _short_action_id=RECORD_INSTALL_HANDLER_ID
        )
        _reactive.hook('install')(record_fresh_install)

    _register(
        take_down_services,
        TAKE_DOWN_HANDLER_ID,
        all_of=(started_flag, UPGRADE_SERIES_IN_PROGRESS),
        none_of=(disabled_flag,),
    )
    _register(
        bring_back_services,
        BRING_BACK_HANDLER_ID,
        all_of=(disabled_flag,),
        none_of=(UPGRADE_SERIES_IN_PROGRESS,),
    )
    _REGISTRATIONS[_reactive.bus.Handler.get(take_down_services)] = _Registration(flow, arguments)
    return flow


def _status_message() -> str:
    """Return the blocked status message shown while the services are down.

    It names the command that finishes the upgrade on this machine:
    ``juju upgrade-machine <machine> complete``, or ``upgrade-series`` on
    Juju 2.9 (from ``JUJU_VERSION`` and ``JUJU_MACHINE_ID``).
    """
    machine = os.environ.get('JUJU_MACHINE_ID', '<machine>')
    major = os.environ.get('JUJU_VERSION', '3').split('.', 1)[0]
    command = 'upgrade-series' if major.isdigit() and int(major) < 3 else 'upgrade-machine'
    return f'{_STATUS_PREFIX}; when it is done, run `juju {command} {machine} complete`'


def _migration_status(flow: SeriesUpgradeFlow, error: MigrationError) -> str:
    """Return the blocked status message of a series upgrade held by a migration."""
    return (
        migration_hold_message(flow.migrations)
        or f'Migration {error.migration_id or "?"} failed; see upgrade-journal'
        + MIGRATION_HOLD_SUFFIX
    )


def _keep_blocked_status(flow: SeriesUpgradeFlow, message: str) -> None:
    # Run at the end of the hook: a handler of the charm that set a status
    # after ours must not hide why the services are down.
    if not flow.flags.is_set(flow.disabled_flag):
        return
    if _hookenv.status_get() != ('blocked', message):
        _hookenv.status_set('blocked', message)


def _register(
    action: Callable[[], None],
    handler_id: str,
    *,
    all_of: tuple[str, ...],
    none_of: tuple[str, ...],
) -> None:
    # charms.reactive keys a handler by its function's code location unless
    # the function has an _action_id, and logs it by _short_action_id. Give
    # both a stable name: a path relative to the charm directory means nothing.
    action.__dict__.update(_action_id=handler_id, _short_action_id=handler_id)
    _reactive.when(*all_of)(action)
    _reactive.when_not(*none_of)(action)


def _registration() -> _Registration | None:
    for handler in _reactive.bus.Handler.get_handlers():
        if handler.id() == TAKE_DOWN_HANDLER_ID:
            registration = _REGISTRATIONS.get(handler)
            if registration is None:
                raise CharmUpgradeError(
                    f'a handler {TAKE_DOWN_HANDLER_ID} is on the bus but this module did not '
                    'register it: was charm_upgrade.reactive imported twice?'
                )
            return registration
    return None


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
    # charm has set up logging itself, the library's warnings (a missing
    # before-state record, a base that is not the target) go to juju-log.
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
