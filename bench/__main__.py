"""``python -m bench [--quick] [--only PART ...]``: run the suite, write ``bench/results/``.

Parts: ``serving`` (router overhead, state sync, scaling; starts its own Ray), ``regret``
(policy-object regret curves and regret as arms grow), ``chapelle_li`` (delayed feedback),
``contextual`` (contextual policies' select() cost, reward against context-free policies,
off-policy evaluation of the uniform split), ``oip`` (the Open Inference Protocol's
``/v2/models/{experiment}/infer``, JSON and binary tensors, next to ``/predict``; its own Ray).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

PARTS = ("serving", "oip", "regret", "chapelle_li", "contextual")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small T, few repetitions (<5 min)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other parts' results from the existing latest.json",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.monotonic()
    command = "make bench-quick" if args.quick else "make bench"
    if set(args.only) != set(PARTS) or args.merge:
        command = (
            f"python -m bench{' --quick' if args.quick else ''} --only {' '.join(args.only)}"
            + (" --merge" if args.merge else "")
        )
    mode = "quick" if args.quick else "full"
    today = datetime.date.today().isoformat()
    results: dict[str, Any] = {}
    previous = args.out / "latest.json"
    if args.merge and previous.exists():
        results = json.loads(previous.read_text())
    parts = results.get("meta", {}).get("parts", {})
    parts.update({part: {"mode": mode, "date": today} for part in args.only})
    results["meta"] = {
        "mode": mode if not args.merge else "/".join(sorted({p["mode"] for p in parts.values()})),
        "command": command,
        "date": today,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "parts": parts,
    }

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)

    if "regret" in args.only:
        from bench.regret import run_arm_scaling, run_regret_suite

        horizon, reps = (4_000, 3) if args.quick else (50_000, 8)
        log(f"regret: T={horizon}, {reps} reps")
        results["regret"] = run_regret_suite(horizon, reps, workers=args.workers)
        log("regret as arms grow")
        results["regret_arm_scaling"] = run_arm_scaling(horizon, reps, workers=args.workers)
    if "chapelle_li" in args.only:
        from bench.chapelle_li import run_chapelle_li

        horizon, reps = (50_000, 2) if args.quick else (1_000_000, 8)
        log(f"Chapelle & Li: T={horizon}, {reps} reps")
        results["chapelle_li"] = run_chapelle_li(
            horizon, reps, workers=args.workers, check_reps=2 if args.quick else 6
        )
    if "contextual" in args.only:
        from bench.contextual import run as run_contextual

        log("contextual bandits and off-policy evaluation")
        results["contextual"] = run_contextual(quick=args.quick, out=args.out)
    if "oip" in args.only:
        from bench.oip import OipBenchConfig, run_oip

        log("Open Inference Protocol next to /predict")
        results["oip"] = run_oip(OipBenchConfig.quick() if args.quick else OipBenchConfig(), log)
    if "serving" in args.only:
        from bench.serving import ServingConfig, headline, run_serving

        config = ServingConfig.quick() if args.quick else ServingConfig()
        results["serving"] = run_serving(config, log)
        results.update(headline(results["serving"], config.concurrency))
    results["meta"]["wall_s"] = round(time.monotonic() - started, 1)

    from bench.report import write_results

    paths = write_results(results, args.out)
    print(paths["md"].read_text())
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
