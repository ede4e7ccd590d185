# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A bare snapd client for the tests: ``http.client`` on the socket, nothing of the library's.

Tests of FakeSnapd, the contract test and the integration tier's helpers use it
to see snapd's answers as they are (status and envelope), independently of
:mod:`charm_upgrade.snapd`, whose behaviour they check.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.parse
from typing import Any

__all__ = ['ApiAnswer', 'raw', 'result', 'wait_ready']

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
