// A second, independent implementation of docs/canonical-form.md (version 2), in JavaScript with
// Node's own Ed25519 (OpenSSL underneath, not Python's `cryptography`): it rebuilds each vector's
// canonical bytes from its result, as another project would from the document alone, compares
// them with the vector byte for byte, and verifies the signature with the vector's public key.
// Version 1 vectors (the legacy form, which only the Python verifier keeps) get the signature
// check over their stored bytes.
//
// Usage: node check_vectors.mjs [vectors.json]   (exit status 1 on any mismatch)

import { verify, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";

const DOMAIN = "hamletnet-result-v2\n";
const MAX_EXACT_INT = 2n ** 53n - 1n;
// Fields whose schema type is a timestamp or a UUID (docs/canonical-form.md, step 2).
const TIME_FIELDS = new Set(["measured_at"]);
const UUID_FIELDS = new Set(["result_id"]);
// SubjectPublicKeyInfo of an Ed25519 key, before its 32 raw bytes (RFC 8410).
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

// JSON.parse reads every number as a double; integers beyond 2**53 - 1 become strings here, as
// the canonical form writes them, before they can lose digits.
function parseKeepingBigIntegers(text) {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
      const literal = m[0];
      const integer = m[1] === undefined && m[2] === undefined;
      const big = integer && (BigInt(literal) > MAX_EXACT_INT || BigInt(literal) < -MAX_EXACT_INT);
      out += big ? `"${literal}"` : literal;
      i += literal.length;
    } else {
      out += c;
      i += 1;
    }
  }
  return JSON.parse(out);
}

function canonicalTime(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) throw new Error(`not an RFC 3339 time: ${text}`);
  let offsetMin = 0;
  if (m[8] !== "Z" && m[8] !== "z") {
    const sign = m[8][0] === "-" ? -1 : 1;
    offsetMin = sign * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6)));
  }
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) - offsetMin * 60000;
  const micro = (m[7] ?? "").padEnd(6, "0").slice(0, 6);
  return new Date(ms).toISOString().slice(0, 19) + "." + micro + "Z";
}

function canonicalUuid(text) {
  const hex = text.toLowerCase().replace(/[^0-9a-f]/g, "");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)]
    .join("-");
}

// RFC 8785: ECMAScript's own number and string serialisation, keys sorted by UTF-16 code units.
function jcs(value) {
  if (Array.isArray(value)) return "[" + value.map(jcs).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + jcs(value[k])).join(",") + "}";
  }
  if (typeof value === "number" && !Number.isFinite(value)) throw new Error("not finite");
  return JSON.stringify(value);
}

function canonicalBytes(result) {
  const members = {};
  for (const [name, value] of Object.entries(result)) {
    if (name === "signature" || value === null) continue;
    if (TIME_FIELDS.has(name)) members[name] = canonicalTime(value);
    else if (UUID_FIELDS.has(name)) members[name] = canonicalUuid(value);
    else members[name] = value;
  }
  return Buffer.from(DOMAIN + jcs(members), "utf8");
}

const path = process.argv[2] ?? join(dirname(new URL(import.meta.url).pathname), "vectors.json");
const index = parseKeepingBigIntegers(readFileSync(path, "utf8"));
const key = createPublicKey({
  key: Buffer.concat([SPKI_PREFIX, Buffer.from(index.key.public_hex, "hex")]),
  format: "der",
  type: "spki",
});
let failures = 0;
for (const vector of index.vectors) {
  const stored = Buffer.from(vector.canonical_hex, "hex");
  const file = readFileSync(join(dirname(path), vector.canonical_file));
  const problems = [];
  if (!file.equals(stored)) problems.push("canonical file differs from canonical_hex");
  if (vector.form === 2) {
    const mine = canonicalBytes(vector.result);
    if (!mine.equals(stored)) {
      problems.push(`canonical bytes differ:\n  mine:   ${mine}\n  vector: ${stored}`);
    }
  }
  const signature = Buffer.from(vector.signature_base64, "base64");
  if (vector.result.signature !== vector.signature_base64) problems.push("result.signature");
  if (!verify(null, stored, key, signature)) problems.push("signature does not verify");
  if (problems.length) {
    failures += 1;
    console.log(`FAIL ${vector.name}: ${problems.join("; ")}`);
  } else {
    console.log(`ok ${vector.name} (form ${vector.form})`);
  }
}
process.exit(failures ? 1 : 0);
