"""Start-up time of the command line, warm: `lmlab similarity bank river` and `lmlab --help`.

Each command runs once to warm up (the ONNX export and the file cache), then `--runs` more
times in fresh processes; the median wall time of those, start to finish, is printed next to
the goal (issue 28: both within 1.5 s), with the median CPU time (user + system, all threads:
what the command costs when the machine is shared and wall time waits for a core) and the
modules the command did not need but loaded. The load average is printed with them.

Usage: python benchmarks/startup.py [--runs 5]
(set LMLAB_HOME to time a fresh cache; the command is `python -m lmlab` of this interpreter)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

GOAL_SECONDS = 1.5
COMMANDS = {
    "lmlab similarity bank river": ["similarity", "bank", "river"],
    "lmlab --help": ["--help"],
}
HEAVY = ("torch", "transformers", "sklearn", "matplotlib", "pandas", "scipy")
# The command run in-process, then the heavy modules it left loaded.
PROBE = """
import sys
from lmlab.cli import main
try:
    main({args!r})
except SystemExit:
    pass
print("loaded:", " ".join(m for m in {heavy!r} if m in sys.modules) or "none", file=sys.stderr)
"""


def seconds(args: list[str]) -> tuple[float, float]:
    """Wall and CPU time of one `python -m lmlab ARGS` process, start to finish."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmlab", *args], check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def heavy_modules(args: list[str]) -> str:
    code = PROBE.format(args=args, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the runs")
    print(
        f"{'command':<30} {'median s':>9} {'min s':>7} {'max s':>7} {'cpu s':>6}  goal   "
        "heavy modules"
    )
    for label, argv in COMMANDS.items():
        seconds(argv)  # warm-up: caches made, files in the page cache
        runs = [seconds(argv) for _ in range(args.runs)]
        times = [wall for wall, _ in runs]
        median = statistics.median(times)
        cpu = statistics.median(cpu for _, cpu in runs)
        verdict = "ok" if median <= GOAL_SECONDS else "over"
        print(
            f"{label:<30} {median:>9.2f} {min(times):>7.2f} {max(times):>7.2f} {cpu:>6.2f}  "
            f"{verdict:<5}  {heavy_modules(argv)}"
        )
    print(f"load average {os.getloadavg()[0]:.1f} after the runs")


if __name__ == "__main__":
    main()
