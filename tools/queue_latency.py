#!/usr/bin/env python3
"""Latency from a photo settling to its job being queued, against a running `captiond run`.

Starts the daemon on a temp library (settle_ms = 500, the tiny fixture model), writes 10 small
PNGs one at a time, and polls the catalog (read-only) until each one's job exists; prints the
time beyond the settle period. Standard library only.

    python3 tools/queue_latency.py [path/to/captiond]
"""
import os, sqlite3, struct, subprocess, sys, tempfile, time, zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target/release/captiond")
SETTLE = 0.5


def png(seed):
    w = h = 8
    raw = b"".join(b"\x00" + bytes((seed * 7 + x * 13 + y * 3) % 256 for x in range(w * 3)) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


with tempfile.TemporaryDirectory() as tmp:
    lib, db = os.path.join(tmp, "photos"), os.path.join(tmp, "catalog.db")
    os.mkdir(lib)
    with open(os.path.join(tmp, "config.toml"), "w") as f:
        f.write(f'database = "{db}"\n[[library]]\npath = "{lib}"\nsidecars = false\n[model]\n'
                f'dir = "{REPO}/tests/fixtures/models/tiny-a"\ntasks = ["<CAPTION>"]\nbeams = 1\n'
                f'max_new_tokens = 8\n[daemon]\nsettle_ms = {int(SETTLE * 1000)}\n')
    daemon = subprocess.Popen([binary, "--config", os.path.join(tmp, "config.toml"), "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        lat = []
        for i in range(10):
            path = os.path.join(lib, f"p{i}.png")
            with open(path, "wb") as f:
                f.write(png(i + 1))
            written = time.time()
            while time.time() - written < 10:
                try:
                    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                    queued = c.execute("SELECT count(*) FROM jobs j JOIN photos p ON p.hash = j.hash "
                                       "WHERE p.path = ?", (path,)).fetchone()[0]
                    c.close()
                except sqlite3.Error:
                    queued = 0
                if queued:
                    break
                time.sleep(0.01)
            lat.append(time.time() - written - SETTLE)
        lat.sort()
        print(f"queued after settling: median {lat[len(lat) // 2] * 1000:.0f} ms, "
              f"max {lat[-1] * 1000:.0f} ms over {len(lat)} files (settle {SETTLE * 1000:.0f} ms excluded)")
    finally:
        daemon.terminate()
        daemon.wait()
