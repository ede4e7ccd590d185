# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The package version, read by the build backend."""

__version__ = '0.1.0.dev0'
