# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A bare snapd client for the tests: ``http.client`` on the socket, nothing of the library's.

Tests of FakeSnapd, the contract test and the integration tier's helpers use it
to see snapd's answers as they are (status and envelope), independently of
:mod:`charm_upgrade.snapd`, whose behaviour they check.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import tempfile
import threading
import time
import urllib.parse
from typing import Any

__all__ = ['ApiAnswer', 'UnixServer', 'raw', 'read_request', 'result', 'wait_ready']

ApiAnswer = tuple[int, dict[str, Any]]


class _Connection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__('localhost', timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def raw(
    path: str,
    method: str,
    target: str,
    *,
    query: dict[str, str] | None = None,
    body: Any = None,
    form: dict[str, str] | None = None,
    file: tuple[str, bytes] | None = None,
    timeout: float = 60.0,
) -> ApiAnswer:
    """Send one request to the snapd socket ``path``; return (HTTP status, decoded envelope).

    ``body`` is sent as JSON; ``form`` and ``file`` (name, content) as a
    multipart sideload, the file in the ``snap`` field.
    """
    headers: dict[str, str] = {}
    data: bytes | None = None
    if body is not None:
        data = json.dumps(body).encode()
        headers['Content-Type'] = 'application/json'
    elif form is not None or file is not None:
        boundary = os.urandom(8).hex()
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in (form or {}).items()
        ]
        if file is not None:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="snap"; '
                f'filename="{file[0]}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                + file[1]
                + b'\r\n'
            )
        data = b''.join(parts) + f'--{boundary}--\r\n'.encode()
        headers['Content-Type'] = f'multipart/form-data; boundary={boundary}'
    if query:
        target = f'{target}?{urllib.parse.urlencode(query)}'
    connection = _Connection(path, timeout)
    try:
        connection.request(method, target, body=data, headers=headers)
        with connection.getresponse() as response:
            status, payload = response.status, response.read()
    finally:
        connection.close()
    return status, json.loads(payload)


def result(path: str, target: str, **query: str) -> Any:
    """The ``result`` of a GET that must succeed."""
    status, envelope = raw(path, 'GET', target, query=query or None)
    assert status == 200, envelope
    return envelope['result']


def wait_ready(path: str, change_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``GET /v2/changes/{id}`` until snapd says the change is ready; return it."""
    deadline = time.monotonic() + timeout
    while True:
        change: dict[str, Any] = result(path, f'/v2/changes/{change_id}')
        if change['ready']:
            return change
        assert time.monotonic() < deadline, f'change {change_id} not ready: {change}'
        time.sleep(0.01)


def read_request(conn: socket.socket) -> bytes:
    """Read one HTTP request (head and Content-Length body) from ``conn``."""
    data = b''
    while b'\r\n\r\n' not in data:
        piece = conn.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b'\r\n\r\n')
    length = 0
    for line in head.split(b'\r\n'):
        if line.lower().startswith(b'content-length:'):
            length = int(line.split(b':')[1])
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    return head + b'\r\n\r\n' + body


class UnixServer:
    """A unix socket in a directory of its own, whose connections :meth:`handle` serves.

    One connection at a time, on a thread; :meth:`close` stops it and removes the socket.
    """

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix='cu-test-snapd-', dir='/tmp')
        self.path = os.path.join(self._dir, 'snapd.socket')
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(16)
        self._server.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def handle(self, conn: socket.socket) -> None:
        """Serve one connection; it is closed afterwards."""
        raise NotImplementedError

    def stopping(self, seconds: float = 0.0) -> bool:
        """Wait ``seconds``; whether the server is being closed."""
        return self._stop.wait(seconds)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(30)
                self.handle(conn)

    def close(self) -> None:
        """Stop serving, join the thread, remove the socket and its directory."""
        self._stop.set()
        self._thread.join(30)
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.rmdir(self._dir)
