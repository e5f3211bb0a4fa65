"""Settings: each declared once, as data, read from keywords first, then the environment.

A bad value is an error at ``configure()`` that names the variable, the value and what is
accepted; nothing falls back silently. Standard ``OTEL_*`` variables that the SDK or the OTLP
exporters read themselves (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_*``) are validated
here where a typo would otherwise be ignored, and then left for them to read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

EXPORTER_NAMES = ("tracker", "otlp", "console", "none")
"""Exporters ``ANALYTICS_EXPORTERS`` may name."""
METRICS_EXPORTER_NAMES = ("otlp", "console", "prometheus", "none")
"""Metrics exporters ``ANALYTICS_METRICS_EXPORTERS`` (or ``OTEL_METRICS_EXPORTER``) may name."""
TEMPORALITIES = ("cumulative", "delta", "lowmemory")
DEFAULT_TRACKER_URL = "http://127.0.0.1:8787"
"""Where ``otel-analytics tracker serve`` listens by default."""

OTLP_PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_GENAI_CAPTURE_ON = ("true", "span_only", "span_and_event")
_GENAI_CAPTURE_OFF = ("false", "no_content", "event_only")


def parse_bool(name: str, raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; accepted values: true, false (or 1, 0, yes, no).")


def _parse_positive_float(name: str, raw: str | float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name}={raw!r} is not valid; accepted values: a positive number of seconds.")
    return value


def _parse_exporters(name: str, raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return _parse_exporter_names(name, raw, EXPORTER_NAMES)


def parse_metrics_exporters(name: str, raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return _parse_exporter_names(name, raw, METRICS_EXPORTER_NAMES)


def _parse_exporter_names(name: str, raw: str | list[str] | tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names: list[str] = []
    for item in items:
        exporter = str(item).strip().lower()
        if not exporter:
            continue
        if exporter not in known:
            raise ConfigurationError(
                f"{name}={raw!r} names an unknown exporter {exporter!r}; "
                f"accepted values: a comma-separated list of {', '.join(known)}."
            )
        if exporter not in names:
            names.append(exporter)
    if "none" in names:
        if len(names) > 1:
            raise ConfigurationError(f"{name}={raw!r} combines 'none' with other exporters; use one or the other.")
        return ()
    return tuple(names)


def _parse_url(name: str, raw: str) -> str:
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name}={raw!r} is not valid; accepted values: an http:// or https:// URL.")
    return value


def _parse_positive_int(name: str, raw: str | int) -> int:
    value = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    if value is None or value <= 0:
        raise ConfigurationError(f"{name}={raw!r} is not valid; accepted values: a positive integer.")
    return value


def _parse_rate_or_unlimited(name: str, raw: str | float) -> float | None:
    """A positive rate per second, or ``unlimited`` (``None``)."""
    if isinstance(raw, str) and raw.strip().lower() == "unlimited":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(
            f"{name}={raw!r} is not valid; accepted values: a positive number per second, or unlimited."
        )
    return value


def _parse_routes(name: str, raw: Any) -> Any:
    from .asgi.rules import RouteRule, parse_rules

    if isinstance(raw, str):
        return parse_rules(name, raw)
    rules = tuple(raw)
    if not all(isinstance(rule, RouteRule) for rule in rules):
        raise ConfigurationError(f"{name} must be a string of rules or a sequence of RouteRule.")
    return rules


def _parse_header(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if not value or any(c.isspace() or c == ":" for c in value):
        raise ConfigurationError(f"{name}={raw!r} is not valid; accepted values: an HTTP header name.")
    return value


def _parse_names(name: str, raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if any(c.isspace() or c in "&=#?" for value in names for c in value):
        raise ConfigurationError(f"{name}={raw!r} is not valid; accepted values: comma-separated parameter names.")
    return names


def _parse_base_urls(name: str, raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    urls = tuple(str(item).strip().rstrip("/") for item in items if str(item).strip())
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"{name}={raw!r} has {url!r}; accepted values: comma-separated base URLs "
                "(http://127.0.0.1:8000/v1, https://llm.example.com)."
            )
    return urls


def _parse_choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = str(raw).strip().lower()
        if value not in choices:
            raise ConfigurationError(f"{name}={raw!r} is not valid; accepted values: {', '.join(choices)}.")
        return value

    return parse


def _parse_text(name: str, raw: str) -> str:
    return raw.strip()


def _parse_existing_file(name: str, raw: str) -> str:
    path = raw.strip()
    if not os.path.isfile(path):
        raise ConfigurationError(f"{name}={raw!r}: no such file; accepted values: the path of a TOML or JSON file.")
    return path


def _parse_genai_capture(name: str, raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    value = raw.strip().lower()
    if value in _GENAI_CAPTURE_ON:
        return True
    if value in _GENAI_CAPTURE_OFF:
        return False
    raise ConfigurationError(
        f"{name}={raw!r} is not valid; accepted values: NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT, true, false."
    )


@dataclass(frozen=True)
class _Param:
    """One setting: where it is read from and how it is checked."""

    env: tuple[str, ...]
    parse: Callable[[str, Any], Any]
    default: Any
    doc: str


_PARAMS: dict[str, _Param] = {
    "enabled": _Param(("ANALYTICS_ENABLED",), parse_bool, True, "Turn every API call into a cheap no-op."),
    "exporters": _Param(
        ("ANALYTICS_EXPORTERS",),
        _parse_exporters,
        None,
        "Exporters to add, comma-separated. Unset: the tracker when this package builds the provider.",
    ),
    "tracker_url": _Param(
        ("ANALYTICS_TRACKER_URL",), _parse_url, DEFAULT_TRACKER_URL, "Base URL of the analytics tracker."
    ),
    "tracker_allow_insecure": _Param(
        ("ANALYTICS_TRACKER_ALLOW_INSECURE",),
        parse_bool,
        False,
        "Allow plain http:// to a non-loopback tracker.",
    ),
    "retry_budget_s": _Param(
        ("ANALYTICS_RETRY_BUDGET_S",), _parse_positive_float, 30.0, "How long one export may keep retrying."
    ),
    "send_costs": _Param(
        ("ANALYTICS_SEND_COSTS",), parse_bool, False, "Send our cost estimates; else the tracker prices."
    ),
    "tracker_token": _Param(("ANALYTICS_TRACKER_TOKEN",), _parse_text, None, "Bearer token for the tracker."),
    "capture_content": _Param(
        ("ANALYTICS_CAPTURE_CONTENT",), parse_bool, False, "Record message content on chat spans."
    ),
    "timeout_s": _Param(("ANALYTICS_TIMEOUT_S",), _parse_positive_float, 5.0, "Network timeout per request."),
    "flush_timeout_s": _Param(
        ("ANALYTICS_FLUSH_TIMEOUT_S",),
        _parse_positive_float,
        5.0,
        "Bound on flush and shutdown (and at exit).",
    ),
    "pricing_file": _Param(
        ("ANALYTICS_PRICING_FILE",),
        _parse_existing_file,
        None,
        "TOML or JSON price overrides (USD per 1M tokens).",
    ),
    "new_models_per_s": _Param(
        ("ANALYTICS_NEW_MODELS_PER_S",),
        _parse_rate_or_unlimited,
        20.0,
        "New model names priced per second on the request path (10 s' worth at once), or unlimited.",
    ),
    "service_name": _Param(("OTEL_SERVICE_NAME",), _parse_text, None, "service.name of a provider we build."),
    "routes": _Param(
        ("ANALYTICS_ROUTES",), _parse_routes, None, "Middleware route rules; unset: LibreChat-shaped defaults."
    ),
    "user_header": _Param(
        ("ANALYTICS_USER_HEADER",), _parse_header, "x-user-id", "Request header the middleware reads the user from."
    ),
    "session_header": _Param(
        ("ANALYTICS_SESSION_HEADER",), _parse_header, "x-session-id", "Request header with the session id."
    ),
    "redact_query_params": _Param(
        ("ANALYTICS_REDACT_QUERY_PARAMS",),
        _parse_names,
        (),
        "Query parameters whose values are redacted on spans, besides the built-in list.",
    ),
    "capture_llm_calls": _Param(
        ("ANALYTICS_CAPTURE_LLM_CALLS",),
        parse_bool,
        True,
        "Record the app's own calls to LLM providers (httpx, httpx2), from the HTTP client.",
    ),
    "llm_hosts": _Param(
        ("ANALYTICS_LLM_HOSTS",),
        _parse_base_urls,
        (),
        "More base URLs of LLM providers (OpenAI-compatible servers) whose calls are captured.",
    ),
    "capture_without_session": _Param(
        ("ANALYTICS_CAPTURE_WITHOUT_SESSION",),
        _parse_choice("record", "ignore"),
        "record",
        "A captured call outside any session: recorded without one, or not recorded.",
    ),
    "metrics": _Param(
        ("ANALYTICS_METRICS",),
        parse_bool,
        True,
        "Record the GenAI metrics when a meter provider can export them.",
    ),
    "metrics_exporters": _Param(
        ("ANALYTICS_METRICS_EXPORTERS",),
        parse_metrics_exporters,
        None,
        "Metrics exporters for otel-analytics' metrics (otlp, console, prometheus), on a meter provider of their own.",
    ),
    "metrics_user_id": _Param(
        ("ANALYTICS_METRICS_USER_ID",),
        parse_bool,
        False,
        "Add user.id to the metrics (one series per user: only with a known, small number of users).",
    ),
    "inspect_bytes": _Param(
        ("ANALYTICS_INSPECT_BYTES",),
        _parse_positive_int,
        1 << 20,
        "Most bytes of a body (request or response) the middleware reads.",
    ),
}


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one ``configure()`` call."""

    enabled: bool = True
    exporters: tuple[str, ...] | None = None
    tracker_url: str = DEFAULT_TRACKER_URL
    tracker_token: str | None = field(default=None, repr=False)
    tracker_allow_insecure: bool = False
    retry_budget_s: float = 30.0
    send_costs: bool = False
    capture_content: bool = False
    timeout_s: float = 5.0
    flush_timeout_s: float = 5.0
    pricing_file: str | None = None
    new_models_per_s: float | None = 20.0
    service_name: str | None = None
    routes: tuple[Any, ...] | None = None
    user_header: str = "x-user-id"
    session_header: str = "x-session-id"
    inspect_bytes: int = 1 << 20
    redact_query_params: tuple[str, ...] = ()
    capture_llm_calls: bool = True
    llm_hosts: tuple[str, ...] = ()
    capture_without_session: str = "record"
    metrics: bool = True
    metrics_exporters: tuple[str, ...] | None = None
    metrics_user_id: bool = False

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Resolve every setting: keyword, then environment, then default."""
        overrides = dict(overrides or {})
        env = os.environ if environ is None else environ
        unknown = sorted(set(overrides) - set(_PARAMS))
        if unknown:
            raise TypeError(f"configure() got unknown settings {unknown}; known settings: {sorted(_PARAMS)}.")
        values: dict[str, Any] = {}
        for name, param in _PARAMS.items():
            if name in overrides and overrides[name] is not None:
                values[name] = param.parse(name, overrides[name])
                continue
            for var in param.env:
                raw = env.get(var, "")
                if raw.strip():  # an empty variable counts as unset (OpenTelemetry spec)
                    values[name] = param.parse(var, raw)
                    break
            else:
                values[name] = param.default
        # OTEL_SDK_DISABLED turns us off as well as the SDK, and the GenAI capture variable turns
        # content capture on like ours does.
        if "enabled" not in overrides and parse_bool("OTEL_SDK_DISABLED", env.get("OTEL_SDK_DISABLED") or "false"):
            values["enabled"] = False
        genai_capture = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip()
        if (
            "capture_content" not in overrides
            and not env.get("ANALYTICS_CAPTURE_CONTENT", "").strip()
            and genai_capture
        ):
            values["capture_content"] = _parse_genai_capture(
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", genai_capture
            )
        validate_otel_environment(env)
        return cls(**values)


def validate_otel_environment(env: Mapping[str, str]) -> None:
    """Check the standard variables whose bad values the SDK would only log, or silently ignore."""
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = env.get(var, "").strip()
        if raw and raw not in OTLP_PROTOCOLS:
            raise ConfigurationError(f"{var}={raw!r} is not supported; accepted values: {', '.join(OTLP_PROTOCOLS)}.")
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in SAMPLERS:
        raise ConfigurationError(
            f"OTEL_TRACES_SAMPLER={sampler!r} is not valid; accepted values: {', '.join(SAMPLERS)}."
        )
    arg = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if arg and sampler.endswith("traceidratio"):
        try:
            ratio = float(arg)
        except ValueError:
            ratio = math.nan
        if not 0.0 <= ratio <= 1.0:
            raise ConfigurationError(
                f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not valid; accepted values: a number from 0 to 1."
            )
    bsp = {}
    for var in (
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BSP_EXPORT_TIMEOUT",
    ):
        raw = env.get(var, "").strip()
        if not raw:
            continue
        if not raw.isdigit() or int(raw) <= 0:
            raise ConfigurationError(f"{var}={raw!r} is not valid; accepted values: a positive integer.")
        bsp[var] = int(raw)
    queue = bsp.get("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
    if bsp.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", min(512, queue)) > queue:
        raise ConfigurationError(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={bsp['OTEL_BSP_MAX_EXPORT_BATCH_SIZE']} is larger than "
            f"OTEL_BSP_MAX_QUEUE_SIZE={queue}; accepted values: at most the queue size."
        )
    for var in ("OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT"):
        raw = env.get(var, "").strip()
        if raw and (not raw.isdigit() or int(raw) <= 0):
            raise ConfigurationError(f"{var}={raw!r} is not valid; accepted values: a positive number of milliseconds.")
    temporality = env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "").strip().lower()
    if temporality and temporality not in TEMPORALITIES:
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={temporality!r} is not valid; accepted values: "
            f"{', '.join(TEMPORALITIES)}."
        )
    resource = env.get("OTEL_RESOURCE_ATTRIBUTES", "").strip()
    for pair in filter(None, (p.strip() for p in resource.split(","))):
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise ConfigurationError(
                f"OTEL_RESOURCE_ATTRIBUTES has an invalid entry {pair!r}; accepted values: key=value pairs "
                "separated by commas."
            )
