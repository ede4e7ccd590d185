# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A minimal stand-in for layer:status's ``charms.layer.status``, installed into test charms.

Why a stand-in: layer:status is a charm layer, not a Python package (it is on
no package index), so the tests cannot depend on it. This module reproduces
exactly the mechanics of layer:status that charm-upgrade meets, and nothing
else; the reactive tests install it as the layer would be built into a charm
(``lib/charms/layer/status.py``, and ``reactive/status.py`` that initialises
it at import):

- initialising (at import of the layer's reactive module) replaces
  ``subprocess.call`` so that charmhelpers' ``hookenv.status_set``, which
  runs ``status-set`` through it, lands here; and registers the finaliser
  with ``hookenv.atexit``;
- a status other than maintenance is not set at once: it is kept with the
  layer that asked for it, found from the call stack (the first frame in a
  ``reactive/``, ``layer/`` or ``charms/`` directory, not this module's; the
  layer is the file's stem). Maintenance is set at once;
- finalising picks the first workload state that was asked for, in the order
  maintenance, blocked, waiting, active, and of those the request of the
  highest-ranked layer: the rank is the index in the built charm's
  ``layer.yaml`` ``includes`` followed by the charm's own name, and 0 for a
  layer in neither (so code outside the charm's own ``reactive/<charm>.py``,
  such as a library, ranks lowest); among equals, the latest. It sets that
  one with the real ``status-set``;
- after finalising, or before initialising, each request finalises again at once.

The library's behaviour against the real layer:status module was checked by
running these tests with it in place of this one.
"""

from __future__ import annotations

import inspect
import pathlib
import subprocess

import yaml
from charmhelpers.core import hookenv
from charms import layer

_real_call = subprocess.call
_ORDER = ('maintenance', 'blocked', 'waiting', 'active')
_requests: dict[str, list[tuple[str | None, str]]] = {}
_phase = {'initialised': False, 'finalised': False}


def maintenance(message: str) -> None:
    status_set('maintenance', message)


def blocked(message: str) -> None:
    status_set('blocked', message)


def waiting(message: str) -> None:
    status_set('waiting', message)


def active(message: str) -> None:
    status_set('active', message)


def status_set(workload_state: str, message: str) -> None:
    if workload_state not in _ORDER:
        raise ValueError(workload_state)
    if workload_state == 'maintenance':
        _set_now(workload_state, message)
        return
    _requests.setdefault(workload_state, []).append((_asking_layer(), message))
    if not _phase['initialised'] or _phase['finalised']:
        _finalise()


def _asking_layer() -> str | None:
    for frame in inspect.stack():
        path = pathlib.Path(frame.filename)
        if path.parent.name not in ('reactive', 'layer', 'charms') or path.stem == 'status':
            continue
        return path.stem
    return None


def _initialise() -> None:
    if _phase['initialised']:
        return
    if layer.options.get('status', 'patch-hookenv'):
        subprocess.call = _call
    hookenv.atexit(_finalise)
    _phase['initialised'] = True


def _finalise() -> None:
    if _phase['initialised']:
        _phase['finalised'] = True
    layer_yaml = pathlib.Path(hookenv.charm_dir()) / 'layer.yaml'
    includes = yaml.safe_load(layer_yaml.read_text()).get('includes', [])
    ranking = [*includes, hookenv.charm_name()]
    for workload_state in _ORDER:
        asked = _requests.get(workload_state)
        if not asked:
            continue
        ranked = sorted(asked, key=lambda r: ranking.index(r[0]) if r[0] in ranking else 0)
        _set_now(workload_state, ranked[-1][1])
        return


def _set_now(workload_state: str, message: str) -> None:
    hookenv.log(f'status-set: {workload_state}: {message}', hookenv.INFO)
    _real_call(['status-set', workload_state, message])


def _call(cmd: object, *args: object, **kwargs: object) -> int:
    if not isinstance(cmd, list) or not cmd or cmd[0] != 'status-set':
        return _real_call(cmd, *args, **kwargs)
    _, workload_state, message = cmd
    status_set(str(workload_state), str(message))
    return 0
