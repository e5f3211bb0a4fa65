"""Refresh the dashboard's charting library from the npm registry: ``npm pack chart.js@VERSION``,
check the tarball against the registry's integrity (and, unless ``--update``, against the one
pinned in ``VENDOR.json``), then copy the minified UMD build and the licence into the package.

    python scripts/vendor_chartjs.py            # re-fetch the pinned version, verify, copy
    python scripts/vendor_chartjs.py --version 4.6.1 --update   # move the pin

The files it writes are committed; ``tests/test_dashboard_assets.py`` checks them against the
SHA-256 sums recorded here.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "otel_analytics/tracker/dashboard/static/vendor"
PINNED = VENDOR / "VENDOR.json"
FILES = {"package/dist/chart.umd.min.js": "chart.umd.min.js", "package/LICENSE.md": "chart.js-LICENSE.md"}


def _sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pinned = json.loads(PINNED.read_text()) if PINNED.exists() else {}
    parser.add_argument("--version", default=pinned.get("version"), help="chart.js version (default: the pinned one)")
    parser.add_argument("--update", action="store_true", help="accept a new version's integrity and pin it")
    args = parser.parse_args()
    if not args.version:
        parser.error("no pinned version: give --version")
    with tempfile.TemporaryDirectory() as work:
        packed = subprocess.run(
            ["npm", "pack", f"chart.js@{args.version}", "--json", "--pack-destination", work],
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(packed.stdout)[0]
        tarball = (Path(work) / info["filename"]).read_bytes()
        if _sri(tarball) != info["integrity"]:
            print(f"the tarball does not match the registry's integrity {info['integrity']}", file=sys.stderr)
            return 1
        if not args.update and pinned.get("version") == args.version and pinned.get("integrity") != info["integrity"]:
            print(f"chart.js {args.version}: integrity {info['integrity']} is not the pinned one", file=sys.stderr)
            return 1
        sums = {}
        with tarfile.open(Path(work) / info["filename"]) as archive:
            for member, name in FILES.items():
                extracted = archive.extractfile(member)
                if extracted is None:
                    print(f"{member} is not in the package", file=sys.stderr)
                    return 1
                data = extracted.read()
                (VENDOR / name).write_bytes(data)
                sums[name] = hashlib.sha256(data).hexdigest()
    record = {
        "package": "chart.js",
        "version": args.version,
        "integrity": info["integrity"],
        "license": "MIT",
        "source": f"npm pack chart.js@{args.version}",
        "sha256": sums,
    }
    PINNED.write_text(json.dumps(record, indent=2) + "\n")
    print(f"chart.js {args.version} vendored: {', '.join(sums)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
