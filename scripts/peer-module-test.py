#!/usr/bin/env python3
"""The npm package's tab peer module (wasm/pkg/peer, as wasm/build.sh
optimised it) in headless Chromium: a page loads it, joins GENESIS (which
runs with --relay and lets http://127.0.0.1:PORT write) as a tab, creates a
class, adds an object, queries it, and leaves. The browser tests run the
unoptimised test build; this checks that wasm-opt kept the module working
(Debian's binaryen 108 breaks its closures' table entries).

Usage: scripts/peer-module-test.py PKG_DIR GENESIS_URL PORT
Drives /usr/bin/chromedriver (CHROMEDRIVER) over WebDriver with the flags of
wasm-peer/webdriver.json; exits 1 unless the page reports OK."""

import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script type="module">
const out = document.getElementById("out");
try {
  const { PlexusPeer } = await import("./peer/index.js");
  const tab = await PlexusPeer.join({ genesis: GENESIS, name: "ModuleTab", timeoutMs: 10000,
    pingIntervalMs: 500, database: null });
  await tab.createClass("things", { class: "City", properties: [{ name: "name", dataType: ["string"] }] });
  await tab.addObject("things", { class: "City", schema: { name: "Leiden" } });
  const answer = await tab.query("{ Local { Get { Things { City { name } } } } }");
  await tab.leave();
  const names = answer.data.Local.Get.Things.City.map((c) => c.name);
  out.textContent = names.join() === "Leiden" ? "OK" : "FAIL " + JSON.stringify(answer);
} catch (e) {
  out.textContent = "FAIL " + (e && (e.message || e));
}
</script></body></html>
"""


def main():
    pkg, genesis, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    page = PAGE.replace("GENESIS", json.dumps(genesis)).encode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
            else:
                super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Handler, directory=pkg)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    driver_port = s.getsockname()[1]
    s.close()
    chromedriver = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    driver = subprocess.Popen(
        [chromedriver, f"--port={driver_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{driver_port}"

    def call(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            base + path, method=method, data=data, headers={"content-type": "application/json"}
        )
        for _ in range(100):
            try:
                return json.load(urllib.request.urlopen(request, timeout=30))
            except urllib.error.HTTPError:
                raise
            except (ConnectionRefusedError, urllib.error.URLError):
                time.sleep(0.1)
        raise SystemExit("peer-module-test: chromedriver did not start")

    result = "FAIL no answer from the page within 60 s"
    try:
        caps = json.load(open(os.path.join(root, "wasm-peer", "webdriver.json")))
        session = call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        sid = session["value"]["sessionId"]
        call("POST", f"/session/{sid}/url", {"url": f"http://127.0.0.1:{port}/"})
        script = 'return document.getElementById("out").textContent'
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = call("POST", f"/session/{sid}/execute/sync", {"script": script, "args": []})["value"]
            if text.startswith(("OK", "FAIL")):
                result = text
                break
            time.sleep(0.2)
        call("DELETE", f"/session/{sid}")
    finally:
        driver.kill()
        server.shutdown()
    print(f"peer-module-test: {result}", file=sys.stderr)
    sys.exit(0 if result == "OK" else 1)


if __name__ == "__main__":
    main()
