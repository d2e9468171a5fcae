// The operator console. Agent-supplied text (actors, payloads, reasons) is
// only ever set as textContent, never parsed as HTML.
import { statement, loginStatement, parseKeyFile, pkcs8 } from "/statement.js";

const $ = (id) => document.getElementById(id);
let me = null;
let signingKey = null;
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

function show(view) {
  $("login").hidden = view !== "login";
  $("queue").hidden = view !== "queue";
  $("logout").hidden = view !== "queue";
  $("who").textContent = view === "queue" && me ? `signed in as ${me.name}` : "";
  const readOnly = view === "queue" && me && me.read_only_because;
  $("read-only").hidden = !readOnly;
  $("read-only").textContent = readOnly ? `Read-only: ${me.read_only_because}.` : "";
}

async function login() {
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
    const id = cell(t.id);
    const opened = document.createElement("div");
    opened.className = "opened";
    opened.dataset.testid = "ticket-opened";
    opened.textContent = `record ${t.opened_seq}, ${t.opened_hash.slice(0, 16)}…`;
    opened.title = t.opened_hash;
    id.append(opened);
    tr.append(
      id, status, cell(t.actor), cell(t.capability), cell(t.environment), cell(t.risk),
      cell(JSON.stringify(t.payload, null, 1), "payload"),
      cell(`${t.rule ?? ""}: ${t.reason}`),
      cell(`${t.approvals.length} of ${t.needed}${t.approvals.length ? ` (${t.approvals.join(", ")})` : ""}`),
      expiry(t));
    const actions = document.createElement("td");
    if (me?.can_sign && t.status === "pending" && !t.approvals.includes(me.name)) {
      for (const action of ["approve", "reject"]) {
        const button = document.createElement("button");
        button.textContent = action === "approve" ? "Approve" : "Reject";
        button.dataset.testid = action;
        button.addEventListener("click", () => act(t, action));
        actions.append(button);
      }
    }
    tr.append(actions);
    return tr;
  });
  $("tickets").replaceChildren(...rows);
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
      cell(d.capability), cell(JSON.stringify(d.payload), "payload"),
      cell(`${d.rule ?? "no rule"}: ${d.reason}`));
    return tr;
  }));
}

async function refreshOthers() {
  const filters = new URLSearchParams({
    decision: $("filter-decision").value,
    actor: $("filter-actor").value,
    capability: $("filter-capability").value,
  });
  const [{ grants }, { decisions }] = await Promise.all([
    api("GET", "/api/grants"), api("GET", `/api/decisions?${filters}`)]);
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
}

async function refresh() {
  try {
    const { tickets } = await api("GET", "/api/tickets");
    shown = tickets;
    $("queue-error").textContent = "";
    render();
    await refreshOthers();
  } catch (e) {
    if (e.status === 401) return logout();
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
    const matches = kind === "ticket" && part("action") === action && part("ticket") === ticket.id
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

let events = null;
function listen() {
  if (events) events.close();
  events = new EventSource("/api/events");
  events.addEventListener("ledger", () => refresh());
}

async function start() {
  $("login-submit").addEventListener("click", login);
  $("logout").addEventListener("click", logout);
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
