#!/usr/bin/env python3
"""Plays the cookie thief: copies the browser's current `sid` + `bound` cookie values
(read from the server's /state, i.e. what the browser last received) into a plain HTTP
client and calls /api/whoami now and again after the bound cookie's lifetime.
Usage: thief.py BASE_URL FIRST_DELAY_S"""
import json, ssl, sys, time, urllib.request
base, delay = sys.argv[1], float(sys.argv[2])
ctx = ssl._create_unverified_context()
def get(path, cookie=None):
    req = urllib.request.Request(base + path, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(req, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
time.sleep(delay)
st = json.loads(get("/state")[1])
sid = next(iter(st["sessions"]))
bound = max((v for v in st["bound"].items() if v[1]["sid"] == sid), key=lambda kv: kv[1]["exp"])
cookie = f"sid={sid}; bound={bound[0]}"
ttl_left = bound[1]["exp"] - st["now"]
print(time.strftime("%H:%M:%S"), "THIEF copied", cookie, "bound expires in %.0fs" % ttl_left, flush=True)
print(time.strftime("%H:%M:%S"), "THIEF now:", get("/api/whoami", cookie), flush=True)
print(time.strftime("%H:%M:%S"), "THIEF sid only:", get("/api/whoami", f"sid={sid}"), flush=True)
time.sleep(max(0, ttl_left) + 3)
print(time.strftime("%H:%M:%S"), "THIEF after bound expiry:", get("/api/whoami", cookie), flush=True)
