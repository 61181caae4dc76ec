// The demo: loads the module from ../pkg/web (run wasm/build.sh first), sets
// window.plexus, and shows the peer list as genesis's watch stream changes it.
import init, { NetworkClient, validateQuery, schemaHash, version } from "../pkg/web/plexus_wasm.js";

await init();
const genesis = new URLSearchParams(location.search).get("genesis") ?? "http://127.0.0.1:8111";
const client = new NetworkClient(genesis);

window.plexus = {
  client,
  peers: () => client.peers(),
  schema: (peerName) => client.schema(peerName),
  query: (graphql, options) => client.query(graphql, options),
  watch: (callback) => client.watch(callback),
  validateQuery,
  schemaHash,
  NetworkClient,
  version: version(),
};

document.getElementById("genesis").textContent = genesis;
const status = document.getElementById("status");
status.textContent = `plexus-wasm ${version()} loaded: window.plexus is ready.`;

const peers = new Map();
const list = document.getElementById("peers");
function render() {
  list.replaceChildren(
    ...[...peers.values()].map((p) => {
      const li = document.createElement("li");
      li.textContent = `${p.peerName} — ${p.peerUri} — schema ${p.schema_hash.slice(0, 12) || "(none yet)"}`;
      return li;
    }),
  );
}
client.watch((event) => {
  if (event.type === "snapshot") {
    peers.clear();
    for (const p of event.peers) peers.set(p.peerName, p);
  } else if (event.type === "change") {
    if (event.kind === "left" || event.kind === "evicted") peers.delete(event.peer.peerName);
    else peers.set(event.peer.peerName, event.peer);
  } else {
    status.textContent = event.message;
    return;
  }
  status.textContent = `plexus-wasm ${version()}: watching, list version ${event.version}.`;
  render();
});
