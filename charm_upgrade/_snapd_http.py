# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""One request to snapd over its unix socket, for :mod:`charm_upgrade.snapd`.

:func:`exchange` connects, sends, reads and decodes within one wall-clock
deadline: every socket operation is given only the time left, and the time
is checked again before every read, so a snapd that answers one byte at a
time cannot hold a request past its deadline. The socket is closed on every
path. Each failure becomes one :class:`~charm_upgrade.SnapdError` subclass,
and snapd's error kinds map to types in one table, :data:`API_ERRORS`.

Standard library only. ``import charm_upgrade`` does not import this module:
:mod:`charm_upgrade.snapd` is imported where snapd is first used.
"""

from __future__ import annotations

import dataclasses
import errno
import http.client
import json
import logging
import os
import re
import socket
import time
from typing import TYPE_CHECKING, Any

from .errors import (
    ChangeConflict,
    InterfacesUnchanged,
    RevisionNotAvailable,
    SnapdAPIError,
    SnapdBadResponse,
    SnapdError,
    SnapdTimeout,
    SnapdUnreachable,
    SnapNotInstalled,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

logger = logging.getLogger('charm_upgrade.snapd')

SUN_PATH_MAX = 108
"""Bytes in a unix socket address (``sockaddr_un.sun_path`` on Linux)."""

API_ERRORS: dict[str, type[SnapdAPIError]] = {
    'snap-not-found': SnapNotInstalled,
    'snap-not-installed': SnapNotInstalled,
    'snap-change-conflict': ChangeConflict,
    'snap-revision-not-available': RevisionNotAvailable,
    'snap-channel-not-available': RevisionNotAvailable,
    'interfaces-unchanged': InterfacesUnchanged,
}
"""snapd's error kinds that callers branch on, and the type raised for each.

Any other kind raises :class:`~charm_upgrade.SnapdAPIError` with that kind.
"""

# Errors snapd sends without a kind, whose text is all there is: a start or
# stop of services that conflicts with another change (400 on 2.57 and 2.68),
# and a write naming a snap that is not installed (2.68's refresh, hold,
# connect). The texts are snapd's own, the same in every release checked.
_CONFLICT_TEXT = re.compile(
    r'snap "(?P<snap>[^"]+)" has (?:"(?P<change>[^"]+)" change|changes) in progress'
)
_NOT_INSTALLED_TEXT = re.compile(r'snap "(?P<snap>[^"]+)" is not installed$')

_ADVICE: dict[type[SnapdAPIError], str] = {
    SnapNotInstalled: 'install the snap first',
    ChangeConflict: 'another change of the snap is in progress: see `snap changes`',
    RevisionNotAvailable: 'check the revision or channel asked for',
    InterfacesUnchanged: 'there was nothing to do',
}

# What to do about an errno when snapd's socket cannot be used.
_SOCKET_ADVICE = {
    errno.ENOENT: 'no socket there: is snapd installed and running? '
    '(`systemctl status snapd.socket`)',
    errno.ECONNREFUSED: 'nothing listens there: snapd is stopped or restarting '
    '(`systemctl status snapd`)',
    errno.EAGAIN: 'snapd takes no more connections now (`systemctl status snapd`)',
    errno.EACCES: "permission denied: snapd's socket is for root (Juju runs hooks as root)",
    errno.EPERM: "permission denied: snapd's socket is for root (Juju runs hooks as root)",
    errno.EMFILE: 'this process has no file descriptor left: it leaks open files, or its '
    'limit (`ulimit -n`) is too low',
    errno.ENFILE: 'the system has no file descriptor left',
    errno.ENAMETOOLONG: f'use a socket path of at most {SUN_PATH_MAX} bytes',
}
# A socket that is missing, refuses or is full: what snapd restarting looks like.
_RESTART_ERRNOS = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN})

_TIME_RE = re.compile(r'(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)')

JSON_HEADERS = {'Content-Type': 'application/json'}


def json_body(body: Any) -> bytes:
    """``body`` as a JSON request body."""
    return json.dumps(body).encode()


def segment(text: str) -> str:
    """``text`` as one path segment (a snap name, a change id)."""
    import urllib.parse

    return urllib.parse.quote(text, safe='')


@dataclasses.dataclass(frozen=True)
class Request:
    """A request to snapd, and what it is for, in words, for the messages.

    ``body`` is bytes, or a callable giving the body in pieces (a file being
    uploaded: called again for each attempt) whose total is ``length``.
    """

    method: str
    path: str
    query: Mapping[str, str] | None
    body: bytes | Callable[[], Iterable[bytes]] | None
    headers: Mapping[str, str]
    what: str
    length: int | None = None

    @property
    def target(self) -> str:
        """The path with its query."""
        if not self.query:
            return self.path
        import urllib.parse

        return f'{self.path}?{urllib.parse.urlencode(self.query)}'

    @property
    def line(self) -> str:
        """The request line, as in messages: ``GET /v2/snaps?snaps=foo``."""
        return f'{self.method} {self.target}'


class LocalFileError(Exception):
    """Reading a file being uploaded failed: the caller's problem, not snapd's."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class Upload:
    """A ``.snap`` file as the multipart body of snapd's sideload, streamed from disk.

    A context manager: the file is open from construction until exit.
    """

    _CHUNK = 1 << 16

    def __init__(self, path: str, fields: Mapping[str, str]):
        self.path = path
        self._file = open(path, 'rb')  # noqa: SIM115 (closed by __exit__)
        try:
            self._size = os.fstat(self._file.fileno()).st_size
        except BaseException:
            self._file.close()
            raise
        boundary = os.urandom(16).hex()
        name = os.path.basename(path).replace('"', '')
        head = ''.join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
            for key, value in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="snap"; filename="{name}"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n'
        )
        self._head = head.encode()
        self._tail = f'\r\n--{boundary}--\r\n'.encode()
        self.length = len(self._head) + self._size + len(self._tail)
        self.headers = {'Content-Type': f'multipart/form-data; boundary={boundary}'}

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def chunks(self) -> Iterator[bytes]:
        """The body from its start: the form fields, the file in blocks, the end.

        Raises:
            LocalFileError: the file cannot be read, or changed size.
        """
        yield self._head
        sent = 0
        try:
            self._file.seek(0)
            while block := self._file.read(self._CHUNK):
                sent += len(block)
                yield block
        except OSError as e:
            raise LocalFileError(e) from e
        if sent != self._size:
            raise LocalFileError(
                OSError(errno.EIO, f'{self.path} changed size while it was sent to snapd')
            )
        yield self._tail


