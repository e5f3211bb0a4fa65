"""The configuration reference's table, made from the settings' own declarations
(``otel_analytics/settings.py``): each variable, its keyword, its default, what it does, and what
``configure()`` says of a bad value (the parser's own message, for a sample bad value).

    python scripts/settings_table.py          # rewrite the table in docs/configuration.md
    python scripts/settings_table.py --check  # exit 1 if the page is not what this would write

``tests/test_docs.py`` runs the check, so the page never drifts from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_analytics.errors import ConfigurationError
from otel_analytics.settings import _PARAMS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN, END = "<!-- settings table: begin (scripts/settings_table.py) -->", "<!-- settings table: end -->"
SAMPLES = ("maybe", "-1", "ftp://x", "a b=c", "0")


def _default(value: object) -> str:
    if value is None or value == ():
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _bad_value(name: str) -> str:
    param = _PARAMS[name]
    for sample in SAMPLES:
        try:
            param.parse(param.env[0], sample)
        except (ConfigurationError, ValueError) as error:
            return str(error).replace("|", "\\|")
    return "any text is taken"


def table() -> str:
    rows = ["| variable | keyword | default | what it does | a bad value says |", "|---|---|---|---|---|"]
    for name, param in _PARAMS.items():
        rows.append(f"| `{param.env[0]}` | `{name}` | {_default(param.default)} | {param.doc} | {_bad_value(name)} |")
    return "\n".join(rows)


def main() -> int:
    page = PAGE.read_text(encoding="utf-8")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    written = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if "--check" in sys.argv:
        if written != page:
            print("docs/configuration.md is not the settings' table: run python scripts/settings_table.py")
            return 1
        return 0
    PAGE.write_text(written, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
