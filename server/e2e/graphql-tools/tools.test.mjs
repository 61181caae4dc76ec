// A real plexus-peer against the tools a GraphQL user points at it:
// graphql-js turns the standard introspection answer into a client schema
// (buildClientSchema, validateSchema) and validates queries with it, and
// graphql-http's audit suite checks /v1/graphql against the GraphQL-over-HTTP
// spec (every MUST passes; the SHOULDs that do not are listed).
// The peer is target/debug/plexus-peer (cargo build -p plexus-peer), or
// PLEXUS_PEER_BIN; it listens on a port the OS picks.
// Run: npm ci && node --test (scripts/test.sh does both).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { buildClientSchema, getIntrospectionQuery, parse, validate, validateSchema } from "graphql";
import { serverAudits } from "graphql-http";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const peerBin = process.env.PLEXUS_PEER_BIN || join(root, "target/debug/plexus-peer");
let data;
let peer;
let url;

/** Starts the peer and resolves with its base URL (its `listening on` line). */
function startPeer() {
  data = mkdtempSync(join(tmpdir(), "plexus-graphql-tools-"));
  peer = spawn(peerBin, ["--listen", "127.0.0.1:0", "--data", data], {
    env: { ...process.env, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error("the peer did not start within 20 s")), 20_000);
    peer.on("error", reject);
    peer.on("exit", (code) => reject(new Error(`the peer exited (${code}) before listening`)));
    createInterface({ input: peer.stdout }).on("line", (line) => {
      const m = /^listening on (http\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolvePromise(m[1]);
      }
    });
  });
}

async function post(path, body) {
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.ok(response.ok, `${path}: ${response.status} ${await response.clone().text()}`);
  return response.json();
}

async function graphql(query, variables) {
  return post("/v1/graphql", { query, variables });
}

before(async () => {
  url = await startPeer();
  await post("/v1/schema/things", { class: "Country", properties: [{ name: "name", dataType: ["string"] }] });
  await post("/v1/schema/things", {
    class: "City",
    properties: [
      { name: "name", dataType: ["string"] },
      { name: "population", dataType: ["int"] },
      { name: "inCountry", dataType: ["Country"] },
    ],
  });
  for (const [name, population] of [["Amsterdam", 905234], ["Rotterdam", 651446]]) {
    await post("/v1/things", { class: "City", schema: { name, population } });
  }
});

after(() => {
  if (peer && peer.exitCode === null) peer.kill();
  if (data) rmSync(data, { recursive: true, force: true });
});

test("the introspection answer builds a valid client schema that validates Get queries", async () => {
  const answer = await graphql(getIntrospectionQuery());
  assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
  const schema = buildClientSchema(answer.data);
  assert.deepEqual(validateSchema(schema), []);
  assert.equal(schema.getQueryType().name, "WeaviateObj");
  assert.deepEqual(Object.keys(schema.getType("City").getFields()), ["uuid", "name", "population", "inCountry"]);

  const get = "query Q($n: Int) { Local { Get { Things { City(limit: $n) { name population inCountry { ... on Country { name } } } } } } }";
  assert.deepEqual(validate(schema, parse(get)), []);
  const meta = "{ Local { GetMeta { Things { City { meta { count } population { maximum } } } } } }";
  assert.deepEqual(validate(schema, parse(meta)), []);
  // The same query runs on the peer, and answers as the schema says.
  const ran = await graphql(get, { n: 2 });
  assert.equal(ran.errors, undefined, JSON.stringify(ran.errors));
  const cities = ran.data.Local.Get.Things.City.sort((a, b) => a.name.localeCompare(b.name));
  assert.deepEqual(cities, [
    { name: "Amsterdam", population: 905234, inCountry: null },
    { name: "Rotterdam", population: 651446, inCountry: null },
  ]);

  // What the client schema refuses, the peer refuses too.
  for (const bad of [
    "{ Local { Get { Things { City { mayor } } } } }",
    "{ Local { Get { Things { Airport { name } } } } }",
    "{ Local { Get { Things { City(limit: \"ten\") { name } } } } }",
    "{ Local { Get { Things { City { inCountry { name } } } } } }",
  ]) {
    assert.notDeepEqual(validate(schema, parse(bad)), [], `graphql-js accepts ${bad}`);
    const refused = await graphql(bad);
    assert.equal(refused.data, undefined, `the peer answered data for ${bad}`);
    assert.ok(refused.errors?.length > 0, `the peer gave no error for ${bad}`);
  }
});

test("graphql-http's GraphQL-over-HTTP audits: every MUST passes", async (t) => {
  const results = [];
  for (const audit of serverAudits({ url: `${url}/v1/graphql`, fetchFn: fetch })) {
    results.push(await audit.fn());
  }
  assert.ok(results.length >= 50, `only ${results.length} audits`);
  const failed = (level) => results.filter((r) => r.name.startsWith(level) && r.status !== "ok");
  for (const r of [...failed("SHOULD"), ...failed("MAY")]) {
    t.diagnostic(`${r.status}: ${r.name}: ${r.reason}`);
  }
  const passed = results.filter((r) => r.status === "ok").length;
  t.diagnostic(`${passed} of ${results.length} audits pass`);
  assert.deepEqual(
    failed("MUST").map((r) => `${r.name}: ${r.reason}`),
    [],
    "MUST audits that failed",
  );
});
