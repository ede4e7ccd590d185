# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Juju hook tools for charm-api and charm-refresh, answered from an ops.testing run.

charm-refresh does all its Juju I/O by running hook tools with ``subprocess.run`` (through
charm-api), never through ops. :class:`FakeHookTools` stands in for that ``subprocess.run``: it
parses the command line the way Juju's tools do and answers from, or writes into, the model
backend that ops.testing built for the run, so the output State holds what charm-refresh wrote.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import types
from typing import TYPE_CHECKING, Any

import ops
from ops import testing

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ._refresh_scenario import Backend

__all__ = ['FakeHookTools', 'module_shim']

# Options that take a value, for the tools charm-api runs.
_VALUED = frozenset({'--format', '--relation', '-r', '--file', '--log-level', '-l'})
_SINCE = '2026-01-01 00:00:00Z'  # goal-state timestamps: fixed, so that runs are reproducible


class _ToolError(Exception):
    """A hook tool that exits non-zero, with Juju's message on stderr."""


def module_shim(real: types.ModuleType, **overrides: object) -> types.ModuleType:
    """A stand-in module: ``overrides`` first, everything else from ``real``.

    Args:
        real: the module to delegate to.
        **overrides: attributes to answer instead of ``real``'s.

    Returns:
        A module object to assign in place of ``real`` in another module's globals.
    """

    def delegate(name: str) -> Any:
        return getattr(real, name)

    shim = types.ModuleType(real.__name__)
    shim.__dict__.update(overrides)
    shim.__dict__['__getattr__'] = delegate
    return shim


def _parse(args: Sequence[str]) -> tuple[dict[str, str | bool], list[str]]:
    options: dict[str, str | bool] = {}
    positional: list[str] = []
    items = iter(args)
    for arg in items:
        if arg in _VALUED:
            options[arg.lstrip('-')] = next(items, '')
        elif arg.startswith('--') and len(arg) > 2:
            options[arg[2:]] = True
        else:
            positional.append(arg)
    return options, positional


