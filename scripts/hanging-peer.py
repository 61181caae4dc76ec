#!/usr/bin/env python3
"""A peer that never answers a query, for scripts/wasm-test.sh.

Usage: hanging-peer.py NAME GENESIS_URL [GENESIS_URL...]

Listens on a free loopback port and prints "listening on URL". Answers
GET /p2p/ping and PUT /p2p/genesis (200), GET /v1/schema (one City class
with a string name) and CORS preflights (any origin), but holds every
POST /v1/graphql open without an answer. Registers as NAME at each genesis
and pings each with its schema hash every 10 s.
"""

import hashlib
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The canonical form (keys sorted, no whitespace): its SHA-256 is the schema hash.
SCHEMA = json.dumps(
    {
        "actions": {"classes": []},
        "things": {"classes": [{"class": "City", "properties": [{"dataType": ["string"], "name": "name"}]}]},
    },
    sort_keys=True,
    separators=(",", ":"),
).encode()
SCHEMA_HASH = hashlib.sha256(SCHEMA).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        sys.stderr.write("hanging-peer: %s %s\n" % (self.command, self.path))

    def answer(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, POST, PUT, OPTIONS")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_OPTIONS(self):
        self.answer(204)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/p2p/ping":
            self.answer(200, b"")
        elif path == "/v1/schema":
            self.answer(200, SCHEMA)
        else:
            self.answer(404)

    def do_PUT(self):
        self.read_body()
        self.answer(200 if self.path == "/p2p/genesis" else 404)

    def do_POST(self):
        self.read_body()
        if self.path.split("?")[0] == "/v1/graphql":
            sys.stderr.write("hanging-peer: holding a query open\n")
            while True:
                time.sleep(3600)
        self.answer(404)


def post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def main():
    name, geneses = sys.argv[1], sys.argv[2:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    uri = "http://127.0.0.1:%d" % server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ids = []
    for genesis in geneses:
        registered = post(genesis + "/peers/register", {"peerName": name, "peerUri": uri})
        ids.append((genesis, registered["peer"]["id"]))
    for genesis, id in ids:
        post("%s/peers/%s/ping" % (genesis, id), {"schemaHash": SCHEMA_HASH})
    print("listening on %s" % uri, flush=True)
    while True:
        time.sleep(10)
        for genesis, id in ids:
            try:
                post("%s/peers/%s/ping" % (genesis, id), {"schemaHash": SCHEMA_HASH})
            except Exception as e:  # genesis is going away with the script
                sys.stderr.write("hanging-peer: ping failed: %s\n" % e)


if __name__ == "__main__":
    main()
