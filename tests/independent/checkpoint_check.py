"""An independent check of CapFence's checkpoints and proofs, written from
RFC 6962 / RFC 9162 and the C2SP signed-note format with hashlib and the
`cryptography` package's Ed25519.

Usage: python checkpoint_check.py CASE.json
CASE.json: {"checkpoint": TEXT, "keys": {NAME: "ed25519:BASE64"},
            "proofs": [prove output...], "chain_hashes": [hex, ...]}
Prints "ok: ..." and exits 0, or names the first mismatch and exits 1.
"""
import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01", mth(leaves[:k]), mth(leaves[k:]))


def check_inclusion(index, size, leaf, proof, root):
    # RFC 9162 section 2.1.3.2, step by step.
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = sha(b"\x01", p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha(b"\x01", r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def parse_note(text):
    body, sigs = text.split("\n\n", 1)
    origin, size, root = body.split("\n")
    lines = [l for l in sigs.split("\n") if l]
    return body + "\n", origin, int(size), base64.b64decode(root), lines


def fail(why):
    print("FAILED: " + why)
    sys.exit(1)


def main():
    case = json.load(open(sys.argv[1]))
    body, origin, size, root, lines = parse_note(case["checkpoint"])
    signed_by = []
    for line in lines:
        if not line.startswith("\u2014 "):
            fail("signature line without an em dash: " + line)
        name, blob = line[2:].split(" ")
        blob = base64.b64decode(blob)
        public = case["keys"].get(name)
        if public is None:
            continue
        raw = base64.b64decode(public[len("ed25519:"):])
        key_id = sha(name.encode(), b"\n", b"\x01", raw)[:4]
        if blob[:4] != key_id:
            fail(f"{name}: key id {blob[:4].hex()} is not {key_id.hex()}")
        Ed25519PublicKey.from_public_bytes(raw).verify(blob[4:], body.encode())
        signed_by.append(name)
    if not signed_by:
        fail("no listed key signed the checkpoint")
    leaves = [sha(b"\x00", bytes.fromhex(h)) for h in case["chain_hashes"]]
    if mth(leaves[:size]) != root:
        fail(f"the first {size} chain hashes do not give the checkpoint's root")
    if origin != "capfence.ledger/" + case["chain_hashes"][0][:32]:
        fail("the origin does not name the ledger's first record")
    for p in case["proofs"]:
        i = p["leaf_index"]
        leaf = bytes.fromhex(p["leaf_hash"])
        if leaf != leaves[i]:
            fail(f"record {p['seq']}: leaf hash differs from the chain hash's")
        if p["tree_size"] != size or bytes.fromhex(p["root"]) != root:
            fail(f"record {p['seq']}: proof is not against the checkpoint")
        proof = [bytes.fromhex(h) for h in p["proof"]]
        if not check_inclusion(i, size, leaf, proof, root):
            fail(f"record {p['seq']}: inclusion proof does not verify")
    print(f"ok: checkpoint of {size} signed by {', '.join(signed_by)}; "
          f"{len(case['proofs'])} proofs verified")


main()
