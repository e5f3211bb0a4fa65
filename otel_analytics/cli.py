"""The ``otel-analytics`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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
    from .config import Settings
    from .pricing import PriceBook, cost_of, format_usd
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


def main(argv: Sequence[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
