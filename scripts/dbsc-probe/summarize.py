#!/usr/bin/env python3
"""Timeline of one run: server request log + CDP DBSC events."""
import json
import os
import sys

out = sys.argv[1]
rows = []
for line in open(os.path.join(out, "requests.jsonl")):
    e = json.loads(line)
    if e.get("dir") == "req":
        hs = {k.lower(): v for k, v in e["headers"]}
        extra = {k: v[:70] for k, v in hs.items() if "session" in k or k in ("cookie", "authorization", "origin", "sec-fetch-site")}
        rows.append((e["t"], "SRV REQ  %s %s %s %s" % (e["method"], e["path"], json.dumps(extra), e["body"][:90])))
    elif e.get("dir") == "resp":
        rows.append((e["t"], "SRV RESP %s %s %s" % (e["status"], e["path"], e["body"][:90].replace("\n", " "))))
    else:
        rows.append((e["t"], "SRV EVT  " + json.dumps({k: v for k, v in e.items() if k not in ("t", "ts")})[:500]))
p = os.path.join(out, "cdp.jsonl")
if os.path.exists(p):
    for line in open(p):
        e = json.loads(line)
        if e["kind"] in ("dbsc", "cmd:enableDeviceBoundSessions"):
            rows.append((e["t"], "CDP " + e["kind"] + " " + json.dumps(e["data"])[:900]))
        elif e["kind"] == "version":
            rows.append((e["t"], "CDP version " + e["data"].get("Browser", "")))
        elif e["kind"] == "cookies":
            cs = (e["data"].get("result") or {}).get("cookies", [])
            rows.append((e["t"], "CDP cookies " + json.dumps([(c["name"], round(c["expires"] - e["t"]) if c["expires"] > 0 else "session") for c in cs])))
        elif e["kind"] == "reqx" and e["data"].get("deviceBoundSessionUsages"):
            rows.append((e["t"], "CDP usage " + json.dumps(e["data"]["deviceBoundSessionUsages"])[:300]))
rows.sort(key=lambda r: r[0])
t0 = rows[0][0] if rows else 0
for t, s in rows:
    print("%7.1f %s" % (t - t0, s))
