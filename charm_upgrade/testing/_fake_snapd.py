# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A fake of snapd's REST API on a real unix socket: :class:`FakeSnapd`.

:mod:`charm_upgrade.snapd`, charm-refresh (httpx) and any other snapd client
talk to it over HTTP/1.1, one request per connection, exactly as they talk to
``/run/snapd.socket``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import selectors
import shutil
import socket
import socketserver
import stat
import sys
import tempfile
import threading
import time
import urllib.parse
import weakref
from typing import TYPE_CHECKING, Any, cast

from ..snapd import SOCKET_ENV
from ._fake_snapd_model import (
    READY_STATUSES,
    ApiError,
    Form,
    RefreshFault,
    Service,
    Snap,
    write_snap_file,
)
from ._fake_snapd_state import SnapdState

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from ._fake_systemd import FakeSystemd

__all__ = ['FakeSnapd', 'RecordedRequest']

_GARBAGE = b'<html><body>snapd is restarting</body></html>'
_MAX_SOCKET_PATH = 105  # bytes: sun_path holds 107 plus NUL, and rebinding adds '.r'


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, in :attr:`FakeSnapd.requests`.

    Attributes:
        method: ``GET``, ``POST``...
        path: The path in origin form without the query, such as ``/v2/snaps/foo``
            (also when the client sent ``http://localhost/v2/snaps/foo``).
        query: The query parameters (the last value of a repeated one).
        body: The decoded JSON body; ``None`` if there was none; the text if it
            was not JSON; for a multipart upload, its fields and, under each
            file field's name, the file's name.
        time: :func:`time.monotonic` when the request was received.

    Example::

        refresh = [r for r in snapd.requests if r.method == 'POST'][0]
        assert refresh.path == '/v2/snaps/foo'
        assert refresh.body == {'action': 'refresh', 'revision': '5'}
    """

    method: str
    path: str
    query: dict[str, str]
    body: Any
    time: float


@dataclasses.dataclass
class _Listener:
    server: _Server
    thread: threading.Thread
    wake_r: socket.socket
    wake_w: socket.socket


class FakeSnapd:
    """A fake snapd serving its REST API on a unix socket, for tests.

    It holds installed snaps with services, plugs, configuration and
    refresh holds, and a store of snaps to install; it runs changes
    asynchronously (a change goes ``Do`` → ``Doing`` → ``Done`` over
    ``change_duration`` seconds), answers with snapd's envelopes and error
    kinds, and can inject faults: failing refreshes, conflicting changes,
    refused connections, unreadable, slow and lost answers. It records every
    request.

    The endpoints: ``/v2/snaps`` (list; sideload of a file made by
    :meth:`write_snap_file`), ``/v2/snaps/{name}`` (refresh, revert, install,
    hold, unhold), ``/v2/snaps/{name}/conf``, ``/v2/apps``, ``/v2/changes``,
    ``/v2/interfaces`` (connect, disconnect), ``/v2/connections`` and
    ``/v2/system-info``. A contract test holds the answers to those of the
    real snapd 2.68 and 2.57.

    Used as a context manager it starts, and points charm-upgrade
    (``$CHARM_UPGRADE_SNAPD_SOCKET``) at itself until the block ends.

    Args:
        socket_path: Where to listen; a socket in a new directory under
            ``/tmp`` by default (unix socket paths must be short, which
            pytest's ``tmp_path`` may not be).
        change_duration: Seconds each change takes from spawn to ready.
        version: The snapd version to behave as: ``2.68`` by default; below
            ``2.58``, as 2.57 (no ``hold``, older error answers).

    Example::

        with FakeSnapd() as fake:
            fake.add_snap('foo', revision='1', revisions=['2'])
            snapd = charm_upgrade.snapd.Snapd()
            change = snapd.wait_done(snapd.refresh('foo', '2'))
            assert fake.revision('foo') == '2'
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        change_duration: float = 0.05,
        version: str = '2.68',
    ):
        self._own_dir: str | None = None
        if socket_path is None:
            self._own_dir = tempfile.mkdtemp(prefix='fake-snapd-', dir='/tmp')
            # Removed by stop(), or at exit if the fake is never stopped.
            weakref.finalize(self, shutil.rmtree, self._own_dir, ignore_errors=True)
            path = os.path.join(self._own_dir, 'snapd.socket')
        else:
            path = str(os.fspath(socket_path))
        self._path: str = os.path.abspath(path)
        if len(os.fsencode(self._path)) > _MAX_SOCKET_PATH:
            raise ValueError(
                f'socket path {self._path!r} is longer than {_MAX_SOCKET_PATH} bytes, '
                'too long for a unix socket; use a shorter one (tempfile.mkdtemp(dir="/tmp"))'
            )
        self._state = SnapdState(change_duration, version)
        self._requests: list[RecordedRequest] = []
        self._garbage = 0
        self._drops = 0
        self._delays: list[float] = []
        # _life guards starting, stopping and the listener; it is never held
        # while joining a thread that may take it (the scheduler's rebind).
        self._life = threading.Lock()
        self._running = False
        self._listener: _Listener | None = None
        self._refusals = 0
        self._stopping = threading.Event()
        self._handlers: dict[threading.Thread, socket.socket] = {}
        self._handlers_lock = threading.Lock()
        self._saved: list[str | None] = []

    # Life cycle -----------------------------------------------------------------

    @property
    def socket_path(self) -> str:
        """The path of the unix socket the fake listens on."""
        return self._path

    @property
    def version(self) -> str:
        """The snapd version the fake answers as (``GET /v2/system-info``)."""
        return self._state.version

    def start(self) -> None:
        """Start listening and running changes; a no-op if already started."""
        with self._life:
            if self._running:
                return
            if self._own_dir is not None and not os.path.isdir(self._own_dir):
                os.mkdir(self._own_dir, 0o700)
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISSOCK(os.lstat(self._path).st_mode):
                    raise FileExistsError(f'{self._path} exists and is not a socket')
                os.unlink(self._path)
            self._stopping.clear()
            self._state.scheduler.start()
            try:
                self._open_listener(self._path)
            except BaseException:
                self._state.scheduler.stop()
                raise
            self._running = True

    def stop(self) -> None:
        """Stop: close the socket, cancel pending change progress, join every thread.

        Changes still in progress stay so. Removes the socket (and its
        directory if the fake made it). A no-op if not running.
        """
        with self._life:
            if not self._running:
                return
            self._running = False
            self._refusals += 1  # a pending re-bind must not happen
            listener, self._listener = self._listener, None
        self._stopping.set()
        if listener is not None:
            self._close_listener(listener)
        self._state.scheduler.stop()
        with self._handlers_lock:
            handlers = list(self._handlers.items())
            self._handlers.clear()
        for thread, conn in handlers:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            thread.join(timeout=5)
        for path in (self._path, self._path + '.r'):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> FakeSnapd:
        self.start()
        self._saved.append(os.environ.get(SOCKET_ENV))
        os.environ[SOCKET_ENV] = self._path
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        env = self._saved.pop()
        if env is None:
            os.environ.pop(SOCKET_ENV, None)
        else:
            os.environ[SOCKET_ENV] = env
        self.stop()

    # Snaps and services ---------------------------------------------------------

    def add_snap(
        self,
        name: str,
        *,
        revision: str = 'x1',
        services: Iterable[str] = ('daemon',),
        revisions: Iterable[str] = (),
        version: str = '1.0',
        channel: str = '',
        enabled: bool = True,
        active: bool = True,
        plugs: Iterable[str] = (),
        confinement: str = 'strict',
    ) -> None:
        """Install a snap (replacing one of that name).

        Args:
            name: The snap's name.
            revision: The installed revision: a store one (``'5'``), or a
                local one (``'x1'``), which snapd refreshes only to revisions
                on disk.
            services: Its services (``snap.app`` names without the ``snap.``).
            revisions: Other revisions a refresh may go to (the installed one
                always can): the store's, or for a local snap those on disk.
            version: Its version string.
            channel: The channel it tracks; ``''`` for a local install.
            enabled: Whether every service starts at boot (is not disabled).
            active: Whether every service is running.
            plugs: Its plugs, not connected; each connects to the system's
                slot of the same name (its interface).
            confinement: ``strict``, ``classic`` or ``devmode``.

        Example::

            snapd.add_snap('foo', revision='1', revisions=['2', '3'], services=['api', 'worker'])
        """
        if not name or any(c in name for c in './,'):
            raise ValueError(f'invalid snap name {name!r}')
        with self._state.lock:
            self._state.snaps[name] = Snap(
                name=name,
                revision=revision,
                available={revision, *revisions},
                sequence=[revision],
                version=version,
                channel=channel,
                services={app: Service(enabled, active) for app in services},
                confinement=confinement,
                plugs={plug: plug for plug in plugs},
            )
            self._state.bind(self._state.snaps[name])

    def add_store_snap(
        self,
        name: str,
        *,
        revisions: Iterable[str],
        services: Iterable[str] = ('daemon',),
        version: str = '1.0',
        channels: Mapping[str, str] | None = None,
        confinement: str = 'strict',
        plugs: Iterable[str] = (),
    ) -> None:
        """Offer a snap that is not installed, as if from the store.

        ``POST /v2/snaps/{name}`` with ``install`` installs it, its services
        enabled and running when the change is done: the revision asked, or
        the channel's (``latest/stable`` by default), or the highest.

        Args:
            name: The snap's name.
            revisions: The revisions the store has.
            services: Its services.
            version: Its version string.
            channels: Which revision each channel has (``{'latest/edge':
                '11'}``); without it every channel has the highest revision.
            confinement: ``classic`` makes snapd refuse an install without
                ``classic`` (kind ``snap-needs-classic``).
            plugs: Its plugs, as in :meth:`add_snap`.

        Example::

            snapd.add_store_snap('foo', revisions=['10', '11'], channels={'latest/edge': '11'})
        """
        revisions = list(revisions)
        if not revisions:
            raise ValueError('a store snap needs at least one revision')
        with self._state.lock:
            self._state.store[name] = Snap(
                name=name,
                revision=revisions[0],
                available=set(revisions),
                sequence=[],
                version=version,
                channel='latest/stable',
                services={app: Service(True, True) for app in services},
                confinement=confinement,
                plugs={plug: plug for plug in plugs},
                channels={
                    (k if '/' in k else f'latest/{k}'): v for k, v in (channels or {}).items()
                },
            )

    write_snap_file = staticmethod(write_snap_file)

    def hold(self, name: str) -> str:
        """Until when refreshes of snap ``name`` are held (snapd's ``hold``), ``''`` if not."""
        with self._state.lock:
            return self._snap(name).hold

    def conf(self, name: str) -> dict[str, Any]:
        """The configuration of snap ``name`` (a copy)."""
        with self._state.lock:
            return json.loads(json.dumps(self._snap(name).conf))

    def connections(self) -> list[tuple[str, str]]:
        """The interface connections, as ``('snap:plug', 'snap:slot')`` pairs, sorted."""
        with self._state.lock:
            return [(f'{a}:{b}', f'{c}:{d}') for a, b, c, d in sorted(self._state.connections)]

    def revision(self, name: str) -> str:
        """Return the installed revision of snap ``name`` (KeyError if not installed)."""
        with self._state.lock:
            return self._snap(name).revision

    def service_state(self, name: str) -> dict[str, tuple[bool, bool]]:
        """Return ``{app: (enabled, active)}`` for the services of snap ``name``.

        Example::

            assert snapd.service_state('foo') == {'daemon': (True, True)}
        """
        with self._state.lock:
            services = self._snap(name).services
            return {app: (s.enabled, s.active) for app, s in sorted(services.items())}

    def set_service_state(self, snap: str, app: str, *, enabled: bool, active: bool) -> None:
        """Set one service's state, as if an operator had run ``snap stop`` or the like."""
        with self._state.lock:
            services = self._snap(snap).services
            if app not in services:
                raise KeyError(f'snap {snap!r} has no service {app!r}')
            services[app].enabled = enabled
            services[app].active = active

    def attach(self, systemd: FakeSystemd) -> None:
        """Keep the snaps' services in ``systemd`` as their units, from now on.

        snapd runs snap services as systemd units named
        ``snap.<snap>.<app>.service``; once attached, the fake's services are
        those units of ``systemd``'s machine, so a charm that mixes
        ``systemctl`` on snap units with :class:`~charm_upgrade.SnapServices`
        sees one truth, and a start through snapd of a unit held by a drop-in
        is skipped, as on a machine. The pytest fixtures attach the two when a
        test uses both.

        Example::

            with FakeSnapd() as snapd, FakeSystemd() as systemd:
                snapd.attach(systemd)
                snapd.add_snap('foo', services=['daemon'])
                assert systemd.unit('snap.foo.daemon.service')['active'] == 'active'
        """
        with self._state.lock:
            self._state.machine = systemd.machine
            for snap in self._state.snaps.values():
                self._state.bind(snap)

    def _snap(self, name: str) -> Snap:
        try:
            return self._state.snaps[name]
        except KeyError:
            raise KeyError(f'snap {name!r} is not installed in the fake snapd') from None

    # Requests and changes -------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._state.lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the requests received so far."""
        with self._state.lock:
            self._requests.clear()

    def changes(self) -> list[dict[str, Any]]:
        """Return every change as ``GET /v2/changes/{id}`` would serve it, oldest first."""
        with self._state.lock:
            return [c.to_json() for c in self._state.changes.values()]

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no change is in progress.

        Raises:
            TimeoutError: a change is still in progress after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._state.idle:
            while pending := self._state.in_progress():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    ids = ', '.join(f'{c.id} ({c.kind}, {c.status})' for c in pending)
                    raise TimeoutError(f'snapd changes still in progress after {timeout} s: {ids}')
                self._state.idle.wait(remaining)

    def set_change_duration(self, seconds: float) -> None:
        """Make changes created from now on take ``seconds`` from spawn to ready."""
        with self._state.lock:
            self._state.change_duration = seconds

    def change_durations(self) -> list[float]:
        """Seconds from spawn to ready of each ready change, oldest first (for benchmarks)."""
        with self._state.lock:
            return [
                c.ready_mono - c.spawn_mono
                for c in self._state.changes.values()
                if c.ready_mono is not None and c.status in READY_STATUSES
            ]

    # Faults ---------------------------------------------------------------------

    def fail_next_refresh(
        self,
        *,
        undo: bool = True,
        error: str = 'run hook "post-refresh": exit status 1',
        duration: float | None = None,
    ) -> None:
        r"""Make the next refresh change fail in its post-refresh hook.

        The refresh is accepted (202); its change ends ``Error`` with snapd's
        text, ``cannot perform the following tasks:\n- Run post-refresh hook
        of "foo" snap if present (<error>)``.

        Args:
            undo: True: snapd undoes the refresh (the old revision is back and
                the services that were active, or are enabled, run again).
                False: the change ends after the new revision was linked, with
                the services stopped (a failed undo, or a hook that left them so).
            error: The reason in parentheses.
            duration: That change's duration; the fake's by default.

        Example::

            fake.fail_next_refresh()
            change = snapd.wait_change(snapd.refresh('foo', '2'))
            assert (change.status, fake.revision('foo')) == ('Error', '1')
        """
        with self._state.lock:
            self._state.refresh_faults.append(RefreshFault(undo, error, duration))

    def start_change(self, snap: str, *, kind: str = 'auto-refresh', duration: float = 1.0) -> str:
        """Start a change of ``snap`` that does nothing and ends ``Done`` after ``duration``.

        Meanwhile writes naming the snap get 409 ``snap-change-conflict`` (a
        start or stop of its services, snapd's plain 400 with the same text).
        Returns the change's id.

        Example::

            snapd.start_change('foo', kind='auto-refresh', duration=0.2)
        """
        with self._state.lock:
            return self._state.start_change(snap, kind, duration).id

    def conflict_next(self, count: int = 1, *, change_kind: str = 'auto-refresh') -> None:
        """Answer the next ``count`` writes as conflicting with a change, and do nothing.

        Writes are refresh, revert, install, sideload, configuration and
        interface requests (409 ``snap-change-conflict``) and service control
        (``POST /v2/apps``: 400 with the conflict's text, as snapd answers).
        """
        with self._state.lock:
            self._state.conflicts.extend([change_kind] * count)

    def refuse_connections(self, seconds: float) -> None:
        """Refuse connections for ``seconds``, as while snapd restarts.

        The socket file stays but nothing listens, so clients get
        :class:`ConnectionRefusedError`; afterwards the fake listens again.
        Changes go on progressing meanwhile.

        Raises:
            RuntimeError: the fake is not running.
        """
        with self._life:
            if not self._running:
                raise RuntimeError('FakeSnapd is not running')
            self._refusals += 1
            refusal = self._refusals
            listener, self._listener = self._listener, None
            if listener is not None:
                self._close_listener(listener)
        self._state.scheduler.call_later(seconds, lambda: self._reopen(refusal))

    def garbage_next(self, count: int = 1) -> None:
        """Answer the next ``count`` requests with 200 and a body that is not JSON.

        The body still says ``Content-Type: application/json``. The requests
        are recorded but not acted upon.
        """
        with self._state.lock:
            self._garbage += count

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Send the answers to the next ``count`` requests only after ``seconds``.

        The requests are acted upon at once; only the answers are late.
        """
        with self._state.lock:
            self._delays += [seconds] * count

    def drop_next(self, count: int = 1) -> None:
        """Act on the next ``count`` requests, then hang up without an answer.

        As when snapd restarts right after it accepted a write: the change
        exists, the client never hears of it.
        """
        with self._state.lock:
            self._drops += count

    # Serving --------------------------------------------------------------------

    def _open_listener(self, path: str) -> None:
        """Listen at ``path``, then atomically move the socket to the real path."""
        server = _Server(path, self)
        try:
            server.socket.settimeout(None)  # ignore a socket.setdefaulttimeout()
            if path != self._path:
                os.replace(path, self._path)
        except BaseException:
            server.server_close()
            raise
        wake_r, wake_w = socket.socketpair()
        thread = threading.Thread(
            target=self._accept_loop,
            args=(server, wake_r),
            name='fake-snapd-accept',
            daemon=True,
        )
        self._listener = _Listener(server, thread, wake_r, wake_w)
        thread.start()

    @staticmethod
    def _close_listener(listener: _Listener) -> None:
        listener.wake_w.send(b'x')
        listener.thread.join()
        listener.server.server_close()
        listener.wake_r.close()
        listener.wake_w.close()

    def _reopen(self, refusal: int) -> None:
        with self._life:
            if self._running and refusal == self._refusals and self._listener is None:
                # Bind next to the socket and rename over it: clients see either
                # the old, refusing socket or the new one, never no file.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path + '.r')
                self._open_listener(self._path + '.r')

    @staticmethod
    def _accept_loop(server: _Server, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                events = selector.select()
                if any(key.fileobj is wake for key, _ in events):
                    return
                server.handle_request()

    def _track(self, thread: threading.Thread, conn: socket.socket) -> None:
        with self._handlers_lock:
            for done in [t for t in self._handlers if not t.is_alive()]:
                del self._handlers[done]
            self._handlers[thread] = conn

    def _serve(
        self, method: str, path: str, query: dict[str, str], content_type: str, raw: bytes
    ) -> tuple[int, bytes | None, float]:
        """Record and answer a request: (status, body or None to hang up, delay before it)."""
        body: Any = None
        recorded: Any = None
        if content_type.startswith('multipart/'):
            try:
                body = Form.parse(content_type, raw)
            except ApiError as e:
                body = e
            else:
                files = {name: filename for name, (filename, _) in body.files.items()}
                recorded = {**body.fields, **files}
        elif raw:
            try:
                body = recorded = json.loads(raw)
            except ValueError:
                body = recorded = raw.decode(errors='replace')
        with self._state.lock:
            self._requests.append(RecordedRequest(method, path, query, recorded, time.monotonic()))
            delay = self._delays.pop(0) if self._delays else 0.0
            garbage = self._garbage > 0
            self._garbage -= int(garbage)
            drop = self._drops > 0
            self._drops -= int(drop)
        if garbage:
            return 200, _GARBAGE, delay
        if isinstance(body, ApiError):
            status, envelope = body.status, body.envelope()
        else:
            status, envelope = self._state.handle(method, path, query, body)
        return status, None if drop else json.dumps(envelope).encode(), delay


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, path: str, fake: FakeSnapd):
        self.fake = fake
        super().__init__(path, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name='fake-snapd-handler',
            daemon=True,
        )
        self.fake._track(thread, cast('socket.socket', request))
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are fine
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'FakeSnapd'
    timeout = 30.0

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PUT = do_DELETE = do_GET  # noqa: N815

    def _answer(self) -> None:
        server = cast('_Server', self.server)
        target = urllib.parse.urlsplit(self.path)  # absolute or origin form
        query = dict(urllib.parse.parse_qsl(target.query, keep_blank_values=True))
        length = 0
        with contextlib.suppress(ValueError):
            length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length > 0 else b''
        content_type = self.headers.get('Content-Type') or ''
        status, data, delay = server.fake._serve(
            self.command, target.path or '/', query, content_type, raw
        )
        if delay and server.fake._stopping.wait(delay):
            return  # stopping: hang up without an answer
        if data is None:
            self.close_connection = True
            return  # drop_next: hang up without an answer
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have given up
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.send_header('Connection', 'close')
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Keep quiet: tests read :attr:`FakeSnapd.requests` instead."""
