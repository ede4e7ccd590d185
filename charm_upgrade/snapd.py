# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""snapd's REST API over its unix socket, on the standard library: :class:`Snapd`.

Each request opens its own connection to the socket (``http.client`` over
``AF_UNIX``), has one wall-clock deadline for connecting, sending and reading
the answer together, and closes its socket whatever happens. The client keeps
no state between requests and touches no global, so threads may share it.

Reads (``find_snap``, ``snap``, ``services``, ``change``...) are retried for
``restart_grace`` seconds while snapd's socket is missing or refuses
connections, as it does while snapd restarts. Writes (``refresh``, ``hold``,
``connect``, ``set_conf``, ``sideload``...) are never sent twice on an error:

- a write's deadline (``write_timeout``, 120 s) covers snapd's own retries of
  the store inside the request;
- when a write times out, or its connection breaks after the request was
  sent, the client asks snapd for the changes of that snap before it
  concludes anything: if snapd went on to create the change, the write
  returns its id;
- a conflict with another change of the snap (an auto-refresh) is waited
  out, within ``change_timeout``, and the write is asked again.

Every write returns snapd's change id; :meth:`Snapd.wait_change` and
:meth:`Snapd.wait_done` wait for it. Every failure is one of these
exceptions (from :mod:`charm_upgrade.errors`), each naming the socket, the
request and what to do::

    SnapdError                  (.kind, .status_code, .change_id, .value)
    ├── SnapdUnreachable        connection-error: no socket, refused, EACCES, EMFILE, path too long
    ├── SnapdTimeout            timeout: a request's deadline, or a wait for a change
    ├── SnapdBadResponse        bad-response: not snapd's JSON envelope, truncated, cut short
    ├── ChangeFailed            change-failed: a change ended Error, Undone or Hold (.status, .err)
    └── SnapdAPIError           snapd answered an error: .kind is snapd's own kind
        ├── SnapNotInstalled    snap-not-found, snap-not-installed
        ├── ChangeConflict      snap-change-conflict
        ├── RevisionNotAvailable  snap-revision-not-available, snap-channel-not-available
        └── InterfacesUnchanged interfaces-unchanged

The socket is ``/run/snapd.socket`` unless ``$CHARM_UPGRADE_SNAPD_SOCKET``
names another, which is how the test kit and the integration tier point the
library at a fake or at a container's snapd.

Example::

    snapd = Snapd()
    snapd.wait_done(snapd.install('myapp', revision='182'))
    snapd.wait_done(snapd.hold('myapp'))
    snapd.wait_done(snapd.connect('myapp', 'network-observe'))
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any, Literal, cast

from . import _snapd_http as _http
from .errors import (
    ChangeConflict,
    ChangeFailed,
    SnapdBadResponse,
    SnapdError,
    SnapdTimeout,
    SnapdUnreachable,
    SnapNotInstalled,
)

if TYPE_CHECKING:
    import datetime
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    'DEFAULT_SOCKET',
    'READY_STATUSES',
    'SOCKET_ENV',
    'Change',
    'Connection',
    'Response',
    'ServiceInfo',
    'SnapInfo',
    'Snapd',
    'socket_path',
    'validate_revision',
]

logger = logging.getLogger(__name__)

DEFAULT_SOCKET = '/run/snapd.socket'
"""Where snapd listens on every machine Juju deploys to."""

SOCKET_ENV = 'CHARM_UPGRADE_SNAPD_SOCKET'
"""Environment variable that names another socket (tests, containers)."""

READY_STATUSES = frozenset({'Done', 'Undone', 'Hold', 'Error'})
"""Change statuses for which snapd reports ``ready``."""

_REVISION_RE = re.compile(r'x?[1-9][0-9]*')
_READ_RETRY = 0.2  # seconds between two attempts of a read while snapd restarts

# Polling a change: the interval grows with the time already waited (2 % of
# it), from 5 ms up to poll_interval (0.1 s, reached after 5 s). A change is
# seen ready at most 2 % of its duration late, for about 100 polls in a 1 s
# change and 750 in a 60 s one (600 at a fixed 0.1 s).
_POLL_MIN = 0.005
_POLL_GROWTH = 0.02

