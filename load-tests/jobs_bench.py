#!/usr/bin/env python3
"""Drivers for load-tests/jobs-bench.sh (issue 12): the same config backups through
opsgate, a plain OpenSSH loop, and Netmiko. Loopback only. Each subcommand prints one
JSON line of figures.

  gateway  --url --password --port --user --key --secret --n --c --gateway-pid
           sets up N saved sessions, trusts the host key once through an `ssh` channel,
           runs one `config_backup` job, samples the gateway's RSS and CPU from /proc.
  netmiko  --port --user --key --secret --n --c --out DIR
           N ConnectHandler(device_type="cisco_ios") sessions in a ThreadPoolExecutor.
  measure  --label L -- CMD...
           runs CMD, reports wall time and the CPU (getrusage of the children) it used.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Api:
    def __init__(self, url):
        self.url = url
        self.cookie = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("X-Requested-With", "bench")
        if self.cookie:
            req.add_header("Cookie", self.cookie)
        with urllib.request.urlopen(req, timeout=30) as r:
            for k, v in r.headers.items():
                if k.lower() == "set-cookie":
                    self.cookie = v.split(";", 1)[0]
            raw = r.read()
            return json.loads(raw) if raw else None


def trust_host_key(api, port, user, cred):
    """Opens one `ssh` channel and accepts the host key (jobs never ask)."""
    from websockets.sync.client import connect

    ws_url = api.url.replace("http", "ws", 1) + "/ws"
    with connect(ws_url, subprotocols=["opsgate.v1"], origin=api.url,
                 additional_headers={"Cookie": api.cookie}, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "open", "ch": 1, "kind": "ssh", "host": "127.0.0.1",
                            "port": port, "username": user, "credential_id": cred,
                            "cols": 80, "rows": 24}))
        deadline = time.time() + 20
        while time.time() < deadline:
            m = ws.recv(timeout=20)
            if isinstance(m, bytes):
                continue
            f = json.loads(m)
            if f.get("type") == "hostkey":
                ws.send(json.dumps({"type": "hostkey_accept", "ch": 1}))
            elif f.get("type") == "opened":
                ws.send(json.dumps({"type": "close", "ch": 1}))
                return
            elif f.get("type") == "error":
                raise SystemExit(f"trusting the host key failed: {f}")
        raise SystemExit("no answer while trusting the host key")


def cmd_gateway(a):
    api = Api(a.url)
    api.call("POST", "/api/auth/login", {"username": "admin", "password": a.password})
    key = open(a.key).read()
    cred = api.call("POST", "/api/credentials", {
        "name": "bench", "kind": "private_key", "secret": key, "enable_secret": a.secret})["id"]
    trust_host_key(api, a.port, a.user, cred)
    targets = []
    for i in range(a.n):
        targets.append(api.call("POST", "/api/sessions", {
            "folder": "bench", "display_name": f"rtr{i:04d}", "host": "127.0.0.1",
            "port": a.port, "username": a.user, "device_type": "cisco_ios",
            "credential_id": cred})["id"])
    pid = a.gateway_pid
    rss_before = proc_rss_kib(pid)
    peak = [rss_before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], proc_rss_kib(pid))
            except OSError:
                return
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    cpu0 = proc_cpu(pid)
    t0 = time.monotonic()
    t.start()
    job = api.call("POST", "/api/jobs", {"type": "config_backup", "targets": targets,
                                         "concurrency": a.c})["id"]
    deadline = t0 + a.timeout
    while True:
        j = api.call("GET", f"/api/jobs/{job}")
        if j["state"] in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"job did not finish in {a.timeout} s: {j['summary']}")
        time.sleep(0.05)
    wall = time.monotonic() - t0
    cpu = proc_cpu(pid) - cpu0
    stop.set()
    t.join()
    errors = {}
    for tg in j["targets"]:
        if tg["state"] != "succeeded":
            code = (tg.get("error") or {}).get("code", tg["state"])
            errors[code] = errors.get(code, 0) + 1
    versions = api.call("GET", f"/api/configs?session_id={targets[0]}")
    size = api.call("GET", f"/api/configs/{versions[0]['id']}")["bytes"] if versions else 0
    print(json.dumps({
        "label": "opsgate", "targets": a.n, "concurrency": a.c, "state": j["state"],
        "succeeded": j["summary"]["succeeded"], "errors": errors,
        "wall_s": round(wall, 2), "ms_per_target": round(wall * 1000 / a.n, 1),
        "cpu_s": round(cpu, 2), "rss_before_mib": round(rss_before / 1024, 1),
        "rss_peak_mib": round(peak[0] / 1024, 1), "config_bytes": size}))


def cmd_netmiko(a):
    from concurrent.futures import ThreadPoolExecutor
    from netmiko import ConnectHandler

    os.makedirs(a.out, exist_ok=True)

    def one(i):
        dev = {"device_type": "cisco_ios", "host": "127.0.0.1", "port": a.port,
               "username": a.user, "use_keys": True, "key_file": a.key,
               "allow_agent": False, "secret": a.secret, "conn_timeout": 30,
               "ssh_config_file": None}
        try:
            with ConnectHandler(**dev) as c:
                c.enable()
                out = c.send_command("show running-config", read_timeout=60)
            with open(os.path.join(a.out, f"{i}.txt"), "w") as f:
                f.write(out)
            return "hostname rtr1" in out and out.rstrip().endswith("end")
        except Exception as e:  # noqa: BLE001 - the benchmark reports, not raises
            return f"{type(e).__name__}: {str(e)[:200]}"

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=a.c) as ex:
        results = list(ex.map(one, range(a.n)))
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    errors = {}
    for r in results:
        if r is not True:
            k = "incomplete" if r is False else r.split(":")[0]
            errors[k] = errors.get(k, 0) + 1
            if len(errors) == 1 and errors[k] == 1:
                print(f"first netmiko error: {r}", file=sys.stderr)
    print(json.dumps({
        "label": "netmiko", "targets": a.n, "concurrency": a.c,
        "succeeded": sum(1 for r in results if r is True), "errors": errors,
        "wall_s": round(wall, 2), "ms_per_target": round(wall * 1000 / a.n, 1),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "rss_peak_mib": round(ru.ru_maxrss / 1024, 1)}))


def cmd_measure(a):
    t0 = time.monotonic()
    rc = subprocess.call(a.cmd)
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"label": a.label, "rc": rc, "wall_s": round(wall, 2),
                      "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
                      "max_child_rss_mib": round(ru.ru_maxrss / 1024, 1)}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="sub", required=True)
    g = sub.add_parser("gateway")
    g.add_argument("--url", required=True)
    g.add_argument("--password", required=True)
    g.add_argument("--gateway-pid", type=int, required=True)
    n = sub.add_parser("netmiko")
    n.add_argument("--out", required=True)
    for s in (g, n):
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--user", required=True)
        s.add_argument("--key", required=True)
        s.add_argument("--secret", required=True)
        s.add_argument("--n", type=int, default=500)
        s.add_argument("--c", type=int, default=32)
        s.add_argument("--timeout", type=int, default=600)
    m = sub.add_parser("measure")
    m.add_argument("--label", required=True)
    m.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    if a.sub == "measure" and a.cmd and a.cmd[0] == "--":
        a.cmd = a.cmd[1:]
    {"gateway": cmd_gateway, "netmiko": cmd_netmiko, "measure": cmd_measure}[a.sub](a)


if __name__ == "__main__":
    main()
