// The demo app: this tab joins the network as a peer (PlexusPeer from
// ../pkg/peer, built by wasm/build.sh), defines classes, adds objects, shows
// genesis's peer list with ping ages and schema hashes, and runs Local and
// Network queries on its own engine. window.plexus holds the objects.
import { PlexusPeer, NetworkClient, version } from "../pkg/peer/index.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// The genesis: ?genesis=URL, else the one plexus-dash --devnet serves this
// page for (its /plexus-config.json), else a local default.
async function servedGenesis() {
  try {
    const answer = await fetch("./plexus-config.json", { cache: "no-store" });
    return answer.ok ? ((await answer.json()).genesis ?? null) : null;
  } catch {
    return null;
  }
}
const genesis = params.get("genesis") ?? (await servedGenesis()) ?? "http://127.0.0.1:8111";
if (params.get("name")) $("name").value = params.get("name");
const client = new NetworkClient(genesis);
let peer = null;
window.plexus = { client, PlexusPeer, NetworkClient, version: version() };

$("genesis").textContent = genesis;
const status = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};
status(`plexus-wasm-peer ${version()} loaded.`);

// Pretty JSON with each flat object (no nested object or array) on one line.
const pretty = (value) =>
  JSON.stringify(value, null, 2).replace(/\{\n[^{}\[\]]*?\n\s*\}/g, (flat) => flat.replace(/\s*\n\s*/g, " "));
const show = (id, value) => {
  $(id).textContent = typeof value === "string" ? value : pretty(value);
};
const failed = (id, error) => {
  show(id, `${error.name ?? "Error"}${error.status ? ` ${error.status}` : ""}: ${error.message}`);
  $(id).className = "error";
};
const enable = (joined) => {
  for (const id of ["leave", "add-class", "add-object", "run"]) $(id).disabled = !joined;
  $("join").disabled = joined;
};
const describe = () =>
  show(
    "me",
    peer
      ? JSON.stringify(
          { name: peer.name, uri: peer.uri, relay: peer.connected ? "connected" : "socket down, reconnecting (see the console)", schemaHash: peer.schemaHash, publicKey: peer.publicKey },
          null,
          2,
        )
      : "not joined",
  );

$("join").onclick = async () => {
  status("joining…");
  try {
    const token = $("token").value.trim() || undefined;
    peer = await PlexusPeer.join({ genesis, name: $("name").value.trim(), token });
    window.plexus.peer = peer;
    enable(true);
    describe();
    status(`joined as ${peer.name}: genesis reaches this tab at ${peer.uri}`);
  } catch (e) {
    status(`cannot join: ${e.message}`, true);
  }
};
$("leave").onclick = async () => {
  await peer.leave();
  peer = null;
  enable(false);
  describe();
  status("left the network");
};
const write = async (run) => {
  $("write-result").className = "";
  try {
    show("write-result", await run());
    describe();
  } catch (e) {
    failed("write-result", e);
  }
};
$("add-class").onclick = () => write(() => peer.createClass($("class-kind").value, $("class-json").value));
$("add-object").onclick = () => write(() => peer.addObject($("object-kind").value, $("object-json").value));
$("run").onclick = async () => {
  $("result").className = "";
  try {
    show("result", await peer.query($("query").value));
  } catch (e) {
    failed("result", e);
  }
};
// A Network query that asks this tab and up to four other peers for the
// first class of their schema (its first two properties).
$("network-example").onclick = async () => {
  const peers = await client.peers();
  const names = peers.map((p) => p.peerName).filter((n) => n !== peer?.name).sort().slice(0, 4);
  const part = (name, schema) => {
    const cls = schema?.things?.classes?.[0];
    if (!cls) return null;
    const fields = cls.properties.slice(0, 2).map((p) => p.name).join(" ") || "id";
    return `${name} { Things { ${cls.class} { ${fields} } } }`;
  };
  const parts = [];
  if (peer) parts.push(part(peer.name, peer.schema()));
  for (const name of names) parts.push(part(name, await client.schema(name).catch(() => null)));
  $("query").value = `{ Network { Get { ${parts.filter(Boolean).join(" ")} } } }`;
};

const age = (ms) => (ms < 1000 ? `${ms} ms ago` : `${(ms / 1000).toFixed(1)} s ago`);
async function refresh() {
  if (peer) describe();
  try {
    const peers = await client.peers();
    const now = Date.now();
    $("peers").replaceChildren(
      ...peers
        .sort((a, b) => a.peerName.localeCompare(b.peerName))
        .map((p) => {
          const tr = document.createElement("tr");
          if (p.peerName === peer?.name) tr.className = "me";
          for (const text of [p.peerName, p.peerUri, age(Math.max(0, now - p.last_contact_at)), p.schema_hash.slice(0, 16) || "(none yet)"]) {
            const td = document.createElement("td");
            td.textContent = text;
            tr.append(td);
          }
          return tr;
        }),
    );
  } catch (e) {
    status(`genesis: ${e.message}`, true);
  }
}
refresh();
setInterval(refresh, 1000);
if (params.get("join") !== null) $("join").click();