class FakeHookTools:
    """A ``subprocess.run`` that answers Juju hook tools from an ops.testing run.

    Args:
        backend: returns the backend of the run in progress.
        goal_units: the unit names Juju would list in ``goal-state`` for this application, or
            None to list this unit and the units in its peer relations.
    """

    def __init__(
        self,
        backend: Callable[[], Backend],
        *,
        goal_units: Callable[[], Sequence[str] | None],
    ) -> None:
        self._backend = backend
        self._goal_units = goal_units
        self.calls: collections.Counter[str] = collections.Counter()
        """Hook-tool calls by tool name since the counter was last cleared."""
        self._handlers: dict[str, Callable[[Backend, dict[str, str | bool], list[str], str], Any]]
        self._handlers = {
            'action-fail': self._action_fail,
            'action-get': self._action_get,
            'action-log': self._action_log,
            'action-set': self._action_set,
            'application-version-set': self._application_version_set,
            'config-get': self._config_get,
            'goal-state': self._goal_state,
            'is-leader': self._is_leader,
            'juju-log': self._juju_log,
            'relation-get': self._relation_get,
            'relation-ids': self._relation_ids,
            'relation-list': self._relation_list,
            'relation-set': self._relation_set,
            'status-get': self._status_get,
            'status-set': self._status_set,
        }

    def run(
        self,
        args: Sequence[str],
        *,
        input: str | bytes | None = None,  # noqa: A002 - subprocess.run's name
        capture_output: bool = False,
        check: bool = False,
        text: bool = False,
        **_: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Run one hook tool the way ``subprocess.run`` would run Juju's.

        Args:
            args: the command line, e.g. ``['is-leader', '--format', 'json']``.
            input: standard input (``relation-set --file -``).
            capture_output: return standard output and error.
            check: raise :class:`subprocess.CalledProcessError` if the tool fails.
            text: standard input and output are str, not bytes.
            **_: other ``subprocess.run`` arguments, ignored.

        Returns:
            The completed process.

        Raises:
            FileNotFoundError: the tool is not one of the hook tools answered here.
            subprocess.CalledProcessError: the tool failed and ``check`` is set.
        """
        tool = os.path.basename(args[0])
        handler = self._handlers.get(tool)
        if handler is None:
            raise FileNotFoundError(2, 'No such file or directory', tool)
        self.calls[tool] += 1
        stdin = input.decode() if isinstance(input, bytes) else (input or '')
        options, positional = _parse(args[1:])
        code, out, err = 0, '', ''
        try:
            value = handler(self._backend(), options, positional, stdin)
        except (_ToolError, ops.ModelError) as e:
            code, err = 1, f'ERROR {e}\n'
        else:
            if options.get('format') == 'json':
                out = json.dumps(value) + '\n'
            elif value is not None:
                out = f'{value}\n'
        if check and code:
            raise subprocess.CalledProcessError(code, list(args), out, err)
        if not capture_output:
            return subprocess.CompletedProcess(list(args), code)
        if text:
            return subprocess.CompletedProcess(list(args), code, out, err)
        return subprocess.CompletedProcess(list(args), code, out.encode(), err.encode())

    # Relations

    @staticmethod
    def _relation_id(options: Mapping[str, str | bool]) -> int:
        value = options.get('relation') or options.get('r')
        if not isinstance(value, str) or not value:
            raise _ToolError('no relation id specified')
        return int(value.rsplit(':', 1)[-1])

    def _relation_ids(self, backend: Backend, _o: Any, positional: list[str], _i: str) -> Any:
        endpoint = positional[0]
        return [f'{endpoint}:{id_}' for id_ in backend.relation_ids(endpoint)]

    def _relation_list(self, backend: Backend, options: Any, _p: list[str], _i: str) -> Any:
        relation_id = self._relation_id(options)
        if options.get('app'):
            return backend.relation_remote_app_name(relation_id, _raise_on_error=True)
        return list(backend.relation_list(relation_id))

    def _relation_get(self, backend: Backend, options: Any, positional: list[str], _i: str) -> Any:
        relation_id = self._relation_id(options)
        key = positional[0] if positional else '-'
        member = positional[1] if len(positional) > 1 else backend.unit_name
        try:
            data = backend.relation_get(relation_id, member, bool(options.get('app')))
        except KeyError:
            raise _ToolError(f'cannot read settings for {member!r}') from None
        return dict(data) if key == '-' else data.get(key)

    def _relation_set(self, backend: Backend, options: Any, _p: list[str], stdin: str) -> Any:
        relation_id = self._relation_id(options)
        if options.get('file') != '-':
            raise _ToolError('only relation-set --file - is answered here')
        changes: dict[str, str | None] = json.loads(stdin or '{}')
        is_app = bool(options.get('app'))
        if is_app and not backend.is_leader():
            raise _ToolError('cannot write relation settings: this unit is not the leader')
        data = {key: '' if value is None else str(value) for key, value in changes.items()}
        backend.relation_set(relation_id, data, is_app)
        return None

    def _goal_state(self, backend: Backend, _o: Any, _p: list[str], _i: str) -> Any:
        app = backend.app_name
        names = self._goal_units()
        relations: dict[str, dict[str, dict[str, str]]] = {}
        members: set[str] = {backend.unit_name}
        for relation in backend.state.relations:
            entry = relations.setdefault(relation.endpoint, {})
            if isinstance(relation, testing.PeerRelation):
                entry[app] = {'status': 'joined', 'since': _SINCE}
                for unit_id in relation.peers_data:
                    entry[f'{app}/{unit_id}'] = {'status': 'active', 'since': _SINCE}
                    members.add(f'{app}/{unit_id}')
            elif isinstance(relation, testing.Relation):
                entry[relation.remote_app_name] = {'status': 'joined', 'since': _SINCE}
                for unit_id in relation.remote_units_data:
                    unit = f'{relation.remote_app_name}/{unit_id}'
                    entry[unit] = {'status': 'active', 'since': _SINCE}
        units = sorted(members) if names is None else list(names)
        return {
            'units': {unit: {'status': 'active', 'since': _SINCE} for unit in units},
            'relations': relations,
        }

    # This unit and its application

    def _is_leader(self, backend: Backend, _o: Any, _p: list[str], _i: str) -> Any:
        return backend.is_leader()

    def _config_get(self, backend: Backend, _o: Any, positional: list[str], _i: str) -> Any:
        config = backend.config_get()
        return config.get(positional[0]) if positional else config

    def _status_get(self, backend: Backend, options: Any, _p: list[str], _i: str) -> Any:
        if options.get('application'):
            if not backend.is_leader():
                raise _ToolError('finding application status: this unit is not the leader')
            app = backend.status_get(is_app=True)
            unit = backend.status_get()
            return {
                'application-status': {
                    **app,
                    'status-data': {},
                    'units': {backend.unit_name: {**unit, 'status-data': {}}},
                }
            }
        return {**backend.status_get(), 'status-data': {}}

    def _status_set(self, backend: Backend, options: Any, positional: list[str], _i: str) -> Any:
        is_app = bool(options.get('application'))
        if is_app and not backend.is_leader():
            raise _ToolError('setting application status: this unit is not the leader')
        message = positional[1] if len(positional) > 1 else ''
        backend.status_set(positional[0], message, is_app=is_app)  # type: ignore[arg-type]
        return None

    def _application_version_set(
        self, backend: Backend, _o: Any, positional: list[str], _i: str
    ) -> Any:
        backend.application_version_set(positional[0] if positional else '')
        return None

    def _juju_log(self, backend: Backend, options: Any, positional: list[str], _i: str) -> Any:
        level = options.get('log-level') or options.get('l') or 'INFO'
        backend.juju_log(str(level), ' '.join(positional))
        return None

    # Actions

    def _action_get(self, backend: Backend, _o: Any, positional: list[str], _i: str) -> Any:
        params = backend.action_get()
        return params.get(positional[0]) if positional else params

    def _action_set(self, backend: Backend, _o: Any, positional: list[str], _i: str) -> Any:
        results: dict[str, Any] = {}
        for pair in positional:
            key, _, value = pair.partition('=')
            *parents, leaf = key.split('.')
            target = results
            for parent in parents:
                target = target.setdefault(parent, {})
            target[leaf] = value
        backend.action_set(results)
        return None

    def _action_fail(self, backend: Backend, _o: Any, positional: list[str], _i: str) -> Any:
        backend.action_fail(positional[0] if positional else '')
        return None

    def _action_log(self, backend: Backend, _o: Any, positional: list[str], _i: str) -> Any:
        backend.action_log(' '.join(positional))
        return None
