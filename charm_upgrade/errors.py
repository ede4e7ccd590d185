# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The exceptions charm-upgrade raises.

Every exception derives from :class:`CharmUpgradeError`, so a charm can catch
everything this library raises with one ``except`` clause. Each carries the
data a caller needs (the unit, the snap, the revision, the change id) as
attributes, not only in its message. Callers branch on the types; each
:class:`SnapdError` also keeps snapd's error ``kind`` string::

    CharmUpgradeError
    ├── ServiceError
    ├── SystemdError
    ├── MigrationError              (.migration_id)
    ├── StateFileError              (.path, .problem): a damaged or unwritable record
    ├── StateLockTimeout            (.path, .holder): another process holds the unit's state
    ├── SnapRefreshError            (its __cause__ is the SnapdError, if any)
    └── SnapdError                  (.kind, .status_code, .change_id, .value, .request_sent)
        ├── SnapdUnreachable        connection-error: no socket, refused, EACCES, EMFILE...
        ├── SnapdTimeout            timeout: a request's deadline, or a wait for a change
        ├── SnapdBadResponse        bad-response: an answer that is not snapd's JSON envelope
        ├── ChangeFailed            change-failed: a change ended Error, Undone or Hold
        └── SnapdAPIError           snapd answered an error: .kind is snapd's own kind
            ├── SnapNotInstalled    snap-not-found, snap-not-installed
            ├── ChangeConflict      snap-change-conflict: another change holds the snap
            ├── RevisionNotAvailable  snap-revision-not-available, snap-channel-not-available
            └── InterfacesUnchanged interfaces-unchanged: nothing to connect or disconnect
"""

from __future__ import annotations

__all__ = [
    'ChangeConflict',
    'ChangeFailed',
    'CharmUpgradeError',
    'InterfacesUnchanged',
    'MigrationError',
    'RevisionNotAvailable',
    'ServiceError',
    'SnapNotInstalled',
    'SnapRefreshError',
    'SnapdAPIError',
    'SnapdBadResponse',
    'SnapdError',
    'SnapdTimeout',
    'SnapdUnreachable',
    'StateFileError',
    'StateLockTimeout',
    'SystemdError',
]


class CharmUpgradeError(Exception):
    """Base class of every exception raised by charm-upgrade."""


class ServiceError(CharmUpgradeError):
    """A services description is invalid, or a service cannot be handled.

    Raised for an empty or duplicate service list, or for a unit or snap
    service that does not exist on this machine.
    """


class SystemdError(CharmUpgradeError):
    """A ``systemctl`` invocation failed, timed out, or could not be run.

    Attributes:
        command: The command line that failed.
        returncode: The exit status, or None if the command did not finish.
        stderr: What the command printed on standard error.
    """

    def __init__(
        self,
        message: str,
        *,
        command: list[str] | None = None,
        returncode: int | None = None,
        stderr: str = '',
    ):
        super().__init__(message)
        self.message = message
        self.command = command or []
        self.returncode = returncode
        self.stderr = stderr


class SnapdError(CharmUpgradeError):
    """snapd refused a request, failed a change, or could not be reached.

    Attributes:
        message: A sentence that names the snap or request and what to do.
        kind: snapd's error kind (such as ``snap-not-found``), or one of this
            library's: ``connection-error``, ``timeout``, ``bad-response``,
            ``change-failed``.
        status_code: The HTTP status, when snapd answered.
        change_id: The id of the snapd change concerned, if any.
        value: snapd's ``value`` field of the error, if any.
        request_sent: For a request that timed out or whose connection
            failed: whether all of it had reached snapd, which may then have
            acted on it. False otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status_code: int | None = None,
        change_id: str | None = None,
        value: object = None,
        request_sent: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status_code = status_code
        self.change_id = change_id
        self.value = value
        self.request_sent = request_sent

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}({self.message!r}, kind={self.kind!r}, '
            f'status_code={self.status_code!r}, change_id={self.change_id!r})'
        )


class SnapdUnreachable(SnapdError):
    """snapd's socket could not be reached (kind ``connection-error``).

    The socket is missing or refuses connections (snapd is not installed, or
    is restarting), the process may not open it (EACCES) or has no file
    descriptor left (EMFILE), its path is too long for a unix socket, or
    snapd closed the connection before it answered (``request_sent`` then
    says whether snapd had the whole request). The ``OSError`` is the
    ``__cause__``.
    """


class SnapdTimeout(SnapdError):
    """A request, or a wait for a change, ran out of time (kind ``timeout``).

    A change that was being waited for goes on in snapd: ``change_id`` names
    it. For a request, ``request_sent`` says whether snapd had all of it.
    """


class SnapdBadResponse(SnapdError):
    """snapd's answer was not the JSON envelope of its REST API (kind ``bad-response``)."""


