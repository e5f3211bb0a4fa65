"""Counting instructions with valgrind's callgrind, for the ``*_instructions`` benchmarks.

Each variant runs as ``python -m <module> --child <variant>`` under callgrind, two at a time (the
counts need no quiet CPU). The child marks the end of its warm-up and of each phase by calling
:func:`mark` (``binascii.crc_hqx``, which nothing else here calls); callgrind dumps its count
there, so dump 1 is start-up and warm-up and dumps 2.. are the phases, in order.
"""

from __future__ import annotations

import binascii
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

from bench.common import QUICK

_MARK = "*crc_hqx*"  # callgrind dumps its counts when this function is entered


def mark() -> None:
    binascii.crc_hqx(b"", 0)


def _count(valgrind: str, module: str, variant: str, phases: int, workdir: str, environ: dict[str, str]) -> list[int]:
    """Instructions of each phase of one variant (one callgrind run)."""
    out = os.path.join(workdir, f"{variant}.out")
    command = [
        valgrind,
        "--tool=callgrind",
        f"--dump-before={_MARK}",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        module,
        "--child",
        variant,
        *(["--quick"] if QUICK else []),
    ]
    # One hash seed for every run: with a random one (Python's default), dicts and sets of strings
    # lay out differently each time, and the same code counted up to ~4k instructions apart
    # from one run to the next.
    run = subprocess.run(command, capture_output=True, text=True, env={**environ, "PYTHONHASHSEED": "0"})
    if run.returncode != 0:
        raise RuntimeError(f"{variant} under callgrind failed: {run.stderr[-2000:]}")
    counts = []
    for index in range(2, 2 + phases):
        with open(f"{out}.{index}", encoding="utf-8") as dump:
            totals = [line for line in dump if line.startswith("totals:")]
        counts.append(int(totals[0].split()[1]))
    return counts


def count(
    module: str,
    variants: Sequence[str],
    phases: int,
    prepare: Callable[[str], dict[str, str]] | None = None,
) -> dict[str, list[int]] | None:
    """Each variant's instructions in each of its ``phases``; ``None`` (said) where valgrind is
    not installed. ``prepare``: given the working folder, writes what the children read there
    and returns the variables that tell them where."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed: instruction counts skipped\n")
        return None
    if hasattr(os, "sched_setaffinity"):  # counts need no quiet CPU: two variants at once, any CPU
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(max_workers=2) as pool:
        environ = {**os.environ, **(prepare(workdir) if prepare is not None else {})}
        found = pool.map(lambda variant: _count(valgrind, module, variant, phases, workdir, environ), variants)
        return dict(zip(variants, found, strict=True))


def entry(child: Callable[[str], None], main: Callable[[], int]) -> NoReturn:
    """A benchmark module's entry: the child a callgrind run starts (``--child VARIANT``), else
    its ``main``."""
    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--child") + 1])
        sys.exit(0)
    sys.exit(main())
