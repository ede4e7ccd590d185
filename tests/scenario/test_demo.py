# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The README's demo (examples/demo.py) tells its story, unit by unit in order."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import pytest

DEMO = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'demo.py'


def test_the_demo_prints_units_in_order_and_exits_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    spec = importlib.util.spec_from_file_location('charm_upgrade_demo', DEMO)
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, demo)  # its dataclasses look themselves up
    spec.loader.exec_module(demo)

    assert demo.main() == 0

    out = capsys.readouterr().out
    headings = re.findall(r'^upgrade-demo/(\d+) \(machine \d+\)', out, flags=re.MULTILINE)
    assert headings == ['0', '1', '2']
