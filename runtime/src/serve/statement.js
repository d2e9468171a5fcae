// The bytes an operator signs, built exactly as the Rust
// `capfence::signing::statement` builds them: a domain line naming the kind,
// then each part as `name:length:value` (length in UTF-8 bytes), each line
// ending in "\n". The page signs only statements it built from the fields it
// shows, never bytes the server hands it.
export function statement(kind, parts) {
  const encoder = new TextEncoder();
  let text = `capfence-${kind}-v1\n`;
  for (const [name, value] of parts) {
    text += `${name}:${encoder.encode(value).length}:${value}\n`;
  }
  return encoder.encode(text);
}

// The statement a login signs: the server's one-time challenge and the
// origin the page is on (a signature for one console is no use at another).
export function loginStatement(challenge, origin) {
  return statement("login", [["challenge", challenge], ["origin", origin]]);
}

// A key file as `capfence keys new` writes it: the header line, then
// `name: …`, `public: ed25519:<base64>`, `secret: <base64 of 32 bytes>`.
export function parseKeyFile(text) {
  const lines = text.split("\n");
  if (lines[0] !== "capfence-operator-key-v1") {
    throw new Error("not a CapFence operator key (capfence keys new makes one)");
  }
  const field = (line, name) => {
    const prefix = `${name}: `;
    if (!line || !line.startsWith(prefix)) throw new Error(`expected ${name}: …`);
    return line.slice(prefix.length).trim();
  };
  const name = field(lines[1], "name");
  const publicKey = field(lines[2], "public");
  const seed = Uint8Array.from(atob(field(lines[3], "secret")), (c) => c.charCodeAt(0));
  if (seed.length !== 32) throw new Error("the secret is not 32 bytes");
  return { name, publicKey, seed };
}

// PKCS #8 for an Ed25519 seed (RFC 8410): the fixed prefix, then the seed.
export function pkcs8(seed) {
  const prefix = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
    0x04, 0x22, 0x04, 0x20];
  const out = new Uint8Array(prefix.length + seed.length);
  out.set(prefix);
  out.set(seed, prefix.length);
  return out;
}

// The key that binds a ticket to one exact event, computed as the Rust
// `approvals::record_key` does: SHA-256 over "capfence-ticket-v2\n" and, for
// each of actor, capability, environment, risk, payload (as recorded), rule
// and policy digest, `length:value\n` (length in UTF-8 bytes), or "~\n" for
// one that is absent. Lowercase hex.
export async function ticketKey(parts) {
  const encoder = new TextEncoder();
  let text = "capfence-ticket-v2\n";
  for (const part of parts) {
    text += part === null || part === undefined
      ? "~\n"
      : `${encoder.encode(part).length}:${part}\n`;
  }
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Grant caps as the ledger writes them in a statement: `field=value` pairs,
// each value an exact decimal without needless zeros, sorted, joined by ";".
// Input may separate pairs by ";" or ",". Throws on anything else.
export function capsText(input) {
  const pairs = input.split(/[;,]/).map((p) => p.trim()).filter((p) => p !== "");
  return pairs.map((pair) => {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=([+-]?)(\d+)(?:\.(\d+))?$/.exec(pair);
    if (!match) throw new Error(`cap "${pair}" is not field=number`);
    const [, field, sign, whole, fraction = ""] = match;
    const digits = whole.replace(/^0+(?=\d)/, "");
    const frac = fraction.replace(/0+$/, "");
    const zero = /^0*$/.test(digits) && frac === "";
    const value = `${sign === "-" && !zero ? "-" : ""}${digits}${frac ? `.${frac}` : ""}`;
    return `${field}=${value}`;
  }).sort().join(";");
}
