"""OTLP/HTTP trace ingest: protobuf or JSON bodies (gzip allowed) through the exporter's mapping.

An OpenTelemetry Collector's stock ``otlphttp`` exporter can therefore deliver analytics spans to
the tracker. Spans that are not analytics spans are accepted and ignored (the contract has no
route for them); analytics spans whose mapped call fails validation are counted in the answer's
``partial_success.rejected_spans``, as the OTLP specification asks.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from .._text import clean_json
from ..contract import INTERACTION, SESSION_END, SESSION_START, SpanRecord, start_call, to_call
from . import validation
from .store import Store
from .validation import ContractError, invalid

_STATUS_ERROR = 2


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "deflate"):
        raise invalid(f"Unsupported Content-Encoding: {encoding[:32]}", field="Content-Encoding")
    decompressor = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = decompressor.decompress(raw, limit + 1)
    except zlib.error:
        raise invalid(f"Body is not valid {encoding}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise ContractError("payload_too_large", f"Decompressed body larger than {limit} bytes", 413, limit=limit)
    return out


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping expects base64 (``node`` has been
    through ``clean_json``: its strings are valid Unicode)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise invalid(f"Invalid {key}: must be hex") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def parse_request(raw: bytes, headers: Mapping[str, str], limit: int) -> tuple[list[SpanRecord], bool]:
    """The span records of an export request, and whether it was JSON (to answer in kind)."""
    body = _decompress(raw, headers.get("content-encoding", "").strip().lower(), limit)
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    request = ExportTraceServiceRequest()
    if media == "application/x-protobuf":
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError):
            raise invalid("Body is not a valid OTLP protobuf ExportTraceServiceRequest") from None
        as_json = False
    elif media == "application/json":
        try:
            # Strings with lone surrogates are kept as U+FFFD, as every JSON route keeps them.
            document = clean_json(json.loads(body))
            _hex_ids_to_base64(document)
            json_format.ParseDict(document, request, ignore_unknown_fields=True)
        except ContractError:
            raise
        except (ValueError, RecursionError, json_format.ParseError, TypeError):
            raise invalid("Body is not a valid OTLP/JSON ExportTraceServiceRequest") from None
        as_json = True
    else:
        raise ContractError(
            "invalid_request",
            "Content-Type must be application/x-protobuf or application/json",
            415,
            field="Content-Type",
        )
    return list(_records(request)), as_json


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if kind in ("kvlist_value", "bytes_value", None):
        return None
    return getattr(value, kind)


def _records(request: ExportTraceServiceRequest) -> Any:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    continue
                yield SpanRecord(
                    trace_id=int.from_bytes(span.trace_id, "big"),
                    span_id=int.from_bytes(span.span_id, "big"),
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano or span.start_time_unix_nano,
                    attributes={kv.key: _value(kv.value) for kv in span.attributes},
                    error=span.status.code == _STATUS_ERROR,
                )


def ingest(store: Store, records: list[SpanRecord]) -> tuple[int, str]:
    """Apply the records like the tracker exporter would: starts, interactions, then ends."""
    rejected, problems = 0, []
    starts, interactions, ends = [], [], []
    for record in records:
        call = to_call(record)
        if call is None:
            continue
        try:
            if call.route == SESSION_START:
                starts.append(validation.session_start(call.body))
            elif call.route == INTERACTION:
                interactions.append((validation.interaction(call.body), call.idempotency_key))
            elif call.route == SESSION_END:
                ends.append((validation.session_end(call.body), call))
        except ContractError as exc:
            rejected += 1
            problems.append(exc.message)
    for body in starts:
        store.start_session(body)
    for start in range(0, len(interactions), 500):
        store.add_interactions(interactions[start : start + 500])
    for body, call in ends:
        if store.end_session(body) is None:
            store.start_session(
                validation.session_start(start_call(call.session_id, call.user_id, call.extra["start_time"]).body)
            )
            store.end_session(body)
    return rejected, "; ".join(sorted(set(problems)))[:1000]


def response_body(rejected: int, message: str, as_json: bool) -> tuple[bytes, str]:
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if as_json:
        return json_format.MessageToJson(response).encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"
