// The operator console. Agent-supplied text (actors, payloads, reasons) is
// only ever set as textContent, never parsed as HTML.
import { statement, loginStatement, parseKeyFile, pkcs8, ticketKey, capsText } from "/statement.js";

const $ = (id) => document.getElementById(id);
let me = null;
let signingKey = null;
// Which sign-in the page is on: a request that started under an earlier one
// and comes back 401 (its session ended since) must not sign out the new one.
let epoch = 0;

// Signs out when a request of this sign-in (`started`) was refused 401.
function signedOutIf(started, e) {
  if (e.status === 401 && started === epoch) {
    logout();
    return true;
  }
  return e.status === 401;
}
let shown = [];

// The signing key lives in IndexedDB as a non-extractable CryptoKey: the
// page can sign with it until sign-out, nothing can read it out.
function database() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("capfence-console", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

async function keyStore(mode, work) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction("keys", mode);
    const request = work(tx.objectStore("keys"));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error);
  });
}

const saveKey = (record) => keyStore("readwrite", (s) => s.put(record, "operator"));
const loadKey = () => keyStore("readonly", (s) => s.get("operator"));
const clearKey = () => keyStore("readwrite", (s) => s.delete("operator"));

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function base64(buffer) {
  return btoa(String.fromCharCode(...new Uint8Array(buffer)));
}

async function sign(bytes) {
  return base64(await crypto.subtle.sign({ name: "Ed25519" }, signingKey, bytes));
}

// Which view shows: the sign-in form, or (signed in) the queue or one
// ticket's page, by the address's fragment (`#ticket/T-3`).
function show(view) {
  const signedIn = view !== "login";
  const page = signedIn && /^#ticket\//.test(location.hash);
  $("login").hidden = signedIn;
  $("queue").hidden = !signedIn || page;
  $("ticket-page").hidden = !page;
  $("logout").hidden = !signedIn;
  $("grant-form").hidden = !(signedIn && me?.can_sign);
  $("who").textContent = signedIn && me ? `signed in as ${me.name}` : "";
  const readOnly = signedIn && me && me.read_only_because;
  $("read-only").hidden = !readOnly;
  $("read-only").textContent = readOnly ? `Read-only: ${me.read_only_because}.` : "";
}

async function login() {
  epoch += 1;
  $("login-error").textContent = "";
  try {
    const file = $("login-key").files[0];
    if (!file) throw new Error("pick your key file first");
    const parsed = parseKeyFile(await file.text());
    const key = await crypto.subtle.importKey(
      "pkcs8", pkcs8(parsed.seed), { name: "Ed25519" }, false, ["sign"]);
    parsed.seed.fill(0);
    signingKey = key;
    const { challenge } = await api("POST", "/api/challenge");
    const signature = await sign(loginStatement(challenge, location.origin));
    await api("POST", "/api/login", { challenge, public_key: parsed.publicKey, signature });
    await saveKey({ key, publicKey: parsed.publicKey });
    me = await api("GET", "/api/me");
    show("queue");
    listen();
    await refresh();
  } catch (e) {
    signingKey = null;
    $("login-error").textContent = `Not signed in: ${e.message}`;
  }
}

async function logout() {
  epoch += 1;
  if (events) {
    events.close();
    events = null;
  }
  await api("POST", "/api/logout").catch(() => {});
  await clearKey().catch(() => {});
  signingKey = null;
  me = null;
  shown = [];
  rendered = "";
  for (const id of ["tickets", "grants", "decisions"]) $(id).replaceChildren();
  $("chain").textContent = "";
  show("login");
}

