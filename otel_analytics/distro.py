"""Zero-code use: the configurator ``opentelemetry-instrument`` loads for this package.

``opentelemetry-instrument python app.py`` sets up the SDK only through a configurator entry
point (``opentelemetry_configurator``); without one, ``OTEL_TRACES_EXPORTER`` is ignored. This one
runs the SDK's standard set-up from the ``OTEL_*`` variables, then ``otel_analytics.configure()``,
which joins that provider (adding only what ``ANALYTICS_EXPORTERS`` names, so nothing is exported
twice). With another configurator installed too (``opentelemetry-distro``), pick ours with
``OTEL_PYTHON_CONFIGURATOR=otel_analytics``; the SDK set-up is the same either way.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.sdk._configuration import _OTelSDKConfigurator

_logger = logging.getLogger("otel_analytics")


class AnalyticsConfigurator(_OTelSDKConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        from .configuration import configure

        configure()