# The kind of change each write makes, to find it when snapd's answer is lost.
_KIND_REFRESH = ('refresh-snap',)
_KIND_INSTALL = ('install-snap',)


def socket_path() -> str:
    """Return the path of snapd's socket: ``$CHARM_UPGRADE_SNAPD_SOCKET`` or the default."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def validate_revision(revision: object) -> str:
    """Return ``revision`` if it is a valid snap revision string, else raise ValueError.

    Valid revisions are store revisions (``'182'``) and local ones (``'x2'``).

    Raises:
        ValueError: ``revision`` is not a string of the form ``x?[1-9][0-9]*``
            (an int, ``None`` and the empty string included).
    """
    if not isinstance(revision, str) or not _REVISION_RE.fullmatch(revision):
        raise ValueError(
            f'invalid snap revision {revision!r}: expected a string such as "182" or "x2" '
            '(check [snap.revisions] in refresh_versions.toml)'
        )
    return revision


# Answers -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Response:
    """snapd's answer to a request that succeeded: its JSON envelope, decoded.

    Attributes:
        type: ``sync`` (the result is in :attr:`result`) or ``async`` (a
            change was made: :attr:`change`).
        status_code: The HTTP status (200, 202).
        status: Its reason phrase (``OK``, ``Accepted``).
        result: The decoded ``result``: a dict, a list, ``None``...
        change: The id of the change an ``async`` answer made, else None.
        maintenance: snapd's ``maintenance`` object while it or the system
            restarts (``{"kind": "daemon-restart", "message": ...}``), else None.
    """

    type: str
    status_code: int
    status: str
    result: Any
    change: str | None = None
    maintenance: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class ServiceInfo:
    """One service (daemon) of a snap, as snapd reports it.

    Attributes:
        snap: The snap's name.
        name: The app's name within the snap.
        enabled: Whether the service starts at boot.
        active: Whether the service is running.
    """

    snap: str
    name: str
    enabled: bool
    active: bool

    @property
    def full_name(self) -> str:
        """The name snapd and the ``snap`` command know the service by (``snap.app``)."""
        return f'{self.snap}.{self.name}'


@dataclasses.dataclass(frozen=True)
class SnapInfo:
    """An installed snap, as snapd reports it.

    Attributes:
        name: The snap's name.
        revision: The installed revision (``'182'``, or ``'x1'`` for local installs).
        version: The snap's version string.
        channel: The channel the snap tracks, or, if it tracks none, the one
            its revision came from; ``''`` for local installs.
        tracking_channel: snapd's ``tracking-channel``: the channel refreshes
            follow, ``''`` when none (local installs).
        confinement: ``strict``, ``classic`` or ``devmode``.
        hold: Until when refreshes of the snap are held (snapd's RFC 3339
            time; a hold "forever" is some centuries away), ``''`` if not held.
    """

    name: str
    revision: str
    version: str
    channel: str
    tracking_channel: str = ''
    confinement: str = ''
    hold: str = ''

    @property
    def held(self) -> bool:
        """Whether refreshes of the snap are held."""
        return bool(self.hold)

    @classmethod
    def from_result(cls, result: Any) -> SnapInfo:
        """Build a SnapInfo from one snap of ``GET /v2/snaps`` or ``GET /v2/snaps/{name}``.

        Raises:
            SnapdBadResponse: ``result`` is not a snap (no name or no revision).
        """
        if not isinstance(result, dict):
            raise SnapdBadResponse(
                f'snapd reported a snap as {result!r:.200}', kind='bad-response'
            )
        item: dict[str, Any] = result  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(item.get('name'), str) or 'revision' not in item:
            raise SnapdBadResponse(
                f'snapd reported a snap without a name or a revision: {item!r:.200}',
                kind='bad-response',
            )
        tracking = str(item.get('tracking-channel') or '')
        return cls(
            name=item['name'],
            revision=str(item['revision']),
            version=str(item.get('version', '')),
            channel=tracking or str(item.get('channel') or ''),
            tracking_channel=tracking,
            confinement=str(item.get('confinement', '')),
            hold=str(item.get('hold') or ''),
        )


@dataclasses.dataclass(frozen=True)
class Change:
    """A snapd change (an asynchronous operation).

    Attributes:
        id: snapd's change id.
        kind: Such as ``refresh-snap`` or ``service-control``.
        summary: snapd's one-line description.
        status: ``Do``, ``Doing``, ``Done``, ``Undoing``, ``Error`` and so on.
        ready: Whether snapd will do nothing more in this change.
        err: snapd's error text when the change failed, else ``''``.
        spawn_time: When the change was created (snapd's RFC 3339 text).
        ready_time: When it became ready, or ``''``.
    """

    id: str
    kind: str
    summary: str
    status: str
    ready: bool
    err: str = ''
    spawn_time: str = ''
    ready_time: str = ''

    @classmethod
    def from_result(cls, result: Any) -> Change:
        """Build a Change from the ``result`` of ``GET /v2/changes/{id}``.

        Raises:
            SnapdBadResponse: ``result`` is not a change.
        """
        if not isinstance(result, dict) or 'id' not in result or 'status' not in result:
            raise SnapdBadResponse(
                f'snapd answered a change request with {result!r:.200}, which is not a change',
                kind='bad-response',
            )
        r: dict[str, Any] = result  # pyright: ignore[reportUnknownVariableType]
        return cls(
            id=str(r['id']),
            kind=str(r.get('kind', '')),
            summary=str(r.get('summary', '')),
            status=str(r['status']),
            ready=bool(r.get('ready', r['status'] in READY_STATUSES)),
            err=str(r.get('err', '')),
            spawn_time=str(r.get('spawn-time', '')),
            ready_time=str(r.get('ready-time', '')),
        )


@dataclasses.dataclass(frozen=True)
class Connection:
    """An established interface connection of a snap's plug to a slot.

    Attributes:
        plug_snap: The snap with the plug.
        plug: The plug's name.
        slot_snap: The snap with the slot (``snapd`` or ``core`` for the
            system's own slots).
        slot: The slot's name.
        interface: The interface, such as ``network-observe``.
        manual: Whether it was connected by hand (``snap connect``, or
            :meth:`Snapd.connect`) rather than automatically.
    """

    plug_snap: str
    plug: str
    slot_snap: str
    slot: str
    interface: str
    manual: bool = False


# The client -----------------------------------------------------------------------


class Snapd:
    """A client of snapd's REST API with deadlines and typed errors.

    Args:
        socket: snapd's socket; by default :func:`socket_path`, read when each
            request is sent.
        request_timeout: Seconds a read may take (connect, send and answer).
        write_timeout: Seconds a write may take. snapd asks the store inside
            a refresh or install request and retries it, so this is long.
        change_timeout: Seconds a wait for a change (or for a snap's changes,
            or out of a conflict) may take.
        poll_interval: The longest pause between two polls of a change.
        restart_grace: Seconds a read keeps retrying while snapd's socket is
            missing or refuses connections (snapd restarting).
        monotonic: The clock of the waits between requests (polls, retries,
            conflicts); :func:`time.monotonic` by default. A request's own
            deadline is always on the real clock, as the socket's timeouts are.
        sleep: How the client pauses between requests; :func:`time.sleep` by default.
    """

    def __init__(
        self,
        *,
        socket: str | None = None,
        request_timeout: float = 30.0,
        write_timeout: float = 120.0,
        change_timeout: float = 600.0,
        poll_interval: float = 0.1,
        restart_grace: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._socket = socket
        self.request_timeout = request_timeout
        self.write_timeout = write_timeout
        self.change_timeout = change_timeout
        self.poll_interval = poll_interval
        self.restart_grace = restart_grace
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def socket_path(self) -> str:
        """The socket the next request goes to."""
        return self._socket or socket_path()

    # Reads -----------------------------------------------------------------

    def find_snap(self, name: str) -> SnapInfo | None:
        """Return the installed snap ``name``, or None if it is not installed.

        Raises:
            SnapdError: snapd could not be asked or answered nonsense.
        """
        what = f'the snap {name!r}'
        for item in _list(self._get('/v2/snaps', {'snaps': name}, what=what), what):
            info = SnapInfo.from_result(item)
            if info.name == name:
                return info
        return None

    def snap(self, name: str) -> SnapInfo:
        """Return the installed snap ``name``.

        Raises:
            SnapNotInstalled: the snap is not installed (kind ``snap-not-found``).
            SnapdError: snapd could not be asked.
        """
        info = self.find_snap(name)
        if info is None:
            raise SnapNotInstalled(
                f'snap {name!r} is not installed on this machine; install it before '
                'managing its services or refreshing it',
                kind='snap-not-found',
                status_code=404,
                value=name,
            )
        return info

    def services(self, snap: str) -> list[ServiceInfo]:
        """Return the services of the installed snap ``snap``, in snapd's order.

        Raises:
            SnapNotInstalled: the snap is not installed.
            SnapdError: snapd could not be asked.
        """
        what = f'the services of snap {snap!r}'
        result = self._get('/v2/apps', {'select': 'service', 'names': snap}, what=what)
        services: list[ServiceInfo] = []
        for item in _list(result, what):
            app = _dict(item, what)
            if 'name' not in app:
                raise _bad(what, app)
            # snapd omits `enabled` and `active` when they are false.
            services.append(
                ServiceInfo(
                    snap=str(app.get('snap', snap)),
                    name=str(app['name']),
                    enabled=bool(app.get('enabled', False)),
                    active=bool(app.get('active', False)),
                )
            )
        return services

    def connections(self, snap: str) -> list[Connection]:
        """Return the established connections of the plugs and slots of ``snap``.

        Raises:
            SnapdError: snapd could not be asked.
        """
        what = f'the connections of snap {snap!r}'
        result = _dict(self._get('/v2/connections', {'snap': snap}, what=what), what)
        connections: list[Connection] = []
        for item in _list(result.get('established'), what):
            try:
                plug, slot = item['plug'], item['slot']
                connections.append(
                    Connection(
                        plug_snap=str(plug['snap']),
                        plug=str(plug['plug']),
                        slot_snap=str(slot['snap']),
                        slot=str(slot['slot']),
                        interface=str(item.get('interface', '')),
                        manual=bool(item.get('manual', False)),
                    )
                )
            except (TypeError, KeyError, AttributeError):
                raise _bad(what, result) from None
        return connections

    def get_conf(self, snap: str, *keys: str) -> dict[str, Any]:
        """Return the snap's configuration: all of it, or the ``keys`` asked (dotted paths).

        Raises:
            SnapdAPIError: a key is not set (kind ``option-not-found``).
            SnapdError: snapd could not be asked.
        """
        what = f'the configuration of snap {snap!r}'
        query = {'keys': ','.join(keys)} if keys else None
        return _dict(self._get(f'/v2/snaps/{_http.segment(snap)}/conf', query, what=what), what)

    def change(self, change_id: str) -> Change:
        """Return the change ``change_id`` as snapd reports it now.

        Raises:
            SnapdAPIError: snapd does not know the change.
            SnapdError: snapd could not be asked.
        """
        what = f'change {change_id}'
        return Change.from_result(
            self._get(f'/v2/changes/{_http.segment(change_id)}', None, what=what)
        )

    def changes_in_progress(self, snap: str) -> list[Change]:
        """Return snapd's changes for ``snap`` that are not ready yet.

        Only this snap's changes: snapd may hold unrelated changes in ``Doing``
        for ever (``become-operational`` on a machine with no store).
        """
        return [c for c in self._changes(snap, 'in-progress') if not c.ready]

    def _changes(self, snap: str, select: str) -> list[Change]:
        what = f'the changes of snap {snap!r}'
        result = self._get('/v2/changes', {'for': snap, 'select': select}, what=what)
        return [Change.from_result(item) for item in _list(result, what)]

    # Waits -----------------------------------------------------------------

    def wait_change(self, change_id: str, *, timeout: float | None = None) -> Change:
        """Poll the change ``change_id`` until it is ready, and return it, whatever its status.

        The pause between polls grows with the time already waited (2 % of
        it, from 5 ms up to ``poll_interval``), so a short change is seen
        ready within milliseconds and a long one costs few requests. Giving up
        does not cancel the change in snapd: it goes on, and a later call can
        wait for it again.

        Args:
            change_id: snapd's change id, as a write returned it.
            timeout: Seconds to wait; ``change_timeout`` by default.

        Raises:
            SnapdTimeout: the change is not ready within ``timeout``; its
                ``change_id`` names the change.
            SnapdError: snapd could not be asked.
        """
        limit = self.change_timeout if timeout is None else timeout
        began = self._monotonic()
        deadline = began + limit
        while True:
            change = self.change(change_id)
            if change.ready:
                return change
            now = self._monotonic()
            if now >= deadline:
                raise SnapdTimeout(
                    f'snapd change {change_id} ({change.summary or change.kind}) is still '
                    f'{change.status} after {limit:g} s; it goes on in snapd: see '
                    f'`snap tasks {change_id}`, and wait for it again',
                    kind='timeout',
                    change_id=change_id,
                )
            interval = min(self.poll_interval, max(_POLL_MIN, (now - began) * _POLL_GROWTH))
            self._sleep(min(interval, deadline - now))

    def wait_done(self, change_id: str, *, timeout: float | None = None) -> Change:
        """Wait for the change ``change_id`` (see :meth:`wait_change`); raise unless it is Done.

        Example::

            snapd.wait_done(snapd.refresh('myapp', '183'))

        Raises:
            ChangeFailed: the change ended ``Error``, ``Undone`` or ``Hold``;
                ``status`` and ``err`` say how.
            SnapdTimeout: the change is not ready within ``timeout``.
            SnapdError: snapd could not be asked.
        """
        change = self.wait_change(change_id, timeout=timeout)
        if change.status != 'Done':
            raise ChangeFailed(
                f'snapd change {change.id} ({change.summary or change.kind}) ended '
                f'{change.status}: {change.err or "no error text"}; see `snap tasks {change.id}`',
                change_id=change.id,
                status=change.status,
                err=change.err,
            )
        return change

    def wait_snap_idle(self, snap: str, *, timeout: float | None = None) -> list[Change]:
        """Wait until no change of ``snap`` is in progress; return the ones waited for.

        Raises:
            SnapdTimeout: a change is still in progress after ``timeout``.
            SnapdError: snapd could not be asked.
        """
        deadline = self._monotonic() + (self.change_timeout if timeout is None else timeout)
        waited: list[Change] = []
        while pending := self.changes_in_progress(snap):
            for change in pending:
                logger.info(
                    'Waiting for snapd change %s (%s) of snap %r', change.id, change.kind, snap
                )
                remaining = max(0.0, deadline - self._monotonic())
                waited.append(self.wait_change(change.id, timeout=remaining))
        return waited

    # Writes ----------------------------------------------------------------

    def refresh(
        self, snap: str, revision: str | None = None, *, channel: str | None = None
    ) -> str:
        """Ask snapd to refresh ``snap``, to ``revision`` if given; return the change id.

        A snap already at ``revision`` is refreshed all the same (snapd
        restarts its services): compare the revision first.

        Raises:
            ValueError: ``revision`` is not a valid revision.
            SnapdError: snapd refused the refresh or could not be asked.
        """
        body = _store_action('refresh', revision, channel)
        what = f'the refresh of snap {snap!r}' + (f' to revision {revision}' if revision else '')
        return self._snap_action(snap, body, what=what, kinds=_KIND_REFRESH)

    def install(
        self,
        snap: str,
        *,
        revision: str | None = None,
        channel: str | None = None,
        classic: bool = False,
    ) -> str:
        """Ask snapd to install ``snap`` from the store; return the change id.

        Args:
            snap: The snap's name.
            revision: The revision to install; the channel's by default.
            channel: The channel to track, such as ``latest/stable``.
            classic: Allow a snap with classic confinement (snapd refuses one
                without it: kind ``snap-needs-classic``).

        Raises:
            ValueError: ``revision`` is given and not a valid revision.
            RevisionNotAvailable: the store has no such revision or channel.
            SnapdError: snapd refused the install (kind ``snap-already-installed``
                when the snap is there) or could not be asked.
        """
        body = _store_action('install', revision, channel)
        if classic:
            body['classic'] = True
        what = f'the install of snap {snap!r}' + (f' at revision {revision}' if revision else '')
        return self._snap_action(snap, body, what=what, kinds=_KIND_INSTALL)

    def sideload(
        self,
        snap: str,
        path: str | os.PathLike[str],
        *,
        dangerous: bool = False,
        classic: bool = False,
    ) -> str:
        """Install or refresh ``snap`` from the local file ``path``; return the change id.

        The file is streamed to snapd, not read into memory. An installed snap
        gets the next local revision (``x1``, ``x2``...).

        Args:
            snap: The snap's name (the file's), to wait out a conflicting
                change of it and to find its change if snapd's answer is lost.
            path: The ``.snap`` file, such as a charm resource.
            dangerous: Install a file that no assertion in snapd vouches for
                (a local build). Without it, snapd refuses such a file.
            classic: Allow a snap with classic confinement.

        Raises:
            OSError: the file cannot be opened.
            SnapdError: snapd refused the file or could not be asked.
        """
        fields = {'dangerous': dangerous, 'classic': classic}
        with _http.Upload(os.fspath(path), {k: 'true' for k, v in fields.items() if v}) as upload:
            what = f'the install of snap {snap!r} from {upload.path}'
            request = _http.Request(
                'POST', '/v2/snaps', None, upload.chunks, upload.headers, what, upload.length
            )
            return self._write(snap, request, kinds=_KIND_INSTALL)

    def hold(
        self,
        snap: str,
        *,
        duration: datetime.timedelta | None = None,
        level: Literal['general', 'auto-refresh'] = 'general',
    ) -> str:
        """Hold refreshes of ``snap``; return the change id. Needs snapd 2.58 or later.

        An explicit refresh to a revision (charm-refresh's) still goes
        through on a held snap: the hold keeps snapd's automatic refreshes
        from moving the revision behind the charm.

        Args:
            snap: The snap's name.
            duration: How long; ``None`` holds for ever.
            level: ``general`` holds every refresh of the snap that is not
                asked by name; ``auto-refresh`` only automatic refreshes.

        Raises:
            SnapdAPIError: snapd refused (snapd 2.57 and older: ``unknown action hold``).
            SnapdError: snapd could not be asked.
        """
        until = 'forever'
        if duration is not None:
            import datetime

            end = datetime.datetime.now(datetime.timezone.utc) + duration
            until = end.strftime('%Y-%m-%dT%H:%M:%SZ')
        body = {'action': 'hold', 'time': until, 'hold-level': level}
        what = f'the hold of refreshes of snap {snap!r} ({level}, until {until})'
        return self._snap_action(snap, body, what=what, kinds=('hold-snap',))

    def unhold(self, snap: str) -> str:
        """Remove the hold on refreshes of ``snap``; return the change id. Needs snapd 2.58.

        Raises:
            SnapdAPIError: snapd refused (snapd 2.57 and older: ``unknown action unhold``).
            SnapdError: snapd could not be asked.
        """
        what = f'the removal of the refresh hold of snap {snap!r}'
        return self._snap_action(snap, {'action': 'unhold'}, what=what, kinds=('unhold-snap',))

    def connect(self, snap: str, plug: str, *, slot_snap: str = '', slot: str = '') -> str:
        """Connect the plug ``snap:plug`` to a slot; return the change id.

        Args:
            snap: The snap with the plug.
            plug: The plug's name.
            slot_snap: The snap with the slot; by default the system's (``snapd``).
            slot: The slot's name; by default snapd picks the one matching the plug.

        Raises:
            SnapdAPIError: snapd refused (no such plug or slot, the snap not installed).
            SnapdError: snapd could not be asked.
        """
        return self._interfaces('connect', snap, plug, slot_snap, slot)

    def disconnect(self, snap: str, plug: str, *, slot_snap: str = '', slot: str = '') -> str:
        """Disconnect the plug ``snap:plug`` (from every slot by default); return the change id.

        Raises:
            InterfacesUnchanged: the plug was not connected: nothing to do.
            SnapdAPIError: snapd refused.
            SnapdError: snapd could not be asked.
        """
        return self._interfaces('disconnect', snap, plug, slot_snap, slot)

    def _interfaces(self, action: str, snap: str, plug: str, slot_snap: str, slot: str) -> str:
        body = {
            'action': action,
            'plugs': [{'snap': snap, 'plug': plug}],
            'slots': [{'snap': slot_snap, 'slot': slot}],
        }
        target = f'{slot_snap}:{slot}' if slot_snap or slot else "the system's slot"
        what = f'the {action} of {snap}:{plug} ' + ('to ' if action == 'connect' else 'from ')
        request = _http.Request(
            'POST',
            '/v2/interfaces',
            None,
            _http.json_body(body),
            _http.JSON_HEADERS,
            what + target,
        )
        return self._write(snap, request, kinds=(f'{action}-snap',))

    def set_conf(self, snap: str, values: Mapping[str, Any]) -> str:
        """Set configuration options of ``snap`` (dotted paths allowed); return the change id.

        A value of ``None`` unsets the option. snapd runs the snap's
        ``configure`` hook in the change, which may refuse the values.

        Raises:
            SnapNotInstalled: the snap is not installed.
            SnapdError: snapd refused or could not be asked.
        """
        what = f'the configuration of snap {snap!r} ({", ".join(values) or "nothing"})'
        request = _http.Request(
            'PUT',
            f'/v2/snaps/{_http.segment(snap)}/conf',
            None,
            _http.json_body(dict(values)),
            _http.JSON_HEADERS,
            what,
        )
        return self._write(snap, request, kinds=('configure-snap',))

    def stop(self, names: Sequence[str], *, disable: bool) -> str:
        """Ask snapd to stop services; return the change id.

        Args:
            names: ``snap`` (all its services) or ``snap.app`` names, of one snap.
            disable: Also keep them from starting at boot and after a refresh.
        """
        return self._service_control('stop', names, 'disable', disable)

    def start(self, names: Sequence[str], *, enable: bool) -> str:
        """Ask snapd to start services; return the change id.

        Args:
            names: ``snap`` (all its services) or ``snap.app`` names, of one snap.
            enable: Also start them at boot.
        """
        return self._service_control('start', names, 'enable', enable)

    def _service_control(self, action: str, names: Sequence[str], flag: str, on: bool) -> str:
        names = list(names)
        snap = _snap_of(names)
        body = {'action': action, 'names': names, flag: on}
        what = f'the {action} of {", ".join(names)}'
        request = _http.Request(
            'POST', '/v2/apps', None, _http.json_body(body), _http.JSON_HEADERS, what
        )
        return self._write(snap, request, kinds=('service-control',))

    # Any request -----------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Response:
        """Send any request to snapd; return its decoded answer.

        ``GET`` requests are retried while snapd restarts, as every read is;
        other methods are sent once, with no wait out of a conflict and no
        search for a change whose answer was lost.

        Args:
            method: ``GET``, ``POST``, ``PUT``...
            path: Such as ``/v2/aliases``.
            query: Query parameters.
            body: Sent as JSON when not None.
            timeout: The request's deadline in seconds; ``request_timeout``
                for ``GET``, ``write_timeout`` otherwise.

        Example::

            aliases = snapd.request('GET', '/v2/aliases').result

        Raises:
            ValueError: ``path`` does not start with ``/``.
            SnapdAPIError: snapd answered an error.
            SnapdError: snapd could not be asked or answered nonsense.
        """
        if not path.startswith('/'):
            raise ValueError(f'snapd request path {path!r} must start with "/", as "/v2/snaps"')
        method = method.upper()
        data = _http.json_body(body) if body is not None else None
        headers = _http.JSON_HEADERS if body is not None else {}
        request = _http.Request(method, path, query, data, headers, f'{method} {path}')
        if method == 'GET':
            return self._read(request, timeout)
        return self._send(request, self.write_timeout if timeout is None else timeout)

    # Plumbing --------------------------------------------------------------

    def _get(self, path: str, query: Mapping[str, str] | None, *, what: str) -> object:
        return self._read(_http.Request('GET', path, query, None, {}, what), None).result

    def _read(self, request: _http.Request, timeout: float | None) -> Response:
        limit = self.request_timeout if timeout is None else timeout
        deadline = self._monotonic() + self.restart_grace
        while True:
            try:
                return self._send(request, limit)
            except SnapdUnreachable as e:
                # snapd refuses connections, or has no socket, while it restarts.
                if not _http.restarting(e) or self._monotonic() >= deadline:
                    raise
                logger.debug('snapd unreachable (%s), retrying %s', e.__cause__, request.what)
                self._sleep(min(_READ_RETRY, self.restart_grace))

    def _snap_action(
        self, snap: str, body: dict[str, Any], *, what: str, kinds: tuple[str, ...]
    ) -> str:
        request = _http.Request(
            'POST',
            f'/v2/snaps/{_http.segment(snap)}',
            None,
            _http.json_body(body),
            _http.JSON_HEADERS,
            what,
        )
        return self._write(snap, request, kinds=kinds)

    def _write(self, snap: str, request: _http.Request, *, kinds: tuple[str, ...]) -> str:
        deadline = self._monotonic() + self.change_timeout
        while True:
            sent_at = time.time()
            try:
                response = self._send(request, self.write_timeout)
            except ChangeConflict as e:
                if self._monotonic() >= deadline:
                    raise
                # Another change of this snap (an auto-refresh, a hook killed
                # earlier) holds it: wait for that change, then ask again.
                logger.info('snapd: %s; waiting for it before %s', e.message, request.what)
                remaining = max(0.0, deadline - self._monotonic())
                self.wait_snap_idle(e.snap or snap, timeout=remaining)
                self._sleep(self.poll_interval)
                continue
            except (SnapdTimeout, SnapdUnreachable) as e:
                if not e.request_sent:
                    raise
                # snapd had the whole request: it may have made the change anyway.
                change = self._late_change(snap, kinds, sent_at)
                if change is None:
                    raise type(e)(
                        f'{e.message}; snapd has made no {" or ".join(kinds)} change of snap '
                        f'{snap!r} since: it did not act on the request (see `snap changes '
                        f'{snap}`)',
                        kind=e.kind,
                        request_sent=True,
                    ) from e
                logger.warning(
                    'snapd did not answer %s, but made change %s (%s, %s) for it',
                    request.what,
                    change.id,
                    change.kind,
                    change.status,
                )
                return change.id
            if response.change is None:
                raise SnapdBadResponse(
                    f'snapd accepted {request.what} ({request.line}) but named no change: '
                    f'{response!r:.300}',
                    kind='bad-response',
                )
            return response.change

    def _late_change(self, snap: str, kinds: tuple[str, ...], sent_at: float) -> Change | None:
        """The change a write made although its answer was lost, if snapd made one.

        A change of the snap of the write's kind that is still in progress, or
        one that is ready and was spawned after the request was sent (snapd
        runs on this machine's clock): the newest such.
        """
        try:
            changes = self._changes(snap, 'all')
        except SnapdError as e:
            logger.warning('Cannot ask snapd for the changes of snap %r: %s', snap, e)
            return None
        found = [
            c
            for c in changes
            if c.kind in kinds and (not c.ready or _http.parse_time(c.spawn_time) >= sent_at)
        ]
        return max(found, key=lambda c: int(c.id) if c.id.isdigit() else 0, default=None)

    def _send(self, request: _http.Request, timeout: float) -> Response:
        """One request and its decoded answer, within ``timeout`` seconds of the real clock."""
        envelope = _http.exchange(self.socket_path, request, timeout)
        return Response(
            type=envelope['type'],
            status_code=envelope['status-code'],
            status=str(envelope.get('status', '')),
            result=envelope.get('result'),
            change=envelope.get('change'),
            maintenance=envelope.get('maintenance'),
        )


def _store_action(action: str, revision: str | None, channel: str | None) -> dict[str, Any]:
    """The body of a refresh or install: the revision (validated) and channel if given."""
    body: dict[str, Any] = {'action': action}
    if revision is not None:
        body['revision'] = validate_revision(revision)
    if channel:
        body['channel'] = channel
    return body


def _bad(what: str, answer: object) -> SnapdBadResponse:
    return SnapdBadResponse(
        f"snapd's answer about {what} is not what snapd sends: {answer!r:.300}",
        kind='bad-response',
    )


def _list(result: object, what: str) -> list[Any]:
    if not isinstance(result, list):
        raise _bad(what, result)
    return cast('list[Any]', result)


def _dict(result: object, what: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise _bad(what, result)
    return cast('dict[str, Any]', result)


def _snap_of(names: Sequence[str]) -> str:
    if not names:
        raise ValueError('no snap services named: give a snap name or snap.app names')
    snaps = {name.split('.', 1)[0] for name in names}
    if len(snaps) != 1:
        raise ValueError(f'services of more than one snap named together: {sorted(snaps)}')
    return snaps.pop()
