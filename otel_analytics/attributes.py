"""Every span attribute name otel-analytics writes or reads, in one place.

The GenAI semantic conventions are still experimental and have renamed attributes before
(``gen_ai.system`` became ``gen_ai.provider.name``), so nothing else in the package spells an
attribute name: a future rename is a one-line change here. Names follow the GenAI conventions
(semantic-conventions-genai, semconv 1.45 era) where one exists; our own live under
``analytics.*``.
"""

from __future__ import annotations

from typing import Final

# --- OpenTelemetry GenAI semantic conventions -------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
"""Seconds from the request to the first chunk of a streamed answer."""
# Includes cached tokens, as the conventions ask.
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
# Includes reasoning tokens.
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
# Newer name of the cache-write count; older instrumentations wrote ``cache_creation``.
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
# Opt-in content attributes (JSON strings on spans).
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
ERROR_TYPE: Final = "error.type"

# --- General conventions ----------------------------------------------------------------------
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
# HTTP server spans' URL attributes (old and new HTTP conventions), whose query is redacted.
HTTP_URL: Final = "http.url"
HTTP_TARGET: Final = "http.target"
URL_FULL: Final = "url.full"
URL_QUERY: Final = "url.query"

# --- otel-analytics' own attributes -----------------------------------------------------------
REQUEST_SESSION_ID: Final = "analytics.session.id"
"""On an HTTP request's span (another trace than the session's): the session the request served.
Not ``session.id``, which backends (Phoenix, Langfuse) read to group traces into sessions: the
request's trace would count as one more trace of the conversation. Find a session's requests by
this attribute, or by the span links between the two."""
COUNTED_IN: Final = "analytics.counted_in"
"""On another instrumentation's GenAI span (an SDK's own, a peer's) for a call otel-analytics
captured: the span id (hex) of the interaction span that counts the call. That span's usage
counts (``gen_ai.usage.*``) move to ``analytics.sdk.gen_ai.usage.*``, so a backend that sums
``gen_ai.usage.*`` counts the call once."""
MOVED_USAGE_PREFIX: Final = "analytics.sdk."
INTERACTION_TYPE: Final = "analytics.interaction.type"
"""One of ``chat``, ``db``, ``api``, ``cost-event`` (the tracker's interaction types)."""
SESSION_EVENT: Final = "analytics.session.event"
"""``start``, ``end`` or ``root`` on the spans that describe a session's lifecycle."""
SESSION_START_TIME: Final = "analytics.session.start_time"
"""ISO-8601 start of the session, on its ``end`` and ``root`` spans when it is known."""
OUTCOME: Final = "analytics.outcome"
"""How the work ended: ``completed``, ``failed``, ``cancelled``, ``closed`` (consumer stopped early)."""
USAGE_STATUS: Final = "analytics.usage.status"
"""``reported`` when token counts came from the provider, ``missing`` when none were seen."""
DB_READ_OPS: Final = "analytics.db.read_ops"
DB_WRITE_OPS: Final = "analytics.db.write_ops"
API_CALL_COUNT: Final = "analytics.api.call_count"
COST_USD: Final = "analytics.cost.usd"
COST_MICRO_CENTS: Final = "analytics.cost.micro_cents"
"""Total cost in integer micro-cents (1 mc = $0.00001), the tracker's money unit."""
PRICING_STATUS: Final = "analytics.pricing.status"
"""Why a chat span has no cost: ``unknown_model`` (no price known), ``no_usage`` (no tokens) or
``not_looked_up`` (too many new model names at once: the lookup was skipped, see
``ANALYTICS_NEW_MODELS_PER_S``)."""
PRICING_VERSION: Final = "analytics.pricing.version"
"""Where the cost came from: ``genai-prices <version>``, or your price file's ``version``."""
METADATA: Final = "analytics.metadata"
"""Caller-supplied metadata as a JSON object string (secrets redacted)."""
STATUS: Final = "analytics.status"
"""The tracker status given by the caller (``completed``, ``failed``, ``timeout``)."""

COST_PART_PREFIX: Final = "analytics.cost."
"""Explicit cost parts given by the caller: ``analytics.cost.ai_tokens_cost_mc`` and the like."""

INTERACTION_TYPES: Final = ("chat", "db", "api", "cost-event")
STATUSES: Final = ("completed", "failed", "timeout")
"""The tracker's interaction statuses."""
COST_PARTS: Final = ("ai_tokens_cost_mc", "db_ops_cost_mc", "api_calls_cost_mc", "compute_time_cost_mc")
"""The parts of an interaction's cost in the tracker contract, in micro-cents."""
COST_PART_ATTRIBUTES: Final = frozenset(COST_PART_PREFIX + part for part in COST_PARTS)
"""The span attributes that carry the cost parts (``analytics.cost.db_ops_cost_mc``, ...)."""
