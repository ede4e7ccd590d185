# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The one place charm-upgrade talks to snapd, through snap-http.

snap-http sends each request over a fresh unix socket and sets no time limit,
so a hung snapd would hang the hook. :class:`Snapd` bounds every request (a
socket timeout) and every wait for a change (a deadline), waits out a
``snap-change-conflict`` for the snap concerned, tolerates a snapd that is
restarting while it reads, and turns every failure into :class:`~charm_upgrade.SnapdError`.

The socket is ``/run/snapd.socket`` unless ``$CHARM_UPGRADE_SNAPD_SOCKET``
names another, which is how the test kit and the integration tier point the
library at a fake or at a container's snapd.

Not thread-safe: snap-http reads its socket path from a module global, and the
request time limit is applied through the socket module's default timeout for
the duration of each request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import logging
import os
import re
import socket
import time
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import SnapdError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Sequence

    import snap_http

__all__ = [
    'DEFAULT_SOCKET',
    'READY_STATUSES',
    'SOCKET_ENV',
    'Change',
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
"""Change statuses for which snapd reports ``ready``; snap-http's own sets differ."""

_REVISION_RE = re.compile(r'x?[1-9][0-9]*')
_T = TypeVar('_T')


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
        channel: The channel the snap tracks, or ``''`` (local installs).
    """

    name: str
    revision: str
    version: str
    channel: str


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
            SnapdError: ``result`` is not a change.
        """
        if not isinstance(result, dict) or 'id' not in result or 'status' not in result:
            raise SnapdError(
                f'snapd answered a change request with {result!r}, which is not a change',
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


class Snapd:
    """A bounded, error-mapping client of snapd's REST API.

    Args:
        socket: snapd's socket; by default :func:`socket_path`, read when each
            request is sent.
        request_timeout: Seconds one request may take.
        change_timeout: Seconds a wait for a change (or for a snap's changes) may take.
        poll_interval: Seconds between two polls of a change.
        restart_grace: Seconds a read keeps retrying while snapd refuses
            connections (snapd restarting); writes are never retried.
    """

    def __init__(
        self,
        *,
        socket: str | None = None,
        request_timeout: float = 30.0,
        change_timeout: float = 600.0,
        poll_interval: float = 0.1,
        restart_grace: float = 10.0,
    ):
        self._socket = socket
        self.request_timeout = request_timeout
        self.change_timeout = change_timeout
        self.poll_interval = poll_interval
        self.restart_grace = restart_grace

    # Reads -----------------------------------------------------------------

    def find_snap(self, name: str) -> SnapInfo | None:
        """Return the installed snap ``name``, or None if it is not installed.

        Raises:
            SnapdError: snapd could not be asked or answered nonsense.
        """
        import snap_http

        response = self._read(lambda: snap_http.list(snaps=[name]), what=f'snap {name!r}')
        result = response.result
        if not isinstance(result, list):
            raise self._bad_response(f'the list of snaps for {name!r}', result)
        for item in result:
            if isinstance(item, dict):
                snap: dict[str, Any] = item  # pyright: ignore[reportUnknownVariableType]
                if snap.get('name', name) == name:
                    return _snap_info(name, snap)
        return None

    def snap(self, name: str) -> SnapInfo:
        """Return the installed snap ``name``.

        Raises:
            SnapdError: the snap is not installed (kind ``snap-not-found``), or
                snapd could not be asked.
        """
        info = self.find_snap(name)
        if info is None:
            raise SnapdError(
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
            SnapdError: the snap is not installed, or snapd could not be asked.
        """
        import snap_http

        response = self._read(
            lambda: snap_http.get_apps([snap], services_only=True), what=f'services of {snap!r}'
        )
        result = response.result
        if not isinstance(result, list):
            raise self._bad_response(f'the services of {snap!r}', result)
        services: list[ServiceInfo] = []
        for item in result:
            if not isinstance(item, dict) or 'name' not in item:
                raise self._bad_response(f'the services of {snap!r}', result)
            app: dict[str, Any] = item  # pyright: ignore[reportUnknownVariableType]
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

    def change(self, change_id: str) -> Change:
        """Return the change ``change_id`` as snapd reports it now.

        Raises:
            SnapdError: snapd does not know the change, or could not be asked.
        """
        import snap_http

        response = self._read(
            lambda: snap_http.check_change(change_id), what=f'change {change_id}'
        )
        return Change.from_result(response.result)

    def changes_in_progress(self, snap: str) -> list[Change]:
        """Return snapd's changes for ``snap`` that are not ready yet.

        Only this snap's changes: snapd may hold unrelated changes in ``Doing``
        for ever (``become-operational`` on a machine with no store).
        """
        import snap_http.http

        response = self._read(
            lambda: snap_http.http.get(
                '/changes', query_params={'for': snap, 'select': 'in-progress'}
            ),
            what=f'changes of {snap!r}',
        )
        result = response.result
        if not isinstance(result, list):
            raise self._bad_response(f'the changes of {snap!r}', result)
        changes = [Change.from_result(item) for item in result]
        return [c for c in changes if not c.ready]

    # Waits -----------------------------------------------------------------

    def wait_change(self, change_id: str, *, timeout: float | None = None) -> Change:
        """Poll the change ``change_id`` until it is ready, and return it.

        Giving up does not cancel the change in snapd: it goes on, and a later
        call can wait for it again.

        Raises:
            SnapdError: the change is not ready within ``timeout`` (kind
                ``timeout``), or snapd could not be asked.
        """
        deadline = time.monotonic() + (self.change_timeout if timeout is None else timeout)
        while True:
            change = self.change(change_id)
            if change.ready:
                return change
            if time.monotonic() >= deadline:
                raise SnapdError(
                    f'snapd change {change_id} ({change.summary or change.kind}) is still '
                    f'{change.status} after {timeout or self.change_timeout:g} s; it goes on in '
                    f'snapd: see `snap tasks {change_id}`',
                    kind='timeout',
                    change_id=change_id,
                )
            time.sleep(self.poll_interval)

    def wait_snap_idle(self, snap: str, *, timeout: float | None = None) -> list[Change]:
        """Wait until no change of ``snap`` is in progress; return the ones waited for.

        Raises:
            SnapdError: a change is still in progress after ``timeout``.
        """
        deadline = time.monotonic() + (self.change_timeout if timeout is None else timeout)
        waited: list[Change] = []
        while pending := self.changes_in_progress(snap):
            for change in pending:
                logger.info(
                    'Waiting for snapd change %s (%s) of snap %r', change.id, change.kind, snap
                )
                waited.append(
                    self.wait_change(change.id, timeout=max(0.0, deadline - time.monotonic()))
                )
        return waited

    # Writes ----------------------------------------------------------------

    def refresh(self, snap: str, revision: str) -> str:
        """Ask snapd to refresh ``snap`` to ``revision``; return the change id.

        Does not wait for the change: see :meth:`wait_change`.

        Raises:
            ValueError: ``revision`` is not a valid revision.
            SnapdError: snapd refused the refresh or could not be asked.
        """
        import snap_http

        validate_revision(revision)
        return self._write(
            snap,
            lambda: snap_http.refresh(snap, revision=revision),
            what=f'refresh of snap {snap!r} to revision {revision}',
        )

    def install(
        self, snap: str, *, revision: str | None = None, channel: str | None = None
    ) -> str:
        """Ask snapd to install ``snap`` from the store; return the change id.

        Raises:
            ValueError: ``revision`` is given and not a valid revision.
            SnapdError: snapd refused the install or could not be asked.
        """
        import snap_http

        if revision is not None:
            validate_revision(revision)
        return self._write(
            snap,
            lambda: snap_http.install(snap, revision=revision, channel=channel),
            what=f'install of snap {snap!r}' + (f' at revision {revision}' if revision else ''),
        )

    def stop(self, names: Sequence[str], *, disable: bool) -> str:
        """Ask snapd to stop services; return the change id.

        Args:
            names: ``snap`` (all its services) or ``snap.app`` names, of one snap.
            disable: Also keep them from starting at boot and after a refresh.
        """
        import snap_http

        names = list(names)
        return self._write(
            _snap_of(names),
            lambda: snap_http.stop_all(names, disable=disable),
            what=f'stop of {", ".join(names)}',
        )

    def start(self, names: Sequence[str], *, enable: bool) -> str:
        """Ask snapd to start services; return the change id.

        Args:
            names: ``snap`` (all its services) or ``snap.app`` names, of one snap.
            enable: Also start them at boot.
        """
        import snap_http

        names = list(names)
        return self._write(
            _snap_of(names),
            lambda: snap_http.start_all(names, enable=enable),
            what=f'start of {", ".join(names)}',
        )

    def run(self, submit: Callable[[], str], *, what: str) -> Change:
        """Submit a change with ``submit`` and wait for it; raise if it failed.

        Raises:
            SnapdError: the change ended in anything but ``Done`` (kind
                ``change-failed``), or timed out.
        """
        change = self.wait_change(submit())
        if change.status != 'Done':
            raise SnapdError(
                f'snapd could not complete the {what}: change {change.id} ended '
                f'{change.status}: {change.err or "no error text"}',
                kind='change-failed',
                change_id=change.id,
            )
        return change

    # Plumbing --------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Generator[None]:
        import snap_http.http

        previous_socket = snap_http.http.SNAPD_SOCKET
        previous_timeout = socket.getdefaulttimeout()
        snap_http.http.SNAPD_SOCKET = self._socket or socket_path()
        socket.setdefaulttimeout(self.request_timeout)
        try:
            yield
        finally:
            socket.setdefaulttimeout(previous_timeout)
            snap_http.http.SNAPD_SOCKET = previous_socket

    def _call(self, request: Callable[[], _T], *, what: str) -> _T:
        import snap_http.http

        try:
            with self._session():
                return request()
        except snap_http.http.SnapdHttpException as e:
            raise _api_error(e, what) from e
        except TimeoutError as e:
            _close_request_socket(e)
            raise SnapdError(
                f'snapd did not answer the request for {what} within '
                f'{self.request_timeout:g} s; check `systemctl status snapd`',
                kind='timeout',
            ) from e
        except (FileNotFoundError, ConnectionError) as e:
            _close_request_socket(e)
            raise SnapdError(
                f'cannot reach snapd at {self._socket or socket_path()} for {what} ({e}); '
                'check that snapd is installed and running',
                kind='connection-error',
            ) from e
        except (ValueError, http.client.HTTPException, TypeError, KeyError) as e:
            _close_request_socket(e)
            raise SnapdError(
                f'snapd sent an unreadable answer for {what} ({type(e).__name__}: {e})',
                kind='bad-response',
            ) from e

    def _read(self, request: Callable[[], _T], *, what: str) -> _T:
        deadline = time.monotonic() + self.restart_grace
        while True:
            try:
                return self._call(request, what=what)
            except SnapdError as e:
                # snapd refuses connections for a few seconds while it restarts.
                if e.kind != 'connection-error' or time.monotonic() >= deadline:
                    raise
                logger.debug('snapd unreachable, retrying the read of %s', what)
                time.sleep(min(0.2, self.restart_grace))

    def _write(
        self, snap: str, request: Callable[[], snap_http.SnapdResponse], *, what: str
    ) -> str:
        deadline = time.monotonic() + self.change_timeout
        while True:
            try:
                response = self._call(request, what=what)
            except SnapdError as e:
                if e.kind != 'snap-change-conflict' or time.monotonic() >= deadline:
                    raise
                # Another change of this snap (an auto-refresh, a hook killed
                # earlier) holds it: wait for that change, then ask again.
                logger.info('snapd: %s; waiting for it before the %s', e.message, what)
                self.wait_snap_idle(snap, timeout=max(0.0, deadline - time.monotonic()))
                time.sleep(self.poll_interval)
                continue
            if not response.change:
                raise SnapdError(
                    f'snapd accepted the {what} but named no change', kind='bad-response'
                )
            return str(response.change)

    @staticmethod
    def _bad_response(what: str, result: object) -> SnapdError:
        return SnapdError(
            f'snapd answered the request for {what} with {result!r:.200}', kind='bad-response'
        )


def _close_request_socket(error: BaseException) -> None:
    # snap-http closes its socket only after a complete answer: after a refused
    # connection, a timeout or a broken answer the socket (and the response
    # reading from it) stay open until garbage-collected. Close them now.
    tb = error.__traceback__
    while tb is not None:
        local_vars = tb.tb_frame.f_locals
        response = local_vars.get('response')
        if isinstance(response, http.client.HTTPResponse):
            response.close()
        sock = local_vars.get('sock')
        if isinstance(sock, socket.socket):
            sock.close()
        tb = tb.tb_next


def _snap_of(names: Sequence[str]) -> str:
    if not names:
        raise ValueError('no snap services named: give a snap name or snap.app names')
    snaps = {name.split('.', 1)[0] for name in names}
    if len(snaps) != 1:
        raise ValueError(f'services of more than one snap named together: {sorted(snaps)}')
    return snaps.pop()


def _snap_info(name: str, item: dict[str, Any]) -> SnapInfo:
    try:
        return SnapInfo(
            name=str(item.get('name', name)),
            revision=str(item['revision']),
            version=str(item.get('version', '')),
            channel=str(item.get('tracking-channel') or item.get('channel') or ''),
        )
    except KeyError as e:
        raise SnapdError(
            f'snapd reported snap {name!r} without a revision', kind='bad-response'
        ) from e


def _api_error(e: Exception, what: str) -> SnapdError:
    raw = e.args[0] if e.args else b''
    try:
        body = json.loads(raw)
    except (ValueError, TypeError):
        return SnapdError(
            f'snapd refused the {what} with a body that is not JSON: {raw!r:.200}',
            kind='bad-response',
        )
    result: dict[str, Any] = {}
    status_code: int | None = None
    if isinstance(body, dict):
        b: dict[str, Any] = body  # pyright: ignore[reportUnknownVariableType]
        if isinstance(b.get('result'), dict):
            result = b['result']
        code = b.get('status-code')
        status_code = code if isinstance(code, int) else None
    message = str(result.get('message', 'no message'))
    kind = str(result.get('kind', '') or 'error')
    return SnapdError(
        f'snapd refused the {what}: {message} ({kind}, HTTP {status_code})',
        kind=kind,
        status_code=status_code,
        value=result.get('value'),
    )