class ChangeFailed(SnapdError):
    """A snapd change ended in anything but ``Done`` (kind ``change-failed``).

    Attributes:
        status: The change's final status (``Error``, ``Undone``, ``Hold``).
        err: snapd's error text for the change, or ``''``.
    """

    def __init__(
        self,
        message: str,
        *,
        change_id: str,
        status: str,
        err: str = '',
        kind: str = 'change-failed',
    ):
        super().__init__(message, kind=kind, change_id=change_id)
        self.status = status
        self.err = err


class SnapdAPIError(SnapdError):
    """snapd answered a request with an error; ``kind`` is snapd's own error kind."""


class SnapNotInstalled(SnapdAPIError):
    """The snap is not installed (snapd's kinds ``snap-not-found``, ``snap-not-installed``)."""


class ChangeConflict(SnapdAPIError):
    """Another change of the snap is in progress (snapd's kind ``snap-change-conflict``).

    ``value`` is snapd's ``{"snap-name": ..., "change-kind": ...}``. snapd
    answers a conflicting start or stop of services with a plain 400 that
    carries only the text; the client recognises that text and raises this
    too, with ``status_code`` 400.
    """

    @property
    def snap(self) -> str | None:
        """The snap that another change holds, if snapd named it."""
        value = self.value
        name = value.get('snap-name') if isinstance(value, dict) else None  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return name if isinstance(name, str) and name else None

    @property
    def change_kind(self) -> str | None:
        """The kind of the change in progress (such as ``auto-refresh``), if snapd named it."""
        value = self.value
        kind = value.get('change-kind') if isinstance(value, dict) else None  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return kind if isinstance(kind, str) and kind else None


class RevisionNotAvailable(SnapdAPIError):
    """No revision as asked is available.

    snapd's kinds ``snap-revision-not-available`` and
    ``snap-channel-not-available``: the store has no such revision, or the
    channel has none for this architecture.
    """


class InterfacesUnchanged(SnapdAPIError):
    """snapd had nothing to do (kind ``interfaces-unchanged``).

    Such as a disconnect of a plug that is not connected: a caller that only
    wants the plug disconnected may treat it as success.
    """


class SnapRefreshError(CharmUpgradeError):
    """A snap refresh did not reach the requested revision.

    The underlying :class:`SnapdError`, if any, is the ``__cause__``.

    Attributes:
        snap: The snap's name.
        revision_before: The revision installed before the refresh.
        revision_requested: The revision the refresh asked for.
        revision_after: The revision installed after the failure, or None
            if snapd could not be asked.
        change_id: snapd's change id, if a change was created.
        change_status: The change's final status (such as ``Error``), if known.
        change_error: snapd's error text for the change, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        snap: str,
        revision_before: str | None,
        revision_requested: str,
        revision_after: str | None,
        change_id: str | None = None,
        change_status: str | None = None,
        change_error: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.snap = snap
        self.revision_before = revision_before
        self.revision_requested = revision_requested
        self.revision_after = revision_after
        self.change_id = change_id
        self.change_status = change_status
        self.change_error = change_error


class MigrationError(CharmUpgradeError):
    """A migration failed, or the recorded migrations do not match the code.

    Attributes:
        migration_id: The id of the migration concerned, if one.
    """

    def __init__(self, message: str, *, migration_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.migration_id = migration_id


class StateFileError(CharmUpgradeError):
    """A file the library decides from is damaged, or cannot be read or written.

    The unit's records (``series-upgrade.json``, ``migrations.json``, a
    backup's manifest) and the machine's os-release. A record that exists and
    is not exactly the shape the library writes is never read as "nothing
    recorded": the message names the file, what is wrong with it, and what
    removing it would do, which is not always safe (without
    ``migrations.json`` every migration runs again).

    Attributes:
        path: The file.
        problem: What is wrong, such as ``is not valid JSON`` or ``cannot be
            written: No space left on device``.
    """

    def __init__(self, message: str, *, path: str, problem: str):
        super().__init__(message)
        self.message = message
        self.path = path
        self.problem = problem


class StateLockTimeout(CharmUpgradeError):
    """Another process kept the unit's state locked for longer than the wait allows.

    Every step that changes the unit's records (a series prepare or
    complete, a run of migrations) holds an exclusive lock on the unit's
    state directory. A second process (an action, ``juju exec``, the
    charm's own tooling) waits for it, up to a bound, and then raises this
    instead of running the same step twice. Nothing was changed.

    Attributes:
        path: The lock file.
        holder: What the holding process wrote when it took the lock
            (its pid, the step, since when), or ``''`` if unknown.
        waited: Seconds this process waited.
    """

    def __init__(self, message: str, *, path: str, holder: str, waited: float):
        super().__init__(message)
        self.message = message
        self.path = path
        self.holder = holder
        self.waited = waited
