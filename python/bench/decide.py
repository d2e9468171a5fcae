"""One side of the comparison: decide every event of a JSON-lines file with
the `capfence` package importable here (this package, or upstream
capfence==0.9.0 in another virtual environment), the audit trail in a file,
in `--threads` threads sharing one runtime, and print one JSON line: which
package, the seconds, decisions/s, and each event's decision."""

import argparse
import collections
import json
import tempfile
import threading
import time
from pathlib import Path

import capfence


def runtime_for(policy: str, state: Path):
    if hasattr(capfence, "CapabilitySystem"):  # upstream 0.9.0
        caps = capfence.CapabilitySystem()
        caps.load_policy(policy)
        return "upstream " + getattr(capfence, "__version__", "?"), capfence.ActionRuntime(
            capability_system=caps,
            approval_engine=capfence.ApprovalEngine(db_path=state / "approvals.db"),
            audit_trail=capfence.AuditLogger(db_path=state / "audit.db"),
        )
    return "capfence (Rust core)", capfence.ActionRuntime.from_policy(
        policy, state_dir=str(state)
    )


def event_for(record: dict):
    return capfence.ActionEvent.create(
        actor=record["actor"],
        action=record["action"],
        resource=record["resource"],
        environment=record["environment"],
        risk=record["risk"],
        payload=record["payload"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    records = [json.loads(line) for line in open(args.events) if line.strip()]
    with tempfile.TemporaryDirectory() as state:
        name, runtime = runtime_for(args.policy, Path(state))
        events = [event_for(r) for r in records]
        decided = [""] * len(events)

        def work(first: int) -> None:
            for i in range(first, len(events), args.threads):
                decided[i] = str(runtime.execute(events[i]).decision)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
    print(json.dumps({
        "package": name,
        "threads": args.threads,
        "seconds": seconds,
        "decisions_per_s": len(events) / seconds,
        "counts": dict(sorted(collections.Counter(decided).items())),
        "decided": decided,
    }))


if __name__ == "__main__":
    main()
