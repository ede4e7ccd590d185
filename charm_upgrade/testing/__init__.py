# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Test kit for charms that use charm-upgrade.

- :class:`FakeSnapd`: a fake of snapd's REST API on a real unix socket, so
  that snap-http (and :mod:`charm_upgrade.snapd`) run their real code in tests.
- :class:`RecordedRequest`: one request :class:`FakeSnapd` received.
"""

from ._fake_snapd import FakeSnapd, RecordedRequest

__all__ = ['FakeSnapd', 'RecordedRequest']