function timeLeft(iso) {
  const ms = Date.parse(iso) - Date.now();
  if (ms <= 0) return "expired";
  const minutes = Math.floor(ms / 60000);
  const seconds = Math.floor((ms % 60000) / 1000);
  return `${minutes}m ${seconds}s left`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

// The expiry cell: time left while pending (ticked every second in place,
// so rows are not rebuilt under the operator's pointer).
function expiry(t) {
  const td = cell(t.status === "pending" ? timeLeft(t.expires_at) : t.expires_at);
  if (t.status === "pending") {
    td.classList.add("time-left");
    td.dataset.expiresAt = t.expires_at;
  }
  return td;
}

// Expiry is not a chain event: when a countdown runs out, the list is read
// again so the ticket shows as expired.
function tick() {
  let ran_out = false;
  for (const td of document.querySelectorAll("td.time-left")) {
    td.textContent = timeLeft(td.dataset.expiresAt);
    ran_out ||= td.textContent === "expired";
  }
  if (ran_out && me) refresh();
}

// Rows are rebuilt only when what they show changed: a refresh that reads
// the same list (the event stream's first message after sign-in, say) must
// not replace the buttons under the operator's pointer mid-click.
let rendered = "";
function render() {
  const key = JSON.stringify([me?.name, me?.can_sign, shown]);
  if (key === rendered) return;
  rendered = key;
  const rows = shown.map((t) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "ticket-row";
    tr.dataset.ticketId = t.id;
    const status = cell(t.status, `status-${t.status}`);
    status.dataset.testid = "ticket-status";
    const id = cell("");
    const link = document.createElement("a");
    link.href = `#ticket/${encodeURIComponent(t.id)}`;
    link.textContent = t.id;
    link.dataset.testid = "ticket-link";
    id.append(link);
    const opened = document.createElement("div");
    opened.className = "opened";
    opened.dataset.testid = "ticket-opened";
    opened.textContent = `record ${t.opened_seq}, ${t.opened_hash.slice(0, 16)}…`;
    opened.title = t.opened_hash;
    id.append(opened);
    tr.append(
      id, status, cell(t.actor), cell(t.capability), cell(t.environment), cell(t.risk),
      cell(t.payload_text, "payload"),
      cell(`${t.rule ?? ""}: ${t.reason}`),
      cell(`${t.approvals.length} of ${t.needed}${t.approvals.length ? ` (${t.approvals.join(", ")})` : ""}`),
      expiry(t));
    const actions = document.createElement("td");
    actions.append(...buttons(t, ""));
    tr.append(actions);
    return tr;
  });
  $("tickets").replaceChildren(...rows);
}

// Approve and reject, for an approver who has not signed this ticket yet.
function buttons(t, prefix) {
  if (!(me?.can_sign && t.status === "pending" && !t.approvals.includes(me.name))) return [];
  return ["approve", "reject"].map((action) => {
    const button = document.createElement("button");
    button.textContent = action === "approve" ? "Approve" : "Reject";
    button.dataset.testid = `${prefix}${action}`;
    button.addEventListener("click", () => act(t, action));
    return button;
  });
}

// One ticket's page: every field, the record that opened it (as the
// server serialized it, numbers exact) and its hash.
async function showTicket() {
  const started = epoch;
  const id = decodeURIComponent(location.hash.slice("#ticket/".length));
  $("page-title").textContent = `Ticket ${id}`;
  $("page-error").textContent = "";
  try {
    const { ticket: t } = await api("GET", `/api/tickets/${encodeURIComponent(id)}`);
    if (started !== epoch) return;
    const rows = [
      ["Status", t.status, "page-status"], ["Actor", t.actor], ["Capability", t.capability],
      ["Environment", t.environment], ["Risk", t.risk], ["Payload", t.payload_text, "page-payload"],
      ["Rule", t.rule ?? "no rule"], ["Reason", t.reason],
      ["Signed", `${t.approvals.length} of ${t.needed}${t.approvals.length ? ` (${t.approvals.join(", ")})` : ""}`],
      ["Opened", t.opened_at], ["Expires", t.expires_at], ["Policy", t.policy],
      ["Opening record", `${t.opened_seq}`], ["Its hash", t.opened_hash, "page-hash"]];
    $("page-fields").replaceChildren(...rows.flatMap(([name, value, testid]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value ?? "";
      if (testid) dd.dataset.testid = testid;
      return [dt, dd];
    }));
    $("page-record").textContent = t.opened_record_text;
    $("page-actions").replaceChildren(...buttons(t, "page-"));
  } catch (e) {
    if (signedOutIf(started, e)) return;
    $("page-fields").replaceChildren();
    $("page-record").textContent = "";
    $("page-actions").replaceChildren();
    $("page-error").textContent = `${id}: ${e.message}`;
  }
}

