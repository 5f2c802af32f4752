#!/usr/bin/env python3
# Benchmark (not a test) for docs/BENCHMARKS.md: needs target/debug/redcount built and redis-server on PATH.
# Redis commands/s served while a stream job runs, with 0 and with 20 dashboard tabs open (alternating windows).
import socket, subprocess, time, sys, os, signal, threading
R, U = 7480, 7481
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
exe = os.path.join(root, "target/debug/redcount")
redis = subprocess.Popen(["redis-server", "--port", str(R), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
time.sleep(0.5)
url = f"redis://127.0.0.1:{R}"
job = subprocess.Popen([exe, "stream", "--redis", url, "--rate", "20", "--duration", "40s", "-w", "2", "--job", "tabs", os.path.join(root, "corpus")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ui = subprocess.Popen([exe, "ui", "--redis", url, "--listen", f"127.0.0.1:{U}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(4)
def total():
    s = socket.create_connection(("127.0.0.1", R)); s.sendall(b"INFO stats\r\n"); data = b""
    while b"total_commands_processed" not in data or not data.endswith(b"\r\n"):
        data += s.recv(65536)
        if b"total_commands_processed:" in data and b"\r\n" in data.split(b"total_commands_processed:")[1]: break
    s.close()
    return int(data.split(b"total_commands_processed:")[1].split(b"\r\n")[0])
stop = threading.Event()
def tab():
    s = socket.create_connection(("127.0.0.1", U)); s.sendall(f"GET /events?job=tabs HTTP/1.1\r\nHost: 127.0.0.1:{U}\r\n\r\n".encode())
    s.settimeout(1)
    while not stop.is_set():
        try: s.recv(65536)
        except Exception: pass
    s.close()
rows = []
for rnd in range(3):
    for tabs in (0, 20):
        stop.clear(); ts = [threading.Thread(target=tab) for _ in range(tabs)]; [t.start() for t in ts]
        time.sleep(1); a = total(); time.sleep(5); b = total()
        stop.set(); [t.join() for t in ts]
        rows.append((rnd, tabs, (b - a - 1) / 5))
for r in rows: print("round %d, %2d tabs: %.1f commands/s" % r)
for p in (job, ui, redis): p.send_signal(signal.SIGTERM)
