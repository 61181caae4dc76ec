// The npm package as an npm user gets it: `npm pack` wasm/pkg, install the
// tarball into a fresh project, import "plexus-wasm" from there.
// Run by scripts/wasm-test.sh after wasm/build.sh; with PLEXUS_TEST_GENESIS
// (a genesis with PeerA and PeerB, as that script starts) it also talks to
// the network through Node's fetch; with PLEXUS_TEST_HANGING_PEER too (the
// name of a peer registered there that never answers a query) it checks the
// fan-out's per-peer timeout.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "../../pkg");
const genesis = process.env.PLEXUS_TEST_GENESIS;
const hanging = process.env.PLEXUS_TEST_HANGING_PEER;
let project;
let plexus;

before(async () => {
  project = mkdtempSync(join(tmpdir(), "plexus-npm-user-"));
  const packed = execFileSync("npm", ["pack", pkgDir, "--pack-destination", project, "--json"], { encoding: "utf8" });
  const [{ filename, files }] = JSON.parse(packed);
  assert.ok(files.some((f) => f.path === "web/plexus_wasm_bg.wasm"), "the tarball holds the browser .wasm");
  assert.ok(files.some((f) => f.path === "node/plexus_wasm_bg.wasm"), "the tarball holds the Node .wasm");
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "npm-user", version: "1.0.0", private: true, type: "module" }),
  );
  // No dependencies: the install needs no registry.
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", `./${filename}`], {
    cwd: project,
    stdio: "inherit",
  });
  writeFileSync(join(project, "app.mjs"), 'export * from "plexus-wasm";\n');
  plexus = await import(pathToFileURL(join(project, "app.mjs")).href);
});

after(() => {
  if (project) rmSync(project, { recursive: true, force: true });
});

const city = {
  things: { classes: [{ class: "City", properties: [{ name: "name", dataType: ["string"] }] }] },
};

test("the package exports the client and the helpers, with TypeScript types", () => {
  assert.equal(typeof plexus.NetworkClient, "function");
  assert.equal(typeof plexus.validateQuery, "function");
  assert.equal(typeof plexus.schemaHash, "function");
  const manifest = JSON.parse(readFileSync(join(project, "node_modules/plexus-wasm/package.json"), "utf8"));
  assert.equal(plexus.version(), manifest.version);
  assert.equal(manifest.type, "module");
  const types = readFileSync(join(project, "node_modules/plexus-wasm/node/plexus_wasm.d.ts"), "utf8");
  for (const needle of [
    "export interface Peer",
    "export type WatchEvent",
    "peers(): Promise<Peer[]>",
    "query(graphql: string, options?: QueryOptions",
    "validateQuery(query: string, schemas: Record<string, Schema>",
  ]) {
    assert.ok(types.includes(needle), `the .d.ts has ${needle}`);
  }
});

test("schemaHash is hex SHA-256 of the canonical JSON, whatever the order or form", () => {
  // The canonical form: keys sorted, no whitespace, both kinds present.
  const canonical =
    '{"actions":{"classes":[]},"things":{"classes":[{"class":"City","properties":[{"dataType":["string"],"name":"name"}]}]}}';
  const expected = createHash("sha256").update(canonical).digest("hex");
  assert.equal(plexus.schemaHash(city), expected);
  assert.equal(plexus.schemaHash(JSON.stringify(city, null, 2)), expected);
  const reordered = { actions: { classes: [] }, things: { classes: [{ properties: [{ dataType: ["string"], name: "name" }], class: "City" }] } };
  assert.equal(plexus.schemaHash(reordered), expected);
});

test("validateQuery applies the planner's rules", () => {
  assert.deepEqual(plexus.validateQuery("{ Network { Get { PeerA { Things { City { name } } } } } }", { PeerA: city }), []);
  // Properties are the peer's engine to judge; the planner knows peers.
  assert.deepEqual(plexus.validateQuery("{ Network { Get { PeerA { Things { City { mayor } } } } } }", { PeerA: city }), []);
  const errors = plexus.validateQuery("{ Network { Get { PeerZ { Things { City { name } } } } } }", { PeerA: city });
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /PeerZ/);
  assert.deepEqual(errors[0].path, ["Network", "Get", "PeerZ"]);
  const withVars = plexus.validateQuery(
    "query Q($n: Int) { Network { Get { PeerA { Things { City(limit: $n) { name } } } } } }",
    { PeerA: city },
    { variables: { n: 2 }, operationName: "Q" },
  );
  assert.deepEqual(withVars, []);
});

