"""Cold start of the CLI: wall and CPU seconds of ``skylens search INDEX TEXT`` run as a new
process, and what its imports cost (``python -X importtime``).

Usage:
    python bench/cli_cold.py INDEX [--runs 5] [--queries 20] [--out bench/results/cli_cold.json]

Each run is a fresh interpreter (the OS file cache is warm after the first: that is the cold
start a user sees on a second call). CPU seconds (user + sys of the child) are reported beside
wall seconds because on a shared machine the wall clock also measures the neighbours; the load
average is recorded with the figures. ``--queries N`` also times N single-query calls against
one ``--queries`` call answering the same N lines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERIES = ("airplanes at an airport", "a dense forest", "a river", "a parking lot", "farmland")


def _run(cmd: list[str]) -> tuple[float, float]:
    """(wall s, cpu s) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _stats(samples: list[tuple[float, float]]) -> dict:
    walls = sorted(w for w, _ in samples)
    cpus = sorted(c for _, c in samples)
    return {
        "runs": len(samples),
        "wall_s_min": round(walls[0], 3),
        "wall_s_median": round(walls[len(walls) // 2], 3),
        "cpu_s_min": round(cpus[0], 3),
        "cpu_s_median": round(cpus[len(cpus) // 2], 3),
    }


def import_profile(cli: list[str], top: int = 12) -> list[dict]:
    """Slowest top-level imports (cumulative microseconds) of one search run."""
    code = "import sys; from skylens.cli import main; sys.argv = ['skylens', *sys.argv[1:]]; main()"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *cli],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (p.strip() for p in line.split("|"))
        if cumulative.isdigit() and not name.startswith(" "):
            rows.append({"module": name, "cumulative_ms": round(int(cumulative) / 1000, 1)})
    top_level = [r for r in rows if "." not in r["module"]]
    return sorted(top_level, key=lambda r: -r["cumulative_ms"])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("bench/results/cli_cold.json"))
    args = ap.parse_args()
    skylens = shutil.which("skylens") or str(Path(sys.executable).with_name("skylens"))
    search = [skylens, "search", str(args.index), QUERIES[0], "--k", "10", "-f", "json"]
    _run(search)  # warm the file cache and the ONNX export
    result = {
        "command": " ".join(search),
        "load_average_before": os.getloadavg(),
        "search_cold": _stats([_run(search) for _ in range(args.runs)]),
        "help_cold": _stats([_run([skylens, "--help"]) for _ in range(args.runs)]),
    }
    if args.queries:
        lines = [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(args.queries)]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
            fh.write("\n".join(lines))
        one_call = [skylens, "search", str(args.index), "--queries", fh.name, "--k", "10"]
        result["queries"] = {
            "n": args.queries,
            "one_call": _stats([_run(one_call)]),
            "separate_calls_total_s": round(
                sum(_run([*search[:3], q, "--k", "10", "-f", "json"])[0] for q in lines), 3
            ),
        }
        os.unlink(fh.name)
    result["imports"] = import_profile(search[1:])
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
