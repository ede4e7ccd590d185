# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The one clock of the library: UTC timestamps in one format.

Every record and journal line says when something happened as
``2026-11-24T10:00:00.123456Z``: UTC, to the microsecond, so that records
sort as text and the journal can order stages that take milliseconds.
"""

from __future__ import annotations

import datetime

__all__ = ['TIMESTAMP_FORMAT', 'parse_timestamp', 'utc_now']

TIMESTAMP_FORMAT = '%Y-%m-%dT%H:%M:%S.%fZ'
"""The format of every timestamp the library writes."""


def utc_now() -> str:
    """Return the current time as a timestamp in :data:`TIMESTAMP_FORMAT`."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime.datetime | None:
    """Return the (naive, UTC) time of a timestamp the library wrote, or None if it is not one."""
    try:
        return datetime.datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError:
        return None
