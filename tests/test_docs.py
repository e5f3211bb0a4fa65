"""The documentation says what the code does: the configuration table is generated from the
settings' declarations, every variable the package reads is in it, the README stays a short guide
whose links resolve, the session rule's worked example is the code's, and the site builds with
``mkdocs build --strict`` (a broken link or a docstring reference that no longer exists fails)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from otel_analytics.ids import session_root_span_id, session_trace_id

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_the_configuration_table_is_the_settings() -> None:
    check = subprocess.run(
        [sys.executable, "scripts/settings_table.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_variable_the_package_reads_is_documented() -> None:
    page = (DOCS / "configuration.md").read_text()
    read = set()
    for path in (ROOT / "otel_analytics").rglob("*.py"):
        read |= set(re.findall(r'"((?:ANALYTICS|OTEL)_[A-Z0-9_]+)"', path.read_text()))
    # Read by the client but named by the tracker's command line, or by the Collector configs.
    elsewhere = {"ANALYTICS_TRACKER_TOKEN", "ANALYTICS_TRACE_URL", "ANALYTICS_PRICING_FILE"}
    missing = sorted(name for name in read - elsewhere if name not in page and not _covered(name, page))
    assert not missing, f"read by the package, not in docs/configuration.md: {missing}"


def _covered(name: str, page: str) -> bool:
    """``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` is covered by the row for ``OTEL_EXPORTER_OTLP_*``."""
    return any(name.startswith(prefix.rstrip("*")) for prefix in re.findall(r"`([A-Z_]+\*)`", page))


def test_the_readme_is_a_short_guide_whose_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 230
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_the_worked_example_is_the_codes() -> None:
    page = (DOCS / "sessions.md").read_text()
    assert f"trace_id     = {session_trace_id('conv-1'):032x}" in page
    assert f"root_span_id = {session_root_span_id('conv-1'):016x}" in page


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").read_text().count("configure") > 3