def exchange(path: str, request: Request, timeout: float) -> dict[str, Any]:
    """Send ``request`` to snapd's socket ``path``; return the answer's checked envelope.

    The envelope has ``type`` (``sync`` or ``async``), an int ``status-code``,
    ``change`` (a non-empty string when async), and ``maintenance`` as a dict
    or None.

    Raises:
        SnapdAPIError: snapd answered an error (a subclass for some kinds).
        SnapdTimeout: the deadline passed (``request_sent`` says if snapd had it all).
        SnapdUnreachable: the socket could not be used, or snapd hung up.
        SnapdBadResponse: the answer is not snapd's JSON envelope.
        OSError: a file being uploaded could not be read.
    """
    began = time.monotonic()
    stage = 'connect'
    connection: http.client.HTTPConnection | None = None
    answer: http.client.HTTPResponse | None = None
    try:
        if len(os.fsencode(path)) > SUN_PATH_MAX:
            raise OSError(
                errno.ENAMETOOLONG,
                f'the path is {len(os.fsencode(path))} bytes, more than the '
                f'{SUN_PATH_MAX} a unix socket address holds',
            )
        connection = _UnixConnection(path, began + timeout)
        connection.connect()
        stage = 'send'
        body = request.body() if callable(request.body) else request.body
        headers = {'Host': 'localhost', **request.headers}
        if isinstance(body, bytes):
            headers['Content-Length'] = str(len(body))
        elif request.length is not None:
            headers['Content-Length'] = str(request.length)
        connection.request(request.method, request.target, body=body, headers=headers)
        stage = 'answer'
        answer = connection.getresponse()
        data = answer.read()
        status = answer.status
    except LocalFileError as e:
        raise e.error from None
    except (OSError, http.client.HTTPException) as e:
        raise _failure(e, stage, path, request, timeout) from e
    finally:
        # The answer holds a reference to the socket: close both.
        if answer is not None:
            answer.close()
        if connection is not None:
            connection.close()
    logger.debug('%s -> %s in %.3f s', request.line, status, time.monotonic() - began)
    return _decode(status, data, f'{request.what} ({request.line} on {path})')


def restarting(error: SnapdUnreachable) -> bool:
    """Whether ``error`` is what snapd restarting causes: its socket missing, refused, closed."""
    cause = error.__cause__
    if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
        return True
    return isinstance(cause, OSError) and cause.errno in _RESTART_ERRNOS


def parse_time(text: str) -> float:
    """Return snapd's RFC 3339 time (nanoseconds, ``Z`` or an offset) as POSIX time, 0 if none."""
    match = _TIME_RE.fullmatch(text)
    if match is None:
        return 0.0
    import calendar

    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = match[8]
    offset = 0 if zone == 'Z' else int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
    return seconds + float(f'0.{match[7] or 0}') - (-offset if zone[0] == '-' else offset)


