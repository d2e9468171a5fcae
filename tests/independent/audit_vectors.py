"""An independent check of docs/audit-format.md: re-chain the documented
canonical blocks with hashlib and check every length prefix.

Usage: python3 audit_vectors.py docs/audit-format.md
Prints "ok: N records" and exits 0, or names the first mismatch and exits 1.
"""
import hashlib
import re
import sys

FIELDS = ["seq", "time", "actor", "capability", "environment", "risk", "payload",
          "decision", "rule", "reason", "approval_id", "policy_digest"]


def blocks(doc):
    found = {}
    for match in re.finditer(r"```text (vector-\d+-\w+)\n(.*?)```", doc, re.S):
        found[match.group(1)] = match.group(2)
    return found


def check_prefixes(n, canonical):
    lines = canonical.split("\n")
    if lines[0] != "capfence-audit-v1" or lines[-1] != "":
        return f"record {n}: bad header or missing final newline"
    body = canonical[len("capfence-audit-v1\n"):].encode()
    at = 0
    for name in FIELDS:
        prefix = name.encode() + b"="
        if not body.startswith(prefix, at):
            return f"record {n}: expected field {name}"
        at += len(prefix)
        if name == "seq":
            end = body.index(b"\n", at)
            if not body[at:end].isdigit():
                return f"record {n}: seq is not a number"
            at = end + 1
            continue
        if body[at:at + 2] == b"~\n":
            at += 2
            continue
        colon = body.index(b":", at)
        length = int(body[at:colon])
        value_end = colon + 1 + length
        if body[value_end:value_end + 1] != b"\n":
            return f"record {n}: {name} is not {length} bytes long"
        at = value_end + 1
    if at != len(body):
        return f"record {n}: trailing bytes"
    return None


def main():
    doc = open(sys.argv[1], encoding="utf-8").read()
    found = blocks(doc)
    prev = "0" * 64
    n = 0
    while f"vector-{n + 1}-canonical" in found:
        n += 1
        canonical = found[f"vector-{n}-canonical"]
        fault = check_prefixes(n, canonical)
        if fault:
            print(fault)
            return 1
        digest = hashlib.sha256((prev + canonical).encode()).hexdigest()
        expected = found[f"vector-{n}-hash"].strip()
        if digest != expected:
            print(f"record {n}: hash {digest}, documented {expected}")
            return 1
        prev = digest
    if n == 0:
        print("no vectors found")
        return 1
    print(f"ok: {n} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
