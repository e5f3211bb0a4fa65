"""The dashboard's front-end parts ship in the wheel: its templates, its script and style, and
the charting library (Chart.js from the npm registry, pinned, with its licence), byte for byte
the files ``scripts/vendor_chartjs.py`` checked against the registry's integrity."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "otel_analytics" / "tracker" / "dashboard"
VENDOR = DASHBOARD / "static" / "vendor"


def test_the_vendored_library_is_the_pinned_one() -> None:
    pinned = json.loads((VENDOR / "VENDOR.json").read_text())
    assert pinned["package"] == "chart.js" and pinned["integrity"].startswith("sha512-")
    assert pinned["version"].count(".") == 2  # an exact version, not a range
    for name, digest in pinned["sha256"].items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (VENDOR / "chart.js-LICENSE.md").read_text()
    assert (VENDOR / "chart.umd.min.js").read_bytes().startswith(b"/*!\n * Chart.js v" + pinned["version"].encode())


def test_no_page_asks_anything_of_another_host() -> None:
    for path in [*DASHBOARD.glob("templates/*.html"), *DASHBOARD.glob("static/*.*")]:
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a request
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name
        assert "<script>" not in text and " on" + "click=" not in text, path.name  # no inline script


def test_the_wheel_carries_the_dashboard(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("otel_analytics-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    prefix = "otel_analytics/tracker/dashboard/"
    shipped = {
        prefix + str(path.relative_to(DASHBOARD))
        for path in DASHBOARD.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert shipped <= names, sorted(shipped - names)
    assert prefix + "static/vendor/chart.umd.min.js" in names
    assert "otel_analytics/tracker/migrations/0003_dashboard.sql" in names
