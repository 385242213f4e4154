"""Every benchmark, one after another, each printing its table: `python -m bench [--profile short|full]`.

`make bench` runs the short profile (a few minutes on two cores: fewer rounds
and smaller files, same tables).  Each benchmark runs in its own process with
its own throwaway stack, so one cannot warm or slow another.  Figures are
printed, never asserted: they vary by machine, and every table sets the
gateway beside its raw floor measured in the same run.

    python -m bench                      # short profile, every benchmark
    python -m bench --profile full       # the benchmarks' own defaults
    python -m bench --only upload,routing
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

# name → arguments of the short profile (the full profile passes none: each module's defaults).
BENCHMARKS: dict[str, list[str]] = {
    "tokens": ["--rounds", "1000"],
    "auth": ["--rounds", "100"],
    "clamd_chunks": ["--mb", "20", "--rounds", "1"],
    "upload": ["--sizes", "10,50", "--rounds", "1"],
    "routing": ["--submits", "100"],
    "queue_search": ["--sizes", "1000,5000", "--rounds", "3"],
    "batch": ["--items", "1000"],
    "reading": ["--pages", "3"],
    "load": ["--duration", "20", "--drain", "15"],
    "handoff": ["--jobs", "200"],
    "relay": ["--submits", "150"],
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; the exit status is the number that failed to run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("short", "full"), default="short")
    parser.add_argument("--only", default="", help="comma-separated benchmark names: " + ", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = []
    for name in chosen:
        extra = BENCHMARKS[name] if args.profile == "short" else []
        print(f"\n=== bench.{name} ({args.profile}) {' '.join(extra)}".rstrip(), flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], check=False)
        print(f"--- bench.{name}: {'ok' if result.returncode == 0 else f'exit {result.returncode}'} "
              f"in {time.monotonic() - started:.0f} s", flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
