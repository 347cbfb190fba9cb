#!/usr/bin/env python3
"""Usage: scripts/rss-split.py PID [INTERVAL]

Every INTERVAL s (default 30), break a process's RSS down: main heap, glibc thread arenas (64 MiB aligned
anon regions), other anon (thread stacks, big mmaps), file-backed. Prints one line per sample."""
import sys, time, re
pid, interval = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 30
ARENA = 64 << 20
t0 = time.time()
print("t_s rss_kib heap_kib arenas n_arenas anon_other_kib file_kib", flush=True)
while True:
    try:
        text = open(f"/proc/{pid}/smaps").read()
    except OSError:
        break
    cur = None
    tot = {"heap": 0, "arena": 0, "anon": 0, "file": 0}
    arena_starts = set()
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if m:
            start, end, perms, path = int(m[1], 16), int(m[2], 16), m[3], m[4].strip()
            if path == "[heap]":
                cur = "heap"
            elif path.startswith("/"):
                cur = "file"
            elif path == "":
                # glibc arena heaps are HEAP_MAX_SIZE (64 MiB) aligned; the rw part starts at the boundary
                if start % ARENA == 0 and "rw" in perms:
                    cur = "arena"; arena_starts.add(start)
                else:
                    cur = "anon"
            else:
                cur = "anon"
        elif line.startswith("Rss:") and cur:
            tot[cur] += int(line.split()[1])
    rss = sum(tot.values())
    print(f"{time.time()-t0:.0f} {rss} {tot['heap']} {tot['arena']} {len(arena_starts)} {tot['anon']} {tot['file']}", flush=True)
    time.sleep(interval)
