"""Runs the same policy and events through this package and through upstream
capfence==0.9.0, each in its own virtual environment (both are imported as
`capfence`), both with a durable audit trail in a file, and prints
decisions/s for each, their ratio, and whether every event got the same
decision.

    python compare_upstream.py --ours VENV/bin/python --upstream VENV2/bin/python
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run(python: str, policy: Path, events: Path, threads: int) -> dict:
    out = subprocess.run(
        [python, str(HERE / "decide.py"), "--policy", str(policy),
         "--events", str(events), "--threads", str(threads)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", required=True, help="python with this package")
    parser.add_argument("--upstream", required=True, help="python with capfence==0.9.0")
    parser.add_argument("--policy", type=Path, default=ROOT / "policies/fintech_policy.yaml")
    parser.add_argument("--events", type=Path,
                        default=ROOT / "tests/data/seed_policy_events.jsonl")
    parser.add_argument("--threads", default="1,8", help="comma-separated")
    args = parser.parse_args()
    disagreements = 0
    for threads in [int(t) for t in args.threads.split(",")]:
        ours = run(args.ours, args.policy, args.events, threads)
        theirs = run(args.upstream, args.policy, args.events, threads)
        differ = sum(a != b for a, b in zip(ours["decided"], theirs["decided"]))
        disagreements += differ
        for side in (ours, theirs):
            print(f"{side['package']:<22} threads={threads}  "
                  f"{side['decisions_per_s']:>9.0f} decisions/s  {side['counts']}")
        print(f"ratio (ours / upstream), threads={threads}: "
              f"{ours['decisions_per_s'] / theirs['decisions_per_s']:.1f}x; "
              f"events decided differently: {differ} of {len(ours['decided'])}")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
