"""`capfence serve`'s HTTP decision API from outside: real answers hold to
the OpenAPI document the server serves, and docs/http.md's curl examples run
as written against a live server."""

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
CAPFENCE = os.environ.get("CAPFENCE_BIN", "")


@pytest.fixture
def server(tmp_path):
    assert CAPFENCE and Path(CAPFENCE).exists(), "set CAPFENCE_BIN to the capfence binary"
    state = tmp_path / "state"
    made = subprocess.run(
        [CAPFENCE, "--state", str(state), "agents", "new", "--name", "treasury-agent"],
        capture_output=True, text=True, check=True,
    )
    token, line = made.stdout.splitlines()
    agents = tmp_path / "agents.txt"
    agents.write_text(line + "\n")
    agents.chmod(0o600)
    proc = subprocess.Popen(
        [CAPFENCE, "--state", str(state), "serve", "--policy", str(ROOT / "policies/fintech_policy.yaml"),
         "--listen", "127.0.0.1:0", "--agents", str(agents)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first = proc.stdout.readline().strip()
    assert first.startswith("listening on http://"), first + proc.stderr.read()
    try:
        yield first.removeprefix("listening on "), token
    finally:
        proc.kill()
        proc.wait()


def post(url, token, body):
    request = urllib.request.Request(
        url + "/v1/decide", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def test_answers_hold_to_the_served_openapi_document(server):
    url, token = server
    with urllib.request.urlopen(url + "/v1/openapi.json", timeout=30) as answer:
        doc = json.loads(answer.read())
    verdict = doc["components"]["schemas"]["Verdict"]
    validator = jsonschema.Draft202012Validator(verdict)
    pay = {"capability": "payments.transfer", "environment": "production",
           "payload": {"amount": 2500, "destination": "strategic-partner-456"}}
    single = post(url, token, pay)
    validator.validate(single)
    assert single["decision"] == "require_approval"
    batch = post(url, token, [pay, {"capability": 7}, dict(pay, actor="someone-else")])
    for v in batch:
        validator.validate(v)
    assert [v["decision"] for v in batch] == ["require_approval", "deny", "deny"]
    # The schema is a real check: a verdict without its seq fails it.
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({k: v for k, v in single.items() if k != "seq"})


def test_the_documented_curl_examples_run(server):
    url, token = server
    doc = (ROOT / "docs/http.md").read_text()
    blocks = re.findall(r"```sh http-example\n(.*?)```", doc, re.S)
    assert len(blocks) == 3
    for block in blocks:
        commands = "\n".join(l for l in block.splitlines() if not l.startswith("#"))
        expected = [l[2:] for l in block.splitlines() if l.startswith("# ")]
        out = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", commands],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "CAPFENCE_URL": url, "TOKEN": token},
        )
        assert out.returncode == 0, out.stderr
        for line in expected:
            # `…` in a documented answer stands for what varies.
            pattern = ".*".join(re.escape(part) for part in line.split("…"))
            assert re.search(pattern, out.stdout), f"{line!r} not in {out.stdout!r}"
