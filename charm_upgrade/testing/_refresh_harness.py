# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Run the real ``charm_refresh.Machines`` inside ops.testing: :class:`RefreshHarness`.

charm-refresh calls Juju hook tools as subprocesses, reads ``refresh_versions.toml`` and
``.juju-charm`` from the working directory, reads ``$JUJU_PRINCIPAL_UNIT`` and asks snapd for the
installed revision over ``/run/snapd.socket``. Around each ``ctx.run`` the harness supplies all of
that for one unit: the hook tools answered from, and written into, the run's State; a charm
directory of its own as working directory; Juju's action parameter defaults; and charm-refresh's
snapd requests sent to a :class:`~charm_upgrade.testing.FakeSnapd` socket.

Example::

    harness = RefreshHarness(MyCharm, versions=RefreshVersions(
        charm='1/1.0.0', workload='1.0', snap='tiny', revisions={'x86_64': '10'}),
        charm_dir=tmp_path / 'unit-0', snapd_socket=snapd.socket_path)
    state = harness.run(harness.ctx.on.install(), state)
    harness.simulate_juju_refresh('1/1.1.0', '11')
    state = harness.upgrade_charm(state)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import json
import os
import pathlib
import platform
import sys
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import httpx
import ops
from ops import testing

from .._machine import MACHINE_ROOT_ENV, under_root
from . import _refresh_scenario
from ._kill import HookKilled, LineCounter, close_what_the_kill_left
from ._refresh_hooktools import FakeHookTools, module_shim

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping, Sequence

    from scenario.state import _Event

    from ._fake_systemd import FakeSystemd

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - charm-refresh depends on tomli
    import tomli as tomllib

__all__ = [
    'PEER_ENDPOINT',
    'EventCalls',
    'ReconcileNotCalledError',
    'RefreshHarness',
    'RefreshVersions',
]

PEER_ENDPOINT = 'refresh-v-three'
"""The peer relation endpoint charm-refresh hard-codes."""

CHARM_REFRESH_META: dict[str, Any] = {
    'peers': {PEER_ENDPOINT: {'interface': 'refresh'}},
    'config': {'options': {'pause-after-unit-refresh': {'type': 'string', 'default': 'first'}}},
    'actions': {
        'pre-refresh-check': {'additionalProperties': False},
        'force-refresh-start': {
            'params': {
                'check-compatibility': {'type': 'boolean', 'default': True},
                'run-pre-refresh-checks': {'type': 'boolean', 'default': True},
                'check-workload-container': {'type': 'boolean', 'default': True},
            },
            'additionalProperties': False,
        },
        'resume-refresh': {
            'params': {'check-health-of-refreshed-units': {'type': 'boolean', 'default': True}},
            'additionalProperties': False,
        },
    },
}
"""What charm-refresh needs in a charm's metadata: its peer relation, option and actions.

Merge it into a test charm's ``meta`` (``{'name': 'mycharm', **CHARM_REFRESH_META}``), or
compare a ``charmcraft.yaml`` with it. charm-refresh reads every action parameter by key,
without a default of its own.
"""

EPOCH = 1_767_225_600.0
"""The simulated time of the first ``.juju-charm`` (2026-01-01 UTC): runs are reproducible."""

_STATE_DIR_NAME = '.charm_upgrade'
_SNAPD_SOCKET = '/run/snapd.socket'
_SOCKET_ENV = 'CHARM_UPGRADE_SNAPD_SOCKET'
# The modules whose `subprocess` global runs Juju hook tools, and the one whose `httpx` global
# talks to snapd.
_SUBPROCESS_USERS = ('charm_._main', 'charm_._status', 'charm_._logging', 'charm_refresh._main')
_HTTPX_USER = 'charm_refresh._main'

CharmT = TypeVar('CharmT', bound=ops.CharmBase)


def _no_transport(*_: object, **__: object) -> None:
    """charm-refresh's transport: unused, since the shimmed ``httpx.Client`` ignores it."""


