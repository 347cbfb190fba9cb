#!/usr/bin/env python3
"""Drive headless Chromium over CDP against dbsc_server.py and record DBSC events.

Usage: cdp_probe.py OUTDIR SECONDS URL -- chromium flags...
Needs: pip install websocket-client.  Starts chromium itself (own PID, killed at end).
Writes OUTDIR/cdp.jsonl (all DBSC CDP events, request/response extra info, cookies).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import websocket

outdir, secs, url = sys.argv[1], float(sys.argv[2]), sys.argv[3]
flags = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
os.makedirs(outdir, exist_ok=True)
port = int(os.environ.get("CDP_PORT", "9333"))
profile = tempfile.mkdtemp(prefix="dbsc-cdp-")
headless = ["--headless=new"] if os.environ.get("HEADLESS", "1") == "1" else []
cmd = ["chromium"] + headless + ["--no-sandbox", "--disable-gpu", "--no-first-run",
       "--no-default-browser-check", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
       f"--log-net-log={outdir}/netlog.json", "--net-log-capture-mode=Everything"] + flags + ["about:blank"]
with open(f"{outdir}/cmdline.txt", "w") as f:
    f.write(" ".join(cmd) + "\n")
proc = subprocess.Popen(cmd, stdout=open(f"{outdir}/chromium.stdout", "w"), stderr=open(f"{outdir}/chromium.stderr", "w"))
out = open(f"{outdir}/cdp.jsonl", "w")


def rec(kind, obj):
    out.write(json.dumps({"t": round(time.time(), 3), "ts": time.strftime("%H:%M:%S", time.gmtime()), "kind": kind, "data": obj}) + "\n")
    out.flush()


try:
    for _ in range(100):
        try:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
            if any(t["type"] == "page" for t in targets):
                break
        except OSError:
            pass
        time.sleep(0.2)
    page = [t for t in targets if t["type"] == "page"][0]
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=5)
    version = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version"))
    rec("version", version)
    lock = threading.Lock()
    nid = [0]
    pending = {}

    def send(method, params=None):
        with lock:
            nid[0] += 1
            i = nid[0]
        ev = threading.Event()
        pending[i] = [ev, None]
        ws.send(json.dumps({"id": i, "method": method, "params": params or {}}))
        ev.wait(10)
        return pending.pop(i)[1]

    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                msg = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                return
            if "id" in msg:
                if msg["id"] in pending:
                    pending[msg["id"]][1] = msg
                    pending[msg["id"]][0].set()
                continue
            m = msg.get("method", "")
            p = msg.get("params", {})
            if "DeviceBound" in m:
                rec("dbsc", msg)
            elif m == "Network.requestWillBeSentExtraInfo":
                rec("reqx", {"headers": p.get("headers"), "associatedCookies": [
                    (c["cookie"]["name"], c.get("blockedReasons") or c.get("exemptionReason")) for c in p.get("associatedCookies", [])],
                    "deviceBoundSessionUsages": p.get("deviceBoundSessionUsages")})
            elif m == "Network.responseReceivedExtraInfo":
                rec("respx", {"status": p.get("statusCode"), "headers": p.get("headers"),
                              "blockedCookies": p.get("blockedCookies")})
            elif m == "Network.requestWillBeSent":
                rec("req", {"url": p["request"]["url"], "method": p["request"]["method"]})
            elif m in ("Runtime.consoleAPICalled",):
                rec("console", [a.get("value") for a in p.get("args", [])])

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    rec("cmd", send("Browser.getVersion"))
    rec("cmd", send("Network.enable"))
    rec("cmd", send("Runtime.enable"))
    rec("cmd:enableDeviceBoundSessions", send("Network.enableDeviceBoundSessions", {"enable": True}))
    rec("cmd", send("Page.navigate", {"url": url}))
    t_end = time.time() + secs
    while time.time() < t_end:
        time.sleep(min(15, max(0.1, t_end - time.time())))
        rec("cookies", send("Network.getAllCookies") if False else send("Storage.getCookies"))
    stop.set()
finally:
    try:
        proc.terminate()
        proc.wait(10)
    except Exception:
        proc.kill()
    shutil.rmtree(profile, ignore_errors=True)
    out.close()