function renderGrants(grants) {
  $("grants").replaceChildren(...grants.map((g) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "grant-row";
    tr.dataset.grantId = g.id;
    tr.append(cell(g.id), cell(g.state), cell(g.actor), cell(g.capability), cell(g.environment),
      cell(g.caps), cell(g.uses_left ?? "no cap"), cell(g.expires_at), cell(g.granted_by));
    const actions = document.createElement("td");
    if (me?.can_sign && g.state === "active" && g.signed) {
      const button = document.createElement("button");
      button.textContent = "Revoke";
      button.dataset.testid = "revoke";
      button.addEventListener("click", () => revoke(g));
      actions.append(button);
    }
    tr.append(actions);
    return tr;
  }));
}

function renderDecisions(decisions) {
  $("decisions").replaceChildren(...decisions.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "decision-row";
    tr.append(cell(d.seq), cell(d.time), cell(d.decision, `status-${d.decision}`), cell(d.actor),
      cell(d.capability), cell(d.payload_text, "payload"),
      cell(`${d.rule ?? "no rule"}: ${d.reason}`));
    return tr;
  }));
}

async function refreshOthers() {
  const started = epoch;
  const filters = new URLSearchParams({
    decision: $("filter-decision").value,
    actor: $("filter-actor").value,
    capability: $("filter-capability").value,
  });
  const [{ grants }, { decisions }] = await Promise.all([
    api("GET", "/api/grants"), api("GET", `/api/decisions?${filters}`)]);
  if (started !== epoch) return;
  renderGrants(grants);
  renderDecisions(decisions);
}

// Verifying reads the whole chain: on request, not on every change.
async function verifyChain() {
  $("chain").textContent = "verifying…";
  const chain = await api("GET", "/api/chain");
  $("chain").textContent = chain.verified
    ? `verified: ${chain.records} records, head ${chain.head}; Merkle tree of ${chain.tree_size}, root ${chain.tree_root}`
    : `VERIFY FAILED: ${chain.fault}`;
  const c = chain.checkpoint;
  $("checkpoint").textContent = !c
    ? "no checkpoint directory (capfence serve --checkpoint-dir DIR)"
    : !c.file
      ? `checkpoints in ${c.dir}: ${c.fault}`
      : c.consistent
        ? `last checkpoint ${c.file}: ${c.size} records, root ${c.root}, signed by ${c.signed_by.join(", ")}; the ledger is consistent with it`
        : `CHECKPOINT FAILED ${c.file}: ${c.fault}`;
}

async function refresh() {
  if (!$("ticket-page").hidden) return showTicket();
  const started = epoch;
  try {
    const { tickets } = await api("GET", "/api/tickets");
    // Signed out (or in again) meanwhile: this answer is not the page's.
    if (started !== epoch) return;
    shown = tickets;
    $("queue-error").textContent = "";
    render();
    await refreshOthers();
  } catch (e) {
    if (signedOutIf(started, e)) return;
    $("queue-error").textContent = e.message;
  }
}

// Signs an approve or reject. The server says which statement the ledger
// will check; the page signs it only if it names what the page shows (the
// ticket, the record that opened it, the quorum, the expiry, the action and
// this operator), and builds the bytes itself.
async function act(ticket, action) {
  $("queue-error").textContent = "";
  try {
    const { kind, parts } = await api(
      "GET", `/api/tickets/${encodeURIComponent(ticket.id)}/statement?action=${action}`);
    const part = (name) => (parts.find(([n]) => n === name) || [])[1];
    // The event key the page computes from the fields it shows: a server
    // that showed one payload and asked for a signature over another's key
    // gets no signature.
    const key = await ticketKey([ticket.actor, ticket.capability, ticket.environment,
      ticket.risk, ticket.payload_text, ticket.rule, ticket.policy]);
    const matches = kind === "ticket" && part("action") === action && part("ticket") === ticket.id
      && part("event_key") === key && part("policy") === ticket.policy
      && part("opened") === ticket.opened_hash && Number(part("quorum")) === ticket.needed
      && part("expires_at") === ticket.expires_at && part("signer") === me.name;
    if (!matches) throw new Error("the statement to sign does not match the ticket shown; nothing signed");
    const signature = await sign(statement(kind, parts));
    await api("POST", `/api/tickets/${encodeURIComponent(ticket.id)}/${action}`, { signature });
  } catch (e) {
    $("queue-error").textContent = `${ticket.id}: ${e.message}`;
  }
  await refresh();
}

