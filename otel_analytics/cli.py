"""The otel-analytics command: the local tracker, reports, ids and prices."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import httpx

from .errors import ConfigurationError
from .settings import DEFAULT_TRACKER_URL


def _ids(args: argparse.Namespace) -> int:
    from .ids import session_root_span_id, session_trace_id

    print(f"trace_id      {session_trace_id(args.session_id):032x}")
    print(f"root_span_id  {session_root_span_id(args.session_id):016x}")
    return 0


def _health(args: argparse.Namespace) -> int:
    from .client import health_check

    healthy = health_check(args.url, timeout_s=args.timeout)
    print("ok" if healthy else "unhealthy")
    return 0 if healthy else 1


def _price(args: argparse.Namespace) -> int:
    from .pricing import PriceBook, cost_of, format_usd
    from .settings import Settings
    from .usage import Usage

    book = PriceBook(Settings.load().pricing_file)
    price = book.price(args.model, args.provider)
    if price is None:
        print(f"no price known for {args.model!r}", file=sys.stderr)
        return 1
    print(f"{args.model}: input ${price.input}/M, output ${price.output}/M ({price.version})")
    cost = cost_of(Usage(input_tokens=args.input_tokens, output_tokens=args.output_tokens), price)
    if cost is not None:
        usd = format_usd(cost.micro_cents)
        print(f"{args.input_tokens} in + {args.output_tokens} out = {cost.micro_cents} mc ({usd})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .tracker.app import TrackerConfig, create_app
    except ImportError:
        print("the tracker needs the server extra: pip install 'otel-analytics[server]'", file=sys.stderr)
        return 2
    user_tokens = {}
    for entry in args.user_token:
        user, sep, token = entry.partition("=")
        if not sep or not user or not token:
            print(f"--user-token expects USER=TOKEN, got {entry!r}", file=sys.stderr)
            return 2
        user_tokens[token] = user
    token = args.token or os.environ.get("ANALYTICS_TRACKER_TOKEN") or None
    pricing_file = args.pricing_file or os.environ.get("ANALYTICS_PRICING_FILE") or None
    if pricing_file and not os.path.isfile(pricing_file):
        print(f"--pricing-file {pricing_file!r}: no such file", file=sys.stderr)
        return 2
    try:
        config = TrackerConfig(
            db_path=args.db,
            token=token,
            user_tokens=user_tokens,
            pricing_file=pricing_file,
            trace_url=args.trace_url or os.environ.get("ANALYTICS_TRACE_URL") or None,
            dashboard=not args.no_dashboard,
        )
        app = create_app(config)
    except ConfigurationError as exc:
        print(f"otel-analytics tracker: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(
            f"warning: listening on {args.host} with no token: anyone who can reach it can read and write",
            file=sys.stderr,
        )
    where = f"http://{'localhost' if args.host in ('127.0.0.1', '::1') else args.host}:{args.port}"
    print(f"otel-analytics tracker on {where} (database {args.db})", flush=True)
    if config.dashboard:
        print(f"dashboard: {where}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import TrackerReader, collect, render, session_report

    url = args.url or os.environ.get("ANALYTICS_TRACKER_URL") or DEFAULT_TRACKER_URL
    reader = TrackerReader(url, args.token or os.environ.get("ANALYTICS_TRACKER_TOKEN"))
    try:
        if args.session:
            text = session_report(reader, args.session, args.format)
        else:
            report = collect(
                reader, user_id=args.user, model=args.model, since=args.since, until=args.until, limit=args.limit
            )
            text = render(report, args.format)
    except httpx.HTTPError as exc:
        print(f"cannot read the tracker at {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        reader.close()
    print(text)
    return 0


def _when(name: str) -> Callable[[str], str]:
    """A ``--since``/``--until`` value: a date (``2026-11-29``) or an ISO-8601 time with its zone."""

    def parse(raw: str) -> str:
        from datetime import UTC, datetime

        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {raw!r}: not a date (2026-11-29) or an ISO-8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # a date, or a time without a zone: UTC
        return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (`otel-analytics report | head`): nothing more to say, no traceback.
        # Python would complain again flushing stdout at exit: point it at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-analytics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ids = commands.add_parser("ids", help="the trace id and root span id of a session id")
    ids.add_argument("session_id")
    ids.set_defaults(run=_ids)
    health = commands.add_parser("health", help="check a tracker's GET /health")
    health.add_argument("--url", default=None, help="tracker base URL (default: ANALYTICS_TRACKER_URL)")
    health.add_argument("--timeout", type=float, default=None, help="seconds")
    health.set_defaults(run=_health)
    price = commands.add_parser("price", help="a model's price and the cost of some usage")
    price.add_argument("model")
    price.add_argument("--provider", default=None)
    price.add_argument("--input-tokens", type=int, default=1_000_000)
    price.add_argument("--output-tokens", type=int, default=0)
    price.set_defaults(run=_price)
    tracker = commands.add_parser("tracker", help="the local tracker")
    tracker_commands = tracker.add_subparsers(dest="tracker_command", required=True)
    serve = tracker_commands.add_parser("serve", help="serve the tracker API over SQLite")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument("--db", default="./analytics.db", help="SQLite file (created if missing)")
    serve.add_argument("--token", default=None, help="require this bearer token (default: ANALYTICS_TRACKER_TOKEN)")
    serve.add_argument(
        "--user-token",
        action="append",
        default=[],
        metavar="USER=TOKEN",
        help="a read-only token that sees only USER's data (repeatable)",
    )
    serve.add_argument(
        "--pricing-file",
        default=None,
        help="price overrides, as the client reads them (default: ANALYTICS_PRICING_FILE)",
    )
    serve.add_argument(
        "--trace-url",
        default=None,
        help="the dashboard's link to a trace, {trace_id} in it (default: ANALYTICS_TRACE_URL)",
    )
    serve.add_argument("--no-dashboard", action="store_true", help="serve the API only, no web dashboard at /")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(run=_serve)
    report = commands.add_parser(
        "report",
        help="sessions, tokens and cost from a tracker",
        description="Sessions, tokens and cost per session, model, provider and user, read from a tracker.",
    )
    report.add_argument("--url", default=None, help="tracker base URL (default: ANALYTICS_TRACKER_URL)")
    report.add_argument("--token", default=None, help="bearer token (default: ANALYTICS_TRACKER_TOKEN)")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table", help="default: table")
    report.add_argument("--session", default=None, help="one session's interactions")
    report.add_argument("--user", default=None, help="only this user's sessions")
    report.add_argument("--model", default=None, help="only this model's interactions")
    report.add_argument(
        "--since", type=_when("--since"), default=None, help="sessions started at or after (date or ISO time)"
    )
    report.add_argument(
        "--until", type=_when("--until"), default=None, help="sessions started before (date or ISO time)"
    )
    report.add_argument("--limit", type=int, default=50, help="at most this many sessions (default: 50)")
    report.set_defaults(run=_report)
    return parser


if __name__ == "__main__":
    sys.exit(main())
