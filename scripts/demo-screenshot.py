"""Takes docs/img/demo.png: drives headless Chromium through chromedriver's
WebDriver API (no npm package needed), opens the demo app, joins as the tab
TabDemo, defines the sample class, adds the sample object, runs the page's
Network example and saves a screenshot. Every wait is bounded (20 s, 30 s
for the query); chromedriver and Chromium are stopped on every path.

Usage: start `plexus-dash --devnet`, then
    python3 scripts/demo-screenshot.py URL-IN-ITS-HEADER docs/img/demo.png
"""
import base64, json, socket, subprocess, sys, time, urllib.request

url, out = sys.argv[1], sys.argv[2]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
driver = subprocess.Popen(["/usr/bin/chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["value"]

try:
    for _ in range(100):
        try:
            call("GET", "/status"); break
        except Exception:
            time.sleep(0.1)
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--window-size=1100,1560", "--hide-scrollbars"]
    sid = None
    sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": args}}}})["sessionId"]
    js = lambda script: call("POST", f"/session/{sid}/execute/sync", {"script": script, "args": []})
    def wait(cond, what, secs=20):
        end = time.time() + secs
        while time.time() < end:
            v = js(f"return {cond};")
            if v: return v
            time.sleep(0.2)
        raise SystemExit(f"timed out waiting for {what}: {js('return document.body.innerText')}")
    call("POST", f"/session/{sid}/url", {"url": url})
    wait("document.getElementById('status').textContent.includes('loaded')", "the module")
    js("document.getElementById('name').value = 'TabDemo'; document.getElementById('join').click();")
    wait("document.getElementById('status').textContent.includes('joined as')", "the join")
    js("document.getElementById('add-class').click();")
    wait("document.getElementById('write-result').textContent.includes('City')", "the class")
    js("document.getElementById('add-object').click();")
    wait("document.getElementById('write-result').textContent.includes('Rotterdam')", "the object")
    wait("[...document.querySelectorAll('#peers td')].some(td => td.textContent === 'TabDemo') && document.querySelectorAll('#peers tr').length >= 4", "the peer list")
    js("document.getElementById('network-example').click();")
    wait("document.getElementById('query').value.includes('Network')", "the Network example")
    js("document.getElementById('run').click();")
    wait("document.getElementById('result').textContent.includes('Amsterdam') && document.getElementById('result').textContent.includes('Rotterdam')", "the Network answer", 30)
    time.sleep(1.2)
    print(js("return document.getElementById('status').textContent"))
    print(js("return document.getElementById('query').value"))
    png = call("GET", f"/session/{sid}/screenshot")
    open(out, "wb").write(base64.b64decode(png))
finally:
    try:
        call("DELETE", f"/session/{sid}")
    except Exception:
        pass
    driver.terminate(); driver.wait()