class _DeadlineSocket(socket.socket):
    """A socket whose every operation gets only the time left before its deadline."""

    deadline: float = 0.0

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('the deadline passed')
        self.settimeout(left)

    def connect(self, address: Any, /) -> None:
        """Connect within the time left."""
        self._arm()
        super().connect(address)

    def sendall(self, data: Any, flags: int = 0, /) -> None:
        """Send everything within the time left (sendall's timeout bounds the whole call)."""
        self._arm()
        super().sendall(data, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Read within the time left, checked before every read."""
        self._arm()
        return super().recv_into(buffer, nbytes, flags)


class _UnixConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` over a unix socket, every operation within a deadline."""

    def __init__(self, path: str, deadline: float):
        super().__init__('localhost')
        self._path = path
        self._deadline = deadline

    def connect(self) -> None:
        """Connect to the socket within the time left (the socket is closed if it fails)."""
        sock = _DeadlineSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.deadline = self._deadline
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _decode(status: int, data: bytes, where: str) -> dict[str, Any]:
    """Check snapd's envelope; raise the error it carries, if any."""
    try:
        envelope = json.loads(data)
    except ValueError:
        raise SnapdBadResponse(
            f'snapd answered {where} with HTTP {status} and a body that is not JSON: '
            f"{data[:200]!r}; is that snapd's socket?",
            kind='bad-response',
            status_code=status,
        ) from None
    if not isinstance(envelope, dict):
        raise _bad(where, envelope, status)
    env: dict[str, Any] = envelope  # pyright: ignore[reportUnknownVariableType]
    kind = env.get('type')
    code = env.get('status-code', status)
    if kind not in ('sync', 'async', 'error') or not isinstance(code, int):
        raise _bad(where, env, status)
    if (kind == 'error') != (status >= 400):
        raise _bad(where, env, status)
    result = env.get('result')
    if kind == 'error':
        if not isinstance(result, dict) or not isinstance(result.get('message'), str):  # pyright: ignore[reportUnknownMemberType]
            raise _bad(where, env, status)
        raise _api_error(result, code, where)  # pyright: ignore[reportUnknownArgumentType]
    change = env.get('change')
    if kind == 'async' and not (isinstance(change, str) and change):
        raise _bad(where, env, status)
    maintenance = env.get('maintenance')
    return {
        **env,
        'status-code': code,
        'change': change if kind == 'async' else None,
        'maintenance': maintenance if isinstance(maintenance, dict) else None,
    }


def _api_error(result: dict[str, Any], code: int, where: str) -> SnapdAPIError:
    message = str(result['message'])
    kind = str(result.get('kind') or '')
    value = result.get('value')
    if not kind:
        if match := _CONFLICT_TEXT.search(message):
            kind = 'snap-change-conflict'
            value = {'snap-name': match['snap'], 'change-kind': match['change'] or ''}
        elif match := _NOT_INSTALLED_TEXT.search(message):
            kind, value = 'snap-not-installed', match['snap']
    cls = API_ERRORS.get(kind, SnapdAPIError)
    advice = _ADVICE.get(cls, 'see `snap changes` and `journalctl -u snapd`')
    kind = kind or 'error'
    return cls(
        f'snapd refused {where}: {message} ({kind}, HTTP {code}); {advice}',
        kind=kind,
        status_code=code,
        value=value,
    )


def _bad(where: str, answer: object, status: int) -> SnapdBadResponse:
    return SnapdBadResponse(
        f'snapd answered {where} with HTTP {status} and JSON that is not its envelope: '
        f'{answer!r:.300}',
        kind='bad-response',
        status_code=status,
    )


def _failure(
    error: Exception, stage: str, path: str, request: Request, timeout: float
) -> SnapdError:
    where = f'{request.what} ({request.line} on {path})'
    sent = stage == 'answer'
    if isinstance(error, TimeoutError):
        doing = {'connect': 'accept a connection for', 'send': 'take', 'answer': 'answer'}[stage]
        return SnapdTimeout(
            f'snapd did not {doing} {where} within {timeout:g} s; check `systemctl status '
            'snapd` and `snap changes`',
            kind='timeout',
            request_sent=sent,
        )
    if isinstance(error, http.client.IncompleteRead):
        return SnapdBadResponse(
            f"snapd's answer to {where} was cut short: {len(error.partial)} bytes, "
            f'{error.expected} more were announced',
            kind='bad-response',
        )
    if isinstance(error, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        return SnapdUnreachable(
            f'snapd closed the connection before it answered {where}; it may be restarting '
            '(`systemctl status snapd`)',
            kind='connection-error',
            request_sent=sent,
        )
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        advice = _SOCKET_ADVICE.get(error.errno or 0, 'check `systemctl status snapd.socket`')
        return SnapdUnreachable(
            f'cannot reach snapd at {path} for {request.what} ({request.line}): {reason}; '
            f'{advice}',
            kind='connection-error',
            request_sent=sent,
        )
    return SnapdBadResponse(
        f'snapd answered {where} with something that is not HTTP ({type(error).__name__}: '
        f'{error})',
        kind='bad-response',
    )
