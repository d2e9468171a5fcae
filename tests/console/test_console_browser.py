"""The operator console in a real browser: Debian's Chromium driven by
Selenium through Debian's chromedriver (nothing downloaded).

An approver signs in with their own key file (imported by WebCrypto in the
page), watches a held 2,500 transfer appear without reloading, approves it,
and the agent's retry goes through once; a two-person ticket needs two
sign-ins; a key the policy does not list cannot sign in; a page without a
session shows no payment data.

Needs CAPFENCE_BIN, /usr/bin/chromium and /usr/bin/chromedriver (`.ci/run`
installs them; `runtime/tests/it/pytest.rs` runs this suite).
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CAPFENCE = os.environ.get("CAPFENCE_BIN", "")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOT = os.environ.get("CAPFENCE_CONSOLE_SCREENSHOT")


def run(*args, stdin=None):
    out = subprocess.run([CAPFENCE, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    assert CAPFENCE and Path(CAPFENCE).exists(), "set CAPFENCE_BIN to the capfence binary"
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "install Debian's chromium and chromium-driver"
    root = tmp_path_factory.mktemp("console")
    state = root / "state"
    keys = {}
    for name in ("ops1", "ops2", "mallory"):
        path = root / f"{name}.key"
        line = run("--state", str(state), "keys", "new", "--name", name, "--out", str(path))
        keys[name] = (path, line.strip().split(": ", 1)[1])
    policy = root / "policy.yaml"
    policy.write_text(
        "approvers:\n"
        f"  ops1: {keys['ops1'][1]}\n"
        f"  ops2: {keys['ops2'][1]}\n"
        "require_approval:\n"
        "  - id: two-person\n"
        "    capability: payments.transfer\n"
        "    amount_gt: 10000\n"
        "    approvals: 2\n"
        "  - id: one-person\n"
        "    capability: payments.transfer\n"
        "    amount_gt: 500\n"
        "allow:\n"
        "  - capability: payments.transfer\n"
        "    amount_lte: 500\n"
    )
    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    server = subprocess.Popen(
        [CAPFENCE, "--state", str(state), "serve", "--policy", str(policy), "--listen", "127.0.0.1:0",
         "--checkpoint-dir", str(checkpoints)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = server.stdout.readline().strip()
    assert line.startswith("listening on http://"), line + server.stderr.read()
    url = line.removeprefix("listening on ")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,700",
                 f"--user-data-dir={root / 'chromium'}"):
        options.add_argument(flag)
    os.environ["SE_OFFLINE"] = "true"
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield {"url": url, "state": state, "policy": policy, "keys": keys, "browser": browser,
               "checkpoints": checkpoints}
    finally:
        browser.quit()
        server.kill()
        server.wait()


def decide(setup, amount):
    event = {
        "actor": "treasury-agent", "resource": "payments", "action": "transfer",
        "environment": "production", "risk": "high",
        "payload": {"amount": amount, "destination": "strategic-partner-456"},
    }
    out = run("--state", str(setup["state"]), "decide", "--policy", str(setup["policy"]),
              stdin=json.dumps(event) + "\n")
    return json.loads(out)


def wait(browser, condition, what, seconds=20):
    try:
        return WebDriverWait(
            browser, seconds, ignored_exceptions=(StaleElementReferenceException,)
        ).until(lambda _: condition())
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what}; page: {browser.find_element(By.TAG_NAME, 'body').text}")


def by_testid(browser, name):
    return browser.find_elements(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def row(browser, ticket):
    rows = browser.find_elements(By.CSS_SELECTOR, f'[data-testid="ticket-row"][data-ticket-id="{ticket}"]')
    return rows[0] if rows else None


def status(browser, ticket):
    r = row(browser, ticket)
    return r.find_element(By.CSS_SELECTOR, '[data-testid="ticket-status"]').text if r else None


def click(browser, ticket, action):
    # The list is rebuilt when the chain grows: find the button afresh.
    for _ in range(20):
        try:
            row(browser, ticket).find_element(By.CSS_SELECTOR, f'[data-testid="{action}"]').click()
            return
        except (StaleElementReferenceException, AttributeError):
            time.sleep(0.1)
    pytest.fail(f"could not {action} {ticket}")


def sign_in(setup, name):
    browser = setup["browser"]
    wait(browser, lambda: by_testid(browser, "login-key") and by_testid(browser, "login-key")[0].is_displayed(),
         "the sign-in form")
    by_testid(browser, "login-key")[0].send_keys(str(setup["keys"][name][0]))
    by_testid(browser, "login-submit")[0].click()


def sign_out(setup):
    browser = setup["browser"]
    by_testid(browser, "logout")[0].click()
    wait(browser, lambda: by_testid(browser, "login-key")[0].is_displayed(), "signed out")


def test_the_console_end_to_end(setup):
    browser = setup["browser"]
    waiting = decide(setup, "700")
    assert waiting["decision"] == "require_approval"
    second = waiting["approval_id"]

    # No session: the page shows the sign-in form and no payment data.
    browser.get(setup["url"])
    wait(browser, lambda: by_testid(browser, "login-key")[0].is_displayed(), "the sign-in form")
    assert "700" not in browser.page_source and "strategic-partner" not in browser.page_source
    assert not row(browser, second)

    # A key the policy does not list cannot sign in.
    sign_in(setup, "mallory")
    wait(browser, lambda: "Not signed in" in browser.find_element(By.ID, "login-error").text,
         "the refusal")
    assert "not among the policy's approvers" in browser.find_element(By.ID, "login-error").text
    assert not row(browser, second)

    # ops1 signs in and sees the held transfer, exact, with the record that
    # opened it.
    sign_in(setup, "ops1")
    wait(browser, lambda: row(browser, second), "the held ticket")
    wait(browser, lambda: "700" in row(browser, second).text, "the amount, exact")
    wait(browser, lambda: status(browser, second) == "pending", "pending")
    opened = row(browser, second).find_element(By.CSS_SELECTOR, '[data-testid="ticket-opened"]')
    assert opened.text.startswith("record 2, ") and len(opened.get_attribute("title")) == 64
    opened_hash = opened.get_attribute("title")

    # The agent's 2,500 transfer is held while ops1 watches: it appears
    # without reloading.
    held = decide(setup, "2500")
    assert held["decision"] == "require_approval"
    first = held["approval_id"]
    wait(browser, lambda: row(browser, first), "the held 2,500, live")
    wait(browser, lambda: "2500" in row(browser, first).text, "its amount, exact")
    if SHOT:
        browser.save_screenshot(SHOT)

    # Approve the first in the page: signed there, checked by the ledger.
    click(browser, first, "approve")
    wait(browser, lambda: status(browser, first) == "approved", "the approval")
    retry = decide(setup, "2500")
    assert retry["authorized"] and retry["approval_id"] == first
    assert not decide(setup, "2500")["authorized"], "the approval is used once"
    wait(browser, lambda: status(browser, first) == "used", "the ticket used")

    # A two-person ticket: one signature leaves it pending; a second
    # operator, signed in with their own key, completes it.
    big = decide(setup, "20000")["approval_id"]
    wait(browser, lambda: row(browser, big), "the two-person ticket")
    click(browser, big, "approve")
    wait(browser, lambda: "1 of 2" in row(browser, big).text, "one of two signatures")
    wait(browser, lambda: status(browser, big) == "pending"
         and not row(browser, big).find_elements(By.CSS_SELECTOR, '[data-testid="approve"]'),
         "still pending, and ops1 cannot sign twice")
    assert not decide(setup, "20000")["authorized"]
    sign_out(setup)
    assert not row(browser, big), "signed out: no payment data on the page"
    sign_in(setup, "ops2")
    wait(browser, lambda: row(browser, big), "the queue for ops2")
    click(browser, big, "approve")
    wait(browser, lambda: status(browser, big) == "approved", "the second signature")
    assert decide(setup, "20000")["authorized"]

    # Reject the 700 hold: the agent's retry is denied.
    click(browser, second, "reject")
    wait(browser, lambda: status(browser, second) == "rejected", "the rejection")
    assert decide(setup, "700")["decision"] == "deny"

    # The decisions list, filtered to denials, shows the rejected retry; the
    # chain verifies from the page.
    browser.find_element(By.ID, "filter-decision").send_keys("deny")
    wait(browser, lambda: by_testid(browser, "decision-row")
         and all("deny" in r.text for r in by_testid(browser, "decision-row")), "the denials")
    # A checkpoint signed by ops1 (kept apart from the ledger): the chain
    # section shows it and that the ledger is consistent with it.
    run("--state", str(setup["state"]), "audit", "checkpoint", "--key", str(setup["keys"]["ops1"][0]),
        "--out", str(setup["checkpoints"] / "checkpoint-000000000001"))
    by_testid(browser, "verify")[0].click()
    wait(browser, lambda: by_testid(browser, "chain")[0].text.startswith("verified:"), "verified")
    wait(browser, lambda: "consistent with it" in by_testid(browser, "checkpoint")[0].text
         and "signed by ops1" in by_testid(browser, "checkpoint")[0].text, "the checkpoint held")

    # The 700 ticket's own page: its fields and the record that opened it,
    # with that record's hash.
    row(browser, second).find_element(By.CSS_SELECTOR, '[data-testid="ticket-link"]').click()
    wait(browser, lambda: by_testid(browser, "page-status")
         and by_testid(browser, "page-status")[0].text == "rejected", "the ticket's page")
    assert by_testid(browser, "page-hash")[0].text == opened_hash
    assert f'"hash": "{opened_hash}"' in by_testid(browser, "page-record")[0].text
    assert '"700"' in by_testid(browser, "page-payload")[0].text \
        or ':700' in by_testid(browser, "page-payload")[0].text
    by_testid(browser, "back")[0].click()
    wait(browser, lambda: row(browser, second) and row(browser, second).is_displayed(), "the queue again")

    # A grant made in the page, signed there with ops2's key: the agent's
    # held 2,500 passes once within its cap.
    for field, value in (("grant-actor", "treasury-agent"), ("grant-capability", "payments.transfer"),
                         ("grant-environment", "production"), ("grant-caps", "amount=3000.00"),
                         ("grant-uses", "1")):
        by_testid(browser, field)[0].send_keys(value)
    by_testid(browser, "grant-submit")[0].click()
    grant_row = lambda gid: next((r for r in by_testid(browser, "grant-row")
                                  if r.get_attribute("data-grant-id") == gid), None)
    wait(browser, lambda: grant_row("G-1") and "active" in grant_row("G-1").text
         and "amount=3000" in grant_row("G-1").text, "the grant, active")
    assert decide(setup, "2500")["authorized"]
    assert not decide(setup, "2500")["authorized"], "one use"
    wait(browser, lambda: "used up" in grant_row("G-1").text, "the grant used up")

    # A second grant, then revoked in the page: the agent is held again.
    for field, value in (("grant-actor", "treasury-agent"), ("grant-capability", "payments.transfer"),
                         ("grant-environment", "production")):
        by_testid(browser, field)[0].send_keys(value)
    by_testid(browser, "grant-submit")[0].click()
    wait(browser, lambda: grant_row("G-2") and "active" in grant_row("G-2").text, "the second grant")
    assert decide(setup, "900")["authorized"]
    for _ in range(20):
        try:
            grant_row("G-2").find_element(By.CSS_SELECTOR, '[data-testid="revoke"]').click()
            break
        except (StaleElementReferenceException, AttributeError):
            time.sleep(0.1)
    wait(browser, lambda: "revoked" in grant_row("G-2").text, "the revocation")
    assert not decide(setup, "900")["authorized"]

    verified = subprocess.run([CAPFENCE, "--state", str(setup["state"]), "verify"],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