def _revisions(value: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(value, str):
        return {platform.machine(): value}
    return dict(value)


_DOCS = 'https://canonical-charm-refresh.readthedocs-hosted.com/latest/add-to-charm/refresh-versions-toml/'


@dataclasses.dataclass(frozen=True)
class RefreshVersions:
    """What a built charm's ``refresh_versions.toml`` says, checked as a real unit checks it.

    Made (or loaded, or changed with :meth:`evolve`), it is checked at once: a pin that
    would make the real unit raise at its first event raises here, in the test, rather
    than at the first unit's upgrade-charm of a real refresh.

    Attributes:
        charm: the charm version the build writes (e.g. ``'1/1.0.0'``); ``unknown/…`` or
            ``….dirty`` versions are unreleased, hence incompatible by default.
        workload: the upstream workload version of the pinned snap revisions.
        snap: the workload snap's name.
        revisions: pinned snap revision by ``platform.machine()`` architecture; each a
            string such as ``'123'`` (``revision = "123"`` in the file), as snapd names
            revisions.
        charm_major: leave as 1.

    Raises:
        ValueError: the charm version is not one charm-refresh reads
            (``<track>/<major>.<minor>.<patch>``), the workload version or the snap name
            is not a string, or a revision is not a string of the form ``x?[1-9][0-9]*``:
            an integer (``revision = 123`` in the file) is refused, as the real unit's
            ``refresh_snap`` refuses it.
        KeyError: no revision is pinned for this machine's architecture, as charm-refresh
            raises at every event on such a machine.
    """

    charm: str
    workload: str
    snap: str
    revisions: Mapping[str, str]
    charm_major: int = 1

    def __post_init__(self) -> None:
        from charm_refresh import CharmVersion

        from ..snapd import validate_revision

        try:
            CharmVersion(self.charm)
        except (ValueError, AttributeError) as e:
            raise ValueError(
                f'invalid charm version {self.charm!r} for refresh_versions.toml: charm-refresh '
                f"reads '<track>/<major>.<minor>.<patch>', e.g. '1/1.0.0' ({e})"
            ) from None
        for key, value in (('workload', self.workload), ('[snap] name', self.snap)):
            if not isinstance(value, str) or not value:  # pyright: ignore[reportUnnecessaryIsInstance]
                raise ValueError(
                    f'{key} = {value!r} in refresh_versions.toml: write it as a non-empty '
                    f'string, e.g. {key} = "{value}"'
                )
        for arch, revision in self.revisions.items():
            try:
                validate_revision(revision)
            except ValueError:
                fix = (
                    f'snap revisions are strings, e.g. {arch} = "{revision}"'
                    if isinstance(revision, int)
                    else 'not a snap revision (a number, or x and a number for a local snap)'
                )
                raise ValueError(
                    f'[snap.revisions] {arch} = {revision!r} in refresh_versions.toml: {fix}; '
                    "the real unit's refresh_snap raises ValueError for it"
                ) from None
        if platform.machine() not in self.revisions:
            raise KeyError(
                f'Snap revision missing for architecture {platform.machine()!r} in '
                f'refresh_versions.toml [snap.revisions] (charm-refresh raises this at every '
                f'event on such a machine). Docs: {_DOCS}'
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, charm: str) -> RefreshVersions:
        """Read a charm's source ``refresh_versions.toml`` and add the build-time charm version.

        The file is checked as a real unit checks it (see the class): a bad pin raises here.

        Args:
            path: the source file (without the ``charm`` key).
            charm: the version the build would write, e.g. ``'1/1.0.0'``.

        Returns:
            The versions.

        Raises:
            KeyError: a key charm-refresh requires is missing.
            ValueError: a value is one the real unit refuses.
        """
        data = tomllib.loads(pathlib.Path(path).read_text())
        try:
            snap = data['snap']
            values = (data['workload'], snap['name'], snap['revisions'])
        except (KeyError, TypeError) as e:
            raise KeyError(
                f'{path}: required key missing from refresh_versions.toml ({e}): it needs '
                f'workload, [snap] name and [snap.revisions]. Docs: {_DOCS}'
            ) from None
        workload, name, revisions = values
        if not isinstance(revisions, dict):
            raise ValueError(f'{path}: [snap.revisions] must be a table of architecture = "rev"')
        return cls(
            charm=charm,
            workload=workload,
            snap=name,
            revisions={str(arch): rev for arch, rev in cast('dict[str, Any]', revisions).items()},
            charm_major=int(data.get('charm_major', 1)),
        )

    def evolve(
        self,
        *,
        charm: str | None = None,
        workload: str | None = None,
        revisions: str | Mapping[str, str] | None = None,
    ) -> RefreshVersions:
        """A copy with some fields changed.

        Args:
            charm: the new charm version.
            workload: the new workload version.
            revisions: the new pinned revisions; a str pins this machine's architecture only.

        Returns:
            The new versions.
        """
        return dataclasses.replace(
            self,
            charm=self.charm if charm is None else charm,
            workload=self.workload if workload is None else workload,
            revisions=self.revisions if revisions is None else _revisions(revisions),
        )

    @property
    def revision(self) -> str:
        """The snap revision pinned for this machine's architecture."""
        return self.revisions[platform.machine()]

    def to_toml(self) -> str:
        """The file as the built charm ships it, with the ``charm`` key."""
        lines = [
            f'charm_major = {self.charm_major}',
            f'workload = {json.dumps(self.workload)}',
            f'charm = {json.dumps(self.charm)}',
            '',
            '[snap]',
            f'name = {json.dumps(self.snap)}',
            '',
            '[snap.revisions]',
            *(f'{json.dumps(arch)} = {json.dumps(rev)}' for arch, rev in self.revisions.items()),
        ]
        return '\n'.join(lines) + '\n'


@dataclasses.dataclass(frozen=True)
class EventCalls:
    """The hook-tool calls charm-api and charm-refresh made in one event.

    Attributes:
        event: the event's Python name, e.g. ``upgrade_charm`` or ``resume_refresh_action``.
        calls: calls by tool name.
        ok: False if the charm raised, or the hook was killed (Juju would drop the event's
            relation writes).
        library_lines: how many lines of charm-upgrade's own code the event ran, if they
            were counted (:attr:`RefreshHarness.count_library_lines`, or a kill point).
        killed: the hook was killed at a kill point (:attr:`RefreshHarness.kill_at_line`).
    """

    event: str
    calls: collections.Counter[str]
    ok: bool = True
    library_lines: int | None = None
    killed: bool = False

    @property
    def total(self) -> int:
        """All hook-tool calls in the event."""
        return sum(self.calls.values())


class RefreshHarness(Generic[CharmT]):
    """One unit of a charm that uses the real ``charm_refresh.Machines``, under ops.testing.

    The harness owns the unit's :class:`ops.testing.Context` (``ctx``) and charm directory. Run
    events with :meth:`run` (or wrap your own ``ctx.run`` in :meth:`patched`); chain the States
    as usual. Hook tools that charm-refresh runs go through the run's model backend, so output
    States show its statuses, relation data and workload version, and ``ctx.action_results``,
    ``ctx.action_logs`` and :class:`ops.testing.ActionFailed` show its action outcomes.

    Args:
        charm_type: the charm class.
        versions: the ``refresh_versions.toml`` of the charm revision deployed first.
        charm_dir: this unit's charm directory (created if needed): working directory of every
            run, home of ``.juju-charm``, ``refresh_versions.toml`` and charm-refresh's
            ``.charm_refresh_v3/``. Give each unit its own.
        meta: charm metadata (a ``charmcraft.yaml`` dict works), or None to let ops.testing load
            the charm's ``charmcraft.yaml``.
        actions: the charm's actions, if not in ``meta``.
        config: the charm's config options, if not in ``meta``.
        app_name: the application name (default: the charm's name).
        unit_id: this unit's number.
        charm_revision: the Charmhub revision of the deployed charm (``.juju-charm``).
        charmhub: False to deploy a local charm (``local:<name>-<revision>``), whose rollback
            hints read ``--revision None``.
        snapd_socket: the unix socket charm-refresh and charm-upgrade should use; if None,
            ``$CHARM_UPGRADE_SNAPD_SOCKET`` at run time (set while a ``FakeSnapd`` is entered)
            or ``/run/snapd.socket``.
        principal_unit: ``$JUJU_PRINCIPAL_UNIT``: empty for a principal charm.
        goal_units: unit numbers ``goal-state`` lists for the application; None lists this unit
            and its peers, i.e. every unit has joined the peer relation.
        mtime: the simulated modification time of the first ``.juju-charm``.
        juju_version: the Juju version to simulate (default: ops.testing's).
        systemd: a stand-in ``systemctl`` put first on ``PATH`` during runs (series upgrades
            hold services with systemd drop-ins).
        machine_root: the directory that stands for ``/`` of this unit's machine during runs,
            where :func:`charm_upgrade.machine_path` maps the charm's machine paths (unit
            files, data, ``backup=`` paths). By default the ``systemd``'s root, else
            ``<charm_dir>/.machine``. Give each unit its own.
    """

    def __init__(
        self,
        charm_type: type[CharmT],
        *,
        versions: RefreshVersions,
        charm_dir: str | os.PathLike[str],
        meta: Mapping[str, Any] | None = None,
        actions: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        app_name: str | None = None,
        unit_id: int = 0,
        charm_revision: int = 1,
        charmhub: bool = True,
        snapd_socket: str | None = None,
        principal_unit: str = '',
        goal_units: Sequence[int] | None = None,
        mtime: float = EPOCH,
        juju_version: str | None = None,
        systemd: FakeSystemd | None = None,
        machine_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.charm_dir = pathlib.Path(charm_dir).absolute()
        """This unit's charm directory."""
        self.charm_dir.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {} if juju_version is None else {'juju_version': juju_version}
        self.ctx: testing.Context[CharmT] = testing.Context(
            charm_type,
            dict(meta) if meta is not None else None,
            actions=dict(actions) if actions is not None else None,
            config=dict(config) if config is not None else None,
            charm_root=self.charm_dir,
            app_name=app_name,
            unit_id=unit_id,
            machine_id=str(unit_id),
            **extra,
        )
        """The unit's ops.testing Context: use ``ctx.on`` to build events."""
        self.snapd_socket = snapd_socket
        """The snapd socket for runs, or None to follow ``FakeSnapd``'s."""
        self.principal_unit = principal_unit
        """``$JUJU_PRINCIPAL_UNIT`` for runs."""
        self.systemd = systemd
        """The unit's stand-in ``systemctl``, if any."""
        self._machine_root = None if machine_root is None else pathlib.Path(machine_root)
        self.extra_env: dict[str, str] = {}
        """More environment for runs (``JUJU_TARGET_BASE`` for a series upgrade)."""
        self.goal_units: list[int] | None = None if goal_units is None else list(goal_units)
        """Unit numbers ``goal-state`` lists, or None for this unit and its peers."""
        self.calls: list[EventCalls] = []
        """Hook-tool calls of every event run through :meth:`run`, in order."""
        self.upgrade_charm_pending = False
        """True between :meth:`simulate_juju_refresh` and the next upgrade-charm that succeeds."""
        self.count_library_lines = False
        """Count the library lines each event runs, into ``EventCalls.library_lines``."""
        self.check_reconcile = True
        """Fail a run in which a refresh is in progress and the charm never called ``reconcile``.

        Set it to False only to test what a charm that forgets it does (the refresh stalls).
        """
        self.kill_at_line: int | None = None
        """Kill the next event run after that many lines of charm-upgrade's code; one shot.

        The run raises :class:`HookKilled` (a ``BaseException``): nothing of the library's
        recovery runs, what it wrote to disk stays, and snapd's changes go on, as after a
        SIGKILL. Juju would drop the event's relation writes and run the event again.
        """
        self._charmhub = charmhub
        self._backend: _refresh_scenario.Backend | None = None
        self._tools = FakeHookTools(self._current_backend, goal_units=self._goal_unit_names)
        self._versions = versions
        self._charm_revision = charm_revision
        self._mtime = mtime
        self._write_charm(mtime)

    def close(self) -> None:
        """Remove the Context's temporary directories (the charm directory stays)."""
        self.ctx.close()

    # The deployed charm

    @property
    def app_name(self) -> str:
        """The application's name."""
        return self.ctx.app_name

    @property
    def unit_name(self) -> str:
        """This unit's name, e.g. ``tiny/0``."""
        return f'{self.ctx.app_name}/{self.ctx.unit_id}'

    @property
    def machine_root(self) -> pathlib.Path:
        """The directory that stands for ``/`` of this unit's machine (see ``machine_root=``)."""
        if self._machine_root is not None:
            return self._machine_root
        if self.systemd is not None:
            return self.systemd.root
        return self.charm_dir / '.machine'

    def machine_path(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Where the machine path ``path`` is for this unit, as ``machine_path`` maps it in runs.

        Example::

            data = harness.machine_path('/var/snap/mydb/common/data')
            data.mkdir(parents=True)
        """
        return under_root(path, self.machine_root)

    @property
    def state_dir(self) -> pathlib.Path:
        """charm-upgrade's state directory of this unit: its journal and records."""
        return self.charm_dir / _STATE_DIR_NAME

    def make_migration_pending(self, *migration_ids: str) -> None:
        """Make this unit a unit deployed before the charm had these migrations.

        A fresh install records every migration the charm knows as applied (none runs), and
        the kit swaps only ``refresh_versions.toml`` at a refresh, so a migration the charm
        adds would never run in a test. This takes the migrations out of the unit's record
        (``migrations.json``), as on a unit installed by an older revision: the next
        refresh, or series upgrade for a series migration, runs them.

        Args:
            migration_ids: the migrations' ids; none makes every migration pending.

        Raises:
            ValueError: the unit's record does not list one of the migrations as applied
                (run the install first).
        """
        from .. import _lock, _records

        path = self.state_dir / _records.MigrationsRecord.NAME
        with _lock.unit_lock(self.state_dir, step='test kit: make migrations pending'):
            record = _records.load(path, _records.MigrationsRecord)
            applied = {} if record is None else record.applied
            missing = [i for i in migration_ids if i not in applied]
            if record is None or missing:
                raise ValueError(
                    f'{self.unit_name} has no applied migration {", ".join(missing) or "at all"} '
                    f'in {path} (applied: {", ".join(applied) or "none"}): run the install '
                    'first, and name migrations the charm declares'
                )
            for migration_id in migration_ids or list(applied):
                del record.applied[migration_id]
            _records.save(path, record)

    @property
    def versions(self) -> RefreshVersions:
        """The ``refresh_versions.toml`` of the charm code currently on the unit."""
        return self._versions

    @property
    def charm_revision(self) -> int:
        """The revision of the charm code currently on the unit."""
        return self._charm_revision

    @property
    def juju_charm(self) -> str:
        """The contents of ``.juju-charm``, e.g. ``ch:amd64/jammy/tiny-6``."""
        name = _refresh_scenario.charm_meta(self.ctx).get('name', self.app_name)
        if self._charmhub:
            return f'ch:amd64/jammy/{name}-{self._charm_revision}'
        return f'local:{name}-{self._charm_revision}'

    @property
    def mtime(self) -> float:
        """The simulated modification time of ``.juju-charm``."""
        return self._mtime

    def simulate_juju_refresh(
        self,
        charm_version: str,
        revisions: str | Mapping[str, str],
        *,
        workload: str | None = None,
        charm_revision: int | None = None,
        mtime: float | None = None,
    ) -> None:
        """Swap in new charm code as ``juju refresh`` does; then run upgrade-charm.

        Writes the new ``refresh_versions.toml`` and ``.juju-charm`` and gives ``.juju-charm`` a
        later modification time, which is how charm-refresh notices new charm code. Juju runs
        upgrade-charm next (:meth:`upgrade_charm`); running another event first simulates Juju
        skipping it (LP#2068500): charm-refresh then waits for upgrade-charm or config-changed.

        Args:
            charm_version: the new charm version, e.g. ``'1/1.1.0'``.
            revisions: the new pinned snap revisions; a str pins this machine's architecture.
            workload: the new workload version (default: unchanged).
            charm_revision: the new Charmhub revision (default: the current one plus one); give
                the old one to roll back.
            mtime: the new modification time (default: the current one plus a minute).
        """
        self._versions = self._versions.evolve(
            charm=charm_version, workload=workload, revisions=revisions
        )
        self._charm_revision = (
            self._charm_revision + 1 if charm_revision is None else charm_revision
        )
        new_mtime = self._mtime + 60 if mtime is None else mtime
        if new_mtime == self._mtime:
            raise ValueError('a refreshed .juju-charm needs a new modification time')
        self._write_charm(new_mtime)
        self.upgrade_charm_pending = True

    def _write_charm(self, mtime: float) -> None:
        (self.charm_dir / 'refresh_versions.toml').write_text(self._versions.to_toml())
        juju_charm = self.charm_dir / '.juju-charm'
        juju_charm.write_text(self.juju_charm + '\n')
        os.utime(juju_charm, (mtime, mtime))
        self._mtime = mtime

    # Running events

    def run(self, event: _Event, state: testing.State) -> testing.State:
        """Run one event on this unit with charm-refresh's environment in place.

        Args:
            event: an event from ``harness.ctx.on``.
            state: the input State.

        Returns:
            The output State.

        Raises:
            ops.testing.ActionFailed: an action failed (its ``state`` is the output State).
            ops.testing.errors.UncaughtCharmError: the charm raised; Juju would drop the event's
                relation writes, and the unit's files keep what was written.
            HookKilled: the run was killed at :attr:`kill_at_line`.
        """
        name = _refresh_scenario.event_name(event)
        self._tools.calls.clear()
        ok = killed = False
        kill_at, self.kill_at_line = self.kill_at_line, None
        counter = LineCounter(kill_at) if kill_at is not None or self.count_library_lines else None
        try:
            with self.patched(), counter or contextlib.nullcontext():
                output = self.ctx.run(event, state)
            ok = True
        except testing.ActionFailed:
            ok = True
            raise
        except HookKilled as e:
            killed = True
            raise close_what_the_kill_left(e) from None
        finally:
            self.calls.append(
                EventCalls(
                    name,
                    collections.Counter(self._tools.calls),
                    ok,
                    counter.count if counter is not None else None,
                    killed,
                )
            )
        if name in ('upgrade_charm', 'config_changed'):
            self.upgrade_charm_pending = False
        return output

    def upgrade_charm(self, state: testing.State) -> testing.State:
        """Run upgrade-charm, as Juju does after :meth:`simulate_juju_refresh`.

        Args:
            state: the input State.

        Returns:
            The output State.
        """
        return self.run(self.ctx.on.upgrade_charm(), state)

    @property
    def last_calls(self) -> collections.Counter[str]:
        """Hook-tool calls by tool name in the last event run through :meth:`run`."""
        return self.calls[-1].calls if self.calls else collections.Counter()

    @contextlib.contextmanager
    def patched(self) -> Generator[None, None, None]:
        """The environment charm-refresh needs, for a ``ctx.run`` of this unit's Context.

        Inside the block: the unit's charm directory is the working directory;
        ``$JUJU_PRINCIPAL_UNIT`` is set; charm-api's and charm-refresh's hook tools are answered
        from the run's State; charm-refresh and charm-upgrade talk to the unit's
        snapd socket. Everything is restored on exit.

        Yields:
            None.
        """
        socket = self.snapd_socket or os.environ.get(_SOCKET_ENV) or _SNAPD_SOCKET
        clients: list[httpx.Client] = []

        def client(*_: Any, **__: Any) -> httpx.Client:
            # One client per run, closed on exit (charm-refresh builds one per request and
            # never closes it; a TLS-ready transport costs ~20 ms to build).
            if not clients:
                transport = httpx.HTTPTransport(uds=socket, verify=False)
                clients.append(httpx.Client(transport=transport, trust_env=False))
            return clients[0]

        built: list[_Built] = []
        machines_type = importlib.import_module('charm_refresh').Machines
        machines_init = machines_type.__init__

        def init(machines: Any, charm_specific: Any, /) -> None:
            machines_init(machines, charm_specific)
            # Read now, inside the event, while charm-refresh's view of the relation is live.
            built.append(_Built(machines, charm_specific, bool(machines.in_progress)))

        subprocess_shim = module_shim(importlib.import_module('subprocess'), run=self._tools.run)
        httpx_shim = module_shim(httpx, Client=client, HTTPTransport=_no_transport)
        swaps: list[tuple[object, str, object]] = [
            (importlib.import_module(n), 'subprocess', subprocess_shim) for n in _SUBPROCESS_USERS
        ]
        swaps.append((importlib.import_module(_HTTPX_USER), 'httpx', httpx_shim))
        swaps.append((machines_type, '__init__', init))
        saved = [(module, attr, getattr(module, attr)) for module, attr, _ in swaps]
        env = {
            'JUJU_PRINCIPAL_UNIT': self.principal_unit,
            # The unit's own journal and before-state, in its charm directory.
            'CHARM_UPGRADE_STATE_DIR': str(self.state_dir),
            # The unit's machine paths (charm_upgrade.machine_path): its own, in this test.
            MACHINE_ROOT_ENV: str(self.machine_root),
            **self.extra_env,
        }
        if self.systemd is not None:
            env['PATH'] = f'{self.systemd.bin_dir}{os.pathsep}{os.environ.get("PATH", "")}'
            env['CHARM_UPGRADE_SYSTEMD_DIR'] = str(self.systemd.config_dir)
        if socket != _SNAPD_SOCKET:
            env[_SOCKET_ENV] = socket
        saved_env = {key: os.environ.get(key) for key in env}
        cwd = os.getcwd()
        try:
            for module, attr, value in swaps:
                setattr(module, attr, value)
            os.environ.update(env)
            os.chdir(self.charm_dir)
            with _refresh_scenario.capture_backends(self._set_backend):
                yield
            if self.check_reconcile:
                _check_reconciled(built, self.unit_name)
        finally:
            os.chdir(cwd)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            for module, attr, value in saved:
                setattr(module, attr, value)
            for each in clients:
                each.close()
            self._backend = None

    def _set_backend(self, backend: _refresh_scenario.Backend) -> None:
        self._backend = backend

    def _current_backend(self) -> _refresh_scenario.Backend:
        if self._backend is None:
            raise RuntimeError('a hook tool ran outside a RefreshHarness run')
        return self._backend

    def _goal_unit_names(self) -> list[str] | None:
        if self.goal_units is None:
            return None
        return [f'{self.app_name}/{n}' for n in self.goal_units]


class ReconcileNotCalledError(AssertionError):
    """A refresh was in progress and the charm never called ``reconcile()`` in the event.

    On a real unit nothing fails: the unit never lets the next one refresh if it was
    unhealthy when it refreshed, and the refresh stalls for ever, with no warning. The kit
    fails the test instead (:attr:`RefreshHarness.check_reconcile`).
    """


@dataclasses.dataclass(frozen=True)
class _Built:
    """A ``charm_refresh.Machines`` the charm built in a run, and what it said then."""

    machines: Any
    charm_specific: Any
    in_progress: bool


def _check_reconciled(built: list[_Built], unit: str) -> None:
    from .._refresh import CharmSpecificMachines

    for each in built:
        specific = each.charm_specific
        if not (each.in_progress and isinstance(specific, CharmSpecificMachines)):
            continue
        # reconcile() keeps the Machines it was given: the one built in this run, or none.
        if getattr(specific, '_machines', None) is not each.machines:
            name = type(specific).__name__
            raise ReconcileNotCalledError(
                f'{unit}: a refresh is in progress and the charm never called '
                f'{name}.reconcile() in this event. Call it in every event, right after '
                f'charm_refresh.Machines({name}(...)) is built: '
                '`self.refresh_specific.reconcile(self.refresh)`. Without it a unit that is '
                'unhealthy when it refreshes never lets the next unit refresh, and the '
                'refresh stalls for ever.'
            )