test("bad input throws a PlexusError with a kind, never a panic", () => {
  for (const call of [
    () => plexus.schemaHash("{"),
    () => plexus.schemaHash([1]),
    () => plexus.validateQuery("{ x }", { "bad-name": city }),
    () => new plexus.NetworkClient("not a url"),
    () => new plexus.NetworkClient("http://127.0.0.1:1", { tokn: "typo" }),
  ]) {
    assert.throws(call, (e) => e instanceof Error && e.name === "PlexusError" && e.kind === "invalid-input" && e.message.length > 0);
  }
  // The module still works after each error.
  assert.equal(plexus.schemaHash(city).length, 64);
});

test("watch needs EventSource, which Node lacks: a clear error", { skip: typeof globalThis.EventSource === "function" }, () => {
  const client = new plexus.NetworkClient("http://127.0.0.1:1");
  assert.throws(() => client.watch(() => {}), (e) => e.kind === "unsupported");
});

test("an unreachable genesis rejects with kind network", async () => {
  const client = new plexus.NetworkClient("http://127.0.0.1:9", { timeoutMs: 2000 });
  await assert.rejects(client.peers(), (e) => e instanceof Error && (e.kind === "network" || e.kind === "timeout"));
});

test("peers and a planned Network query through Node's fetch", { skip: !genesis && "PLEXUS_TEST_GENESIS is not set" }, async () => {
  const client = new plexus.NetworkClient(genesis, { timeoutMs: 5000 });
  const peers = await client.peers();
  const names = peers.map((p) => p.peerName);
  assert.ok(names.includes("PeerA") && names.includes("PeerB"), `PeerA and PeerB in ${names}`);
  const schema = await client.schema("PeerA");
  assert.equal(plexus.schemaHash(schema), peers.find((p) => p.peerName === "PeerA").schema_hash);
  const response = await client.query(
    "{ Network { Get { PeerA { Things { City { name } } } PeerB { Things { City { name } } } } } }",
  );
  assert.equal(response.errors, undefined, JSON.stringify(response));
  assert.deepEqual(response.data.Network.Get.PeerA.Things.City, [{ name: "Amsterdam" }]);
  assert.deepEqual(response.data.Network.Get.PeerB.Things.City, [{ name: "Berlin" }]);
});

// A Network query naming PeerA and the peer that never answers, run by
// `client` with `network` (the root field, with or without arguments):
// PeerA's data beside an error at the hanging peer's path, within `bound` ms.
async function askWithHangingPeer(client, network, bound) {
  const query = `{ ${network} { Get { PeerA { Things { City { name } } } ${hanging} { Things { City { name } } } } } }`;
  const started = Date.now();
  const response = await client.query(query);
  const waited = Date.now() - started;
  assert.deepEqual(response.data.Network.Get.PeerA.Things.City, [{ name: "Amsterdam" }], JSON.stringify(response));
  const errors = (response.errors ?? []).filter((e) => JSON.stringify(e.path) === JSON.stringify(["Network", "Get", hanging]));
  assert.equal(errors.length, 1, `one error at ${hanging}'s path: ${JSON.stringify(response)}`);
  assert.match(errors[0].message, /no answer within/, JSON.stringify(errors[0]));
  assert.ok(waited < bound, `answered after ${waited} ms, bound ${bound} ms`);
  return waited;
}

const hangingSkip = !(genesis && hanging) && "PLEXUS_TEST_GENESIS and PLEXUS_TEST_HANGING_PEER are not set";

// The test's own timeout fails it if the query hangs with the peer.
test("a peer that never answers: the others' data and its error, within the client's timeoutMs", { skip: hangingSkip, timeout: 20_000 }, async () => {
  const client = new plexus.NetworkClient(genesis, { timeoutMs: 1500 });
  const waited = await askWithHangingPeer(client, "Network", 1500 + 1000);
  assert.ok(waited >= 1400, `it waited for the hanging peer (${waited} ms)`);
});

test("a peer that never answers: the others' data and its error, within networkTimeout", { skip: hangingSkip, timeout: 20_000 }, async () => {
  const client = new plexus.NetworkClient(genesis, { timeoutMs: 10_000 });
  const waited = await askWithHangingPeer(client, "Network(networkTimeout: 800)", 800 + 1000);
  assert.ok(waited >= 700, `it waited for the hanging peer (${waited} ms)`);
});
