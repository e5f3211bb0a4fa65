"""The package's exceptions.

::

    AnalyticsError
    └── ConfigurationError (also a ValueError): a setting has a value we cannot use.
"""

from __future__ import annotations


class AnalyticsError(Exception):
    """Base class of every exception otel-analytics raises on purpose."""


class ConfigurationError(AnalyticsError, ValueError):
    """A setting (environment variable or ``configure()`` keyword) has an unusable value."""