// Revokes a signed grant: the statement names the grant and the record that
// granted it; the page signs it only if it names the grant shown and this
// operator.
async function revoke(grant) {
  $("queue-error").textContent = "";
  try {
    const { kind, parts } = await api("GET", `/api/grants/${encodeURIComponent(grant.id)}/statement`);
    const part = (name) => (parts.find(([n]) => n === name) || [])[1];
    if (kind !== "grant" || part("action") !== "revoke" || part("grant") !== grant.id
      || part("signer") !== me.name) {
      throw new Error("the statement to sign does not match the grant shown; nothing signed");
    }
    const signature = await sign(statement(kind, parts));
    await api("POST", `/api/grants/${encodeURIComponent(grant.id)}/revoke`, { signature });
  } catch (e) {
    $("queue-error").textContent = `${grant.id}: ${e.message}`;
  }
  await refresh();
}

// Grants from the page: the server says which statement the ledger will
// check (the next grant id, the expiry it set); the page signs it only if
// it names what the form asks for and this operator. If another grant takes
// the id first, the ledger refuses the signature: read the statement again
// and sign anew, once.
async function grant(event) {
  event.preventDefault();
  $("queue-error").textContent = "";
  try {
    const minutes = Number($("grant-minutes").value);
    if (!Number.isInteger(minutes) || minutes < 1) throw new Error("minutes: a whole number from 1");
    const uses = $("grant-uses").value === "" ? null : Number($("grant-uses").value);
    const ask = {
      actor: $("grant-actor").value.trim(),
      capability: $("grant-capability").value.trim().toLowerCase(),
      environment: $("grant-environment").value.trim().toLowerCase(),
      duration_seconds: minutes * 60,
      caps: capsText($("grant-caps").value),
      uses,
    };
    let made = null;
    for (let attempt = 0; attempt < 2 && !made; attempt += 1) {
      const asked = Date.now();
      const { kind, parts } = await api("POST", "/api/grants/statement", ask);
      const part = (name) => (parts.find(([n]) => n === name) || [])[1];
      const expires = Date.parse(part("expires_at"));
      const lifetime = expires - asked;
      const matches = kind === "grant" && part("action") === "grant" && part("actor") === ask.actor
        && part("capability") === ask.capability && part("environment") === ask.environment
        && part("caps") === ask.caps && part("uses") === (uses === null ? "unlimited" : String(uses))
        && part("signer") === me.name
        && Math.abs(lifetime - ask.duration_seconds * 1000) < 120000;
      if (!matches) throw new Error("the statement to sign does not match the grant asked for; nothing signed");
      const signature = await sign(statement(kind, parts));
      try {
        made = await api("POST", "/api/grants", { ...ask, expires_at: part("expires_at"), signature });
      } catch (e) {
        if (attempt === 1 || e.status !== 409 || !/statement/.test(e.message)) throw e;
      }
    }
    $("queue-error").textContent = "";
    $("grant-form").reset();
  } catch (e) {
    $("queue-error").textContent = `grant: ${e.message}`;
  }
  await refresh();
}

let events = null;
function listen() {
  if (events) events.close();
  events = new EventSource("/api/events");
  events.addEventListener("ledger", () => refresh());
}

async function start() {
  $("login-submit").addEventListener("click", login);
  $("logout").addEventListener("click", logout);
  $("grant-form").addEventListener("submit", grant);
  window.addEventListener("hashchange", () => {
    if (!me) return;
    show("queue");
    rendered = "";
    refresh();
  });
  $("verify").addEventListener("click", () => verifyChain().catch((e) => {
    $("chain").textContent = e.message;
  }));
  for (const id of ["filter-decision", "filter-actor", "filter-capability"]) {
    $(id).addEventListener("change", () => refreshOthers().catch(() => {}));
  }
  setInterval(tick, 1000);
  try {
    const stored = await loadKey();
    me = await api("GET", "/api/me");
    if (!stored || stored.publicKey !== me.public_key) throw new Error("sign in again");
    signingKey = stored.key;
    show("queue");
    listen();
    await refresh();
  } catch {
    me = null;
    show("login");
  }
}

start();
