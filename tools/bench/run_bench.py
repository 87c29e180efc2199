#!/usr/bin/env python3
"""Echelon benchmark harness (issue 8). Python 3 standard library only.

    tools/bench/bench.sh [--quick] [--no-portkey] [--no-install] [--out FILE]

Builds with `bazel build -c opt`, starts one upstream simulator and, side by
side against it, measures with tools/loadgen:

  direct        the simulator called over HTTP (the baseline)
  echelon-grpc  echelond, gRPC front (target fast-pool)
  echelon-http  echelond, OpenAI-compatible HTTP front (model fast-pool)
  echo-grpc     tools/bench/echo_server, the bare gRPC floor (no upstream)
  nginx         nginx as a plain keep-alive reverse proxy to the simulator
  portkey       the Portkey AI gateway (Node.js), provider openai, custom host

For each: closed-loop throughput, open-loop latency at fixed rates (measured
from intended send times), CPU of the system's process(es) from
/proc/<pid>/stat, peak RSS (VmHWM), streaming time to first token and CPU per
chunk. Then 10,000 concurrent long streams through echelond while sampling
its RSS and thread count. Prints one table and writes BENCHMARKS.md.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")
RATES = [500, 2000, 5000]


def log(msg):
    print(f"bench: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# /proc


def proc_cpu_split(pids):
    """(utime, stime) of every process in pids (all threads), in seconds."""
    u = st = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            u += int(fields[11])
            st += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return u / CLK_TCK, st / CLK_TCK


def proc_cpu_s(pids):
    """utime + stime of every process in pids (all threads), in seconds."""
    return sum(proc_cpu_split(pids))


def proc_ctx_switches(pids):
    """Voluntary + involuntary context switches of every thread of pids."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches:",
                                            "nonvoluntary_ctxt_switches:")):
                            total += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return total


def proc_status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------------
# Processes


class Proc:
    def __init__(self, name, argv, tmp, env=None, cpus=None):
        self.name = name
        self.out_path = os.path.join(tmp, f"{name}.out")
        self.err_path = os.path.join(tmp, f"{name}.err")
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + argv
        self.argv = argv
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(
            argv, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
            stdout=open(self.out_path, "w"), stderr=open(self.err_path, "w"),
            start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def wait_lines(self, prefixes, timeout=60):
        """Waits until stdout has a line starting with each prefix; returns
        {prefix: rest of line}."""
        deadline = time.time() + timeout
        found = {}
        while time.time() < deadline:
            with open(self.out_path) as f:
                for line in f:
                    for p in prefixes:
                        if line.startswith(p) and p not in found:
                            found[p] = line[len(p):].strip()
            if len(found) == len(prefixes):
                return found
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {prefixes}: "
                           f"{self.tail()}")

    def tail(self):
        try:
            with open(self.err_path) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: {proc.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on {port}")


def http_post(url, body, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode(errors="replace")


# ---------------------------------------------------------------------------
# Setup


def sh(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, **kw)


def install(args):
    need = [p for p in ("nginx",) if shutil.which(p) is None and
            not os.path.exists(f"/usr/sbin/{p}")]
    if need and args.install:
        log(f"apt-get install {' '.join(need)}")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(sudo + ["apt-get", "update", "-qq"])
        sh(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
           + need, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
           stdout=subprocess.DEVNULL)
    pk_dir = os.path.join(ROOT, "tools/bench/portkey")
    pk_main = os.path.join(pk_dir, "node_modules/@portkey-ai/gateway/build/start-server.js")
    if args.portkey and not os.path.exists(pk_main) and args.install:
        if shutil.which("npm") is None:
            log("npm not found; Portkey will be n/a")
        else:
            log("npm install @portkey-ai/gateway (tools/bench/portkey)")
            cache = os.path.expanduser("~/.cache/echelon-npm")
            subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                            "--loglevel=error", "--cache", cache], cwd=pk_dir)


def build(args):
    bazel = ["bazel"]
    if args.output_base:
        bazel.append(f"--output_base={args.output_base}")
    targets = ["//service:echelond", "//tools/upstream_sim:upstream_sim",
               "//tools/loadgen:loadgen", "//tools/bench:echo_server"]
    log("bazel build -c opt " + " ".join(targets))
    r = sh(bazel + ["build", "-c", "opt"] + targets)
    if r.returncode != 0:
        sys.exit("bench: build failed")
    out = sh(bazel + ["info", "-c", "opt", "bazel-bin"], capture_output=True,
             text=True).stdout.strip()
    return out


# ---------------------------------------------------------------------------
# Measurements


class Bench:
    def __init__(self, args, bin_dir, tmp):
        self.args = args
        self.bin = bin_dir
        self.tmp = tmp
        n = os.cpu_count() or 1
        if args.no_pin or n < 2:
            self.sut_cpus = self.sim_cpus = self.client_cpus = None
        elif n >= 4:
            self.sut_cpus, self.sim_cpus, self.client_cpus = "0", "2", "3"
        else:
            self.sut_cpus, self.sim_cpus, self.client_cpus = "0", "1", "1"
        self.procs = []
        self.results = {}

    def start(self, name, argv, env=None, cpus=None):
        p = Proc(name, argv, self.tmp, env=env, cpus=cpus)
        self.procs.append(p)
        return p

    def loadgen(self, flags):
        argv = [os.path.join(self.bin, "tools/loadgen/loadgen")] + flags
        if self.client_cpus is not None:
            argv = ["taskset", "-c", self.client_cpus] + argv
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        line = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if r.returncode != 0 or not line:
            raise RuntimeError(f"loadgen {' '.join(flags)} failed: "
                               f"{r.stderr[-1500:]}")
        return json.loads(line[-1])

    def measured(self, pids_fn, flags):
        pids = pids_fn()
        c0 = proc_cpu_s(pids)
        res = self.loadgen(flags)
        res["cpu_s"] = proc_cpu_s(pids) - c0
        return res

    def endpoint_flags(self, kind, endpoint, extra):
        """loadgen flags naming the system: kind 'grpc' (endpoint =
        host:port) or 'http' (endpoint = URL, plus `extra` flags)."""
        if kind == "grpc":
            return [f"--address={endpoint}", f"--target={self.args.target}"]
        return [f"--url={endpoint}"] + (extra or [])

    def cpu_trials(self, systems):
        """Closed-loop CPU per request, interleaved: each round runs every
        system once for --cpu_trial_s, so a burst of load from elsewhere on
        the (shared) machine hits one trial, not one system. Records CPU per
        1k requests, context switches per request and the kernel's share of
        the CPU for each trial."""
        a = self.args
        for rnd in range(a.cpu_trials):
            for name, kind, endpoint, pids_fn, extra in systems:
                if name not in self.results or "error" in self.results[name]:
                    continue
                log(f"cpu trial {rnd + 1}/{a.cpu_trials}: {name}")
                flags = ["--warmup_s=1", f"--duration_s={a.cpu_trial_s}",
                         f"--mode={kind}_unary", f"--concurrency={a.concurrency}"]
                flags += self.endpoint_flags(kind, endpoint, extra)
                pids = pids_fn()
                u0, s0 = proc_cpu_split(pids)
                x0 = proc_ctx_switches(pids)
                res = self.loadgen(flags)
                u1, s1 = proc_cpu_split(pids)
                x1 = proc_ctx_switches(pids)
                # The counters include the 1 s warmup: scale by the requests
                # of both phases (warmup ran at the measured rate).
                n = res.get("total_ok", 0) * (1 + 1 / a.cpu_trial_s)
                if not n:
                    continue
                cpu = (u1 - u0) + (s1 - s0)
                self.results[name].setdefault("cpu_trials", []).append({
                    "cpu_s_per_1k": cpu / n * 1000,
                    "ctx_per_req": (x1 - x0) / n,
                    "kernel_share": (s1 - s0) / cpu if cpu > 0 else 0.0,
                    "throughput_rps": res.get("throughput_rps", 0)})

    def run_system(self, name, kind, endpoint, pids_fn, extra=None):
        """kind: 'grpc' (endpoint = host:port) or 'http' (endpoint = URL)."""
        a = self.args
        common = [f"--warmup_s={a.warmup}", f"--duration_s={a.duration}"]
        common += self.endpoint_flags(kind, endpoint, extra)
        out = {"name": name}
        log(f"{name}: closed loop, {a.concurrency} in flight")
        res = self.measured(pids_fn, common + [
            f"--mode={kind}_unary", f"--concurrency={a.concurrency}"])
        out["closed"] = res
        thr = res["throughput_rps"]
        out["open"] = {}
        for rate in RATES:
            if thr < rate:
                log(f"{name}: skip {rate}/s (saturates at {thr:.0f}/s)")
                out["open"][str(rate)] = {"saturated": True}
                continue
            log(f"{name}: open loop at {rate}/s")
            out["open"][str(rate)] = self.measured(pids_fn, common + [
                f"--mode={kind}_unary", f"--rate={rate}"])
        # A system slower than the stream rate gets half its unary
        # throughput instead (noted in its cell), not an ever-growing queue.
        srate = a.stream_rate
        if thr < 2 * srate:
            srate = max(5, int(thr / 2))
        log(f"{name}: streams at {srate}/s")
        out["stream"] = self.measured(pids_fn, common + [
            f"--mode={kind}_stream", f"--rate={srate}"])
        out["stream"]["stream_rate"] = srate
        pids = pids_fn()
        out["vmhwm_kib"] = sum(proc_status_kib(p, "VmHWM") for p in pids)
        self.results[name] = out
        return out

    def capacity(self, grpc_addr, gw_pid, sim_port):
        a = self.args
        # Every upstream model of configs/llms streams forever at 1 chunk/s
        # (fast-pool may route to any of them).
        keys = ["sim-fast", "sim-smart", "sim-claude"]
        for k in keys:
            http_post(f"http://127.0.0.1:{sim_port}/_scenario?key={k}",
                      "tokens=1000000;itl_ms=1000")
        open_rate = 2000
        try:
            log(f"echelon-grpc: {a.streams} concurrent streams at 1 chunk/s, "
                f"hold {a.hold}s")
            argv = [os.path.join(self.bin, "tools/loadgen/loadgen"),
                    "--mode=grpc_hold", f"--address={grpc_addr}",
                    f"--target={a.target}", f"--streams={a.streams}",
                    f"--open_rate={open_rate}", f"--hold_s={a.hold}",
                    "--channels=16", f"--sample_pid={gw_pid}"]
            if self.client_cpus is not None:
                argv = ["taskset", "-c", self.client_cpus] + argv
            err_path = os.path.join(self.tmp, "capacity.err")
            with open(err_path, "w") as err_f:
                lg = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=err_f, text=True)
                # loadgen prints HOLDING once every stream had its first
                # chunk (or --settle_s ran out); sample the simulator
                # half-way through the hold.
                lines = []
                for l in lg.stdout:
                    lines.append(l)
                    if l.startswith("HOLDING"):
                        break
                time.sleep(a.hold / 2)
                upstream_active = 0
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{sim_port}/_stats", timeout=10) as r:
                        stats = json.loads(r.read())
                    upstream_active = sum(v.get("active", 0) for k, v in
                                          stats.get("keys", {}).items() if k in keys)
                except (OSError, ValueError):
                    pass
                lines += lg.stdout.readlines()
                lg.wait(timeout=120)
            line = [l for l in lines if l.startswith("{")]
            if lg.returncode != 0 or not line:
                with open(err_path) as f:
                    raise RuntimeError(f"loadgen grpc_hold failed: {f.read()[-1500:]}")
            res = json.loads(line[-1])
            res["upstream_active_mid_hold"] = upstream_active
        finally:
            for k in keys:
                http_post(f"http://127.0.0.1:{sim_port}/_scenario?key={k}", "")
        self.results["capacity"] = res
        return res


def start_nginx(bench, sim_port):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise RuntimeError("nginx not installed")
    d = os.path.join(bench.tmp, "nginx")
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = f"""{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream sim {{
    server 127.0.0.1:{sim_port};
    keepalive 512;
  }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    p = bench.start("nginx", [nginx, "-p", d, "-c", os.path.join(d, "nginx.conf")],
                    cpus=bench.sut_cpus)
    wait_port(port, p)
    return p, port


def start_portkey(bench):
    main = os.path.join(ROOT, "tools/bench/portkey/node_modules/@portkey-ai/gateway/build/start-server.js")
    if not os.path.exists(main):
        raise RuntimeError("@portkey-ai/gateway is not installed (npm install failed or --no-install)")
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed")
    port = free_port()
    p = bench.start("portkey", ["node", main, f"--port={port}", "--headless"],
                    env={"NODE_ENV": "production"}, cpus=bench.sut_cpus)
    wait_port(port, p)
    return p, port


# ---------------------------------------------------------------------------
# Report


def fmt_us(v):
    if v is None:
        return "–"
    if abs(v) >= 10000:
        return f"{v / 1000:.1f}ms"
    return f"{v:.0f}"


def best_trial(r):
    """The CPU trial with the lowest CPU per request, or None."""
    trials = r.get("cpu_trials") or []
    return min(trials, key=lambda t: t["cpu_s_per_1k"]) if trials else None


def unary_cpu(r):
    """CPU s / 1k unary requests: the lowest of the closed-loop run and the
    interleaved trials (the machine is shared: noise only ever adds)."""
    vals = [cpu_per_1k(r["closed"])] + [t["cpu_s_per_1k"] for t in r.get("cpu_trials") or []]
    vals = [v for v in vals if v]
    return min(vals) if vals else None


def cpu_per_1k(res, count_key="total_ok"):
    n = res.get(count_key, 0)
    if not n:
        return None
    return res["cpu_s"] / n * 1000


_STREAM_RATE = [200]


def args_stream_rate():
    return _STREAM_RATE[0]


def build_rows(results):
    d = results.get("direct")
    rows = []
    for name in ["direct", "echelon-grpc", "echelon-grpc-batch", "echelon-http", "echo-grpc",
                 "nginx", "portkey"]:
        r = results.get(name)
        if r is None:
            continue
        if "error" in r:
            rows.append([name, f"n/a: {r['error']}"] + [""] * 8)
            continue
        absolute = name in ("direct", "echo-grpc")
        row = [name, f"{r['closed']['throughput_rps']:.0f}"]
        for rate in RATES:
            o = r["open"].get(str(rate), {})
            if o.get("saturated") or not o:
                row.append("saturated")
                continue
            base = None if absolute else (d or {}).get("open", {}).get(str(rate))
            vals = []
            for q in ("p50", "p99", "p999"):
                v = o["lat_us"][q]
                if base and not base.get("saturated"):
                    v -= base["lat_us"][q]
                vals.append(fmt_us(v))
            cell = " / ".join(vals)
            if absolute:
                cell = "(abs) " + cell
            if o.get("dropped") or o.get("errors"):
                cell += f" [{o.get('errors', 0)} err, {o.get('dropped', 0)} drop]"
            row.append(cell)
        c = unary_cpu(r)
        row.append("–" if c is None else f"{c:.3f}")
        row.append(f"{r['vmhwm_kib'] / 1024:.0f}")
        s = r["stream"]
        t50, t99 = s["ttft_us"]["p50"], s["ttft_us"]["p99"]
        if not absolute and d:
            t50 -= d["stream"]["ttft_us"]["p50"]
            t99 -= d["stream"]["ttft_us"]["p99"]
        tcell = f"{fmt_us(t50)} / {fmt_us(t99)}"
        if absolute:
            tcell = "(abs) " + tcell
        if s.get("stream_rate", args_stream_rate()) != args_stream_rate():
            tcell += f" (@{s['stream_rate']}/s)"
        if s.get("errors"):
            tcell += f" [{s['errors']} err]"
        row.append(tcell)
        c = cpu_per_1k(s, "total_chunks")
        row.append("–" if c is None else f"{c:.4f}")
        cap = results.get("capacity") if name == "echelon-grpc" else None
        if cap:
            row.append(f"{cap['rss_kib_max'] / 1024:.0f} MiB, {cap['threads_max']} threads; "
                       f"{cap.get('flowing_at_hold', 0)} flowing after {cap.get('settle_s', 0):.0f} s, "
                       f"{cap.get('upstream_active_mid_hold', 0)} upstream streams, "
                       f"{cap['chunks_per_s']:.0f} chunks/s")
        else:
            row.append("–")
        rows.append(row)
    return rows


HEADER = ["System", "Throughput (req/s, closed loop)",
          "Added latency @500/s p50/p99/p999 (µs)",
          "@2,000/s", "@5,000/s", "CPU s / 1k req",
          "Peak RSS (MiB)", "Added TTFT p50/p99 (µs)", "CPU s / 1k chunks",
          "10k streams @1 chunk/s"]


def table(rows):
    lines = ["| " + " | ".join(HEADER) + " |",
             "|" + "|".join(["---"] * len(HEADER)) + "|"]
    for r in rows:
        r = r + [""] * (len(HEADER) - len(r))
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


def targets(results, args):
    out = []
    g = results.get("echelon-grpc")
    h = results.get("echelon-http")
    e = results.get("echo-grpc")
    d = results.get("direct")
    n = results.get("nginx")
    p = results.get("portkey")
    cap = results.get("capacity")

    def ok(x):
        return "**met**" if x else "**missed**"

    def usable(r):
        return r is not None and "error" not in r

    if usable(g) and usable(e):
        cg, ce = unary_cpu(g), unary_cpu(e)
        if cg and ce:
            out.append(("CPU per unary request ≤ 4× bare echo server",
                        f"{cg / ce:.2f}× ({cg:.3f} vs {ce:.3f} s/1k)", ok(cg <= 4 * ce)))
    gb = results.get("echelon-grpc-batch")
    if usable(gb) and usable(e):
        cb, ce = unary_cpu(gb), unary_cpu(e)
        if cb and ce:
            out.append(("CPU per unary request ≤ 4× bare echo server, with `--sched_batch`",
                        f"{cb / ce:.2f}× ({cb:.3f} vs {ce:.3f} s/1k)", ok(cb <= 4 * ce)))
    if usable(g) and usable(d):
        o, b = g["open"].get("5000", {}), d["open"].get("5000", {})
        if o.get("saturated") or b.get("saturated") or not o or not b:
            out.append(("Added latency @5,000/s p50 ≤ 150 µs, p99 ≤ 1 ms",
                        "saturated below 5,000/s on this machine", ok(False)))
        else:
            a50 = o["lat_us"]["p50"] - b["lat_us"]["p50"]
            a99 = o["lat_us"]["p99"] - b["lat_us"]["p99"]
            out.append(("Added latency @5,000/s p50 ≤ 150 µs",
                        f"{a50:.0f} µs", ok(a50 <= 150)))
            out.append(("Added latency @5,000/s p99 ≤ 1 ms",
                        f"{a99:.0f} µs", ok(a99 <= 1000)))
    if usable(h) and usable(d):
        # The same router, upstream client and simulator behind the HTTP
        # front, which runs on the event loop thread alone: what the gateway
        # adds without gRPC's thread hand-offs (reported; the gRPC rows
        # above are the targets).
        o, b = h["open"].get("5000", {}), d["open"].get("5000", {})
        if o and b and not o.get("saturated") and not b.get("saturated"):
            a50 = o["lat_us"]["p50"] - b["lat_us"]["p50"]
            a99 = o["lat_us"]["p99"] - b["lat_us"]["p99"]
            out.append(("HTTP front: added latency @5,000/s p50 / p99 (reported)",
                        f"{a50:.0f} / {a99:.0f} µs", "reported"))
        t = h["stream"]["ttft_us"]["p50"] - d["stream"]["ttft_us"]["p50"]
        out.append(("HTTP front: added TTFT p50 (reported)", f"{t:.0f} µs", "reported"))
    if usable(g) and usable(p):
        # Portkey runs once (its trials would take minutes): compare it with
        # Echelon's own single closed-loop run, not with Echelon's best trial.
        cg, cp = cpu_per_1k(g["closed"]), cpu_per_1k(p["closed"])
        if cg and cp:
            out.append(("≥ 20× less CPU per request than Portkey",
                        f"{cp / cg:.1f}× less ({cp:.3f} vs {cg:.3f} s/1k, one run each)",
                        ok(cp >= 20 * cg)))
    elif usable(g):
        why = p.get("error") if p else "not run"
        out.append(("≥ 20× less CPU per request than Portkey", f"n/a ({why})", "n/a"))
    if usable(g) and usable(n):
        out.append(("Throughput vs nginx (reported)",
                    f"{g['closed']['throughput_rps'] / n['closed']['throughput_rps']:.2f}× nginx "
                    f"({g['closed']['throughput_rps']:.0f} vs {n['closed']['throughput_rps']:.0f} req/s)",
                    "reported"))
    if usable(g) and usable(e):
        cg = cpu_per_1k(g["stream"], "total_chunks")
        ce = cpu_per_1k(e["stream"], "total_chunks")
        if cg and ce:
            out.append(("Streaming CPU per chunk ≤ 3× echo server per message",
                        f"{cg / ce:.2f}×", ok(cg <= 3 * ce)))
    if usable(g) and usable(d):
        t = g["stream"]["ttft_us"]["p50"] - d["stream"]["ttft_us"]["p50"]
        out.append(("Added TTFT p50 ≤ 200 µs", f"{t:.0f} µs", ok(t <= 200)))
    if cap:
        rss = cap["rss_kib_max"] / 1024
        # Held means: the streams are really open end to end and flowing at
        # close to 1 chunk/s each.
        held = (cap.get("flowing_at_hold", 0) >= args.streams and
                cap["open_at_end"] >= args.streams and
                cap["chunks_per_s"] >= 0.9 * args.streams)
        detail = (f"{cap.get('flowing_at_hold', 0)} streams flowing "
                  f"{cap.get('settle_s', 0):.1f} s after the first was opened, "
                  f"{cap['open_at_end']} client streams open at the end, "
                  f"{cap.get('upstream_active_mid_hold', 0)} upstream streams, "
                  f"{cap['chunks_per_s']:.0f} chunks/s (expected ~{args.streams})")
        out.append((f"{args.streams} concurrent streams held",
                    detail, ok(held)))
        out.append((f"{args.streams} concurrent streams: RSS ≤ 1 GiB",
                    f"{rss:.0f} MiB" + ("" if held else " (streams not all established)"),
                    ok(rss <= 1024 and held)))
        out.append((f"{args.streams} concurrent streams: ≤ 32 threads",
                    f"{cap['threads_max']} threads" + ("" if held else " (streams not all established)"),
                    ok(cap["threads_max"] <= 32 and held)))
    if usable(g) and usable(h):
        cg, ch = unary_cpu(g), unary_cpu(h)
        if cg and ch:
            out.append(("HTTP front CPU per request ≤ gRPC front's",
                        f"{ch:.3f} vs {cg:.3f} s/1k", ok(ch <= cg)))
    return out


def machine():
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = ["?"]
    return (f"`nproc` {os.cpu_count()}, {model}, {mem:.1f} GiB RAM, "
            f"kernel {platform.release()}, load average at start {' '.join(load)}")


def cpu_section(results, args):
    """Where each system's CPU goes, from its best interleaved trial."""
    rows = []
    for name in ["echelon-grpc", "echelon-grpc-batch", "echelon-http", "echo-grpc"]:
        r = results.get(name)
        if not r or "error" in r or not r.get("cpu_trials"):
            continue
        t = best_trial(r)
        all_cpu = ", ".join(f"{x['cpu_s_per_1k'] * 1000:.0f}" for x in r["cpu_trials"])
        rows.append(f"| {name} | {t['cpu_s_per_1k'] * 1000:.0f} ({all_cpu}) | "
                    f"{t['ctx_per_req']:.2f} | {100 * t['kernel_share']:.0f} % | "
                    f"{t['throughput_rps']:.0f} |")
    if not rows:
        return []
    return ["## Where the CPU goes (unary, closed loop)", "",
            f"{args.cpu_trials} rounds; each round runs every system below for "
            f"{args.cpu_trial_s:g} s ({args.concurrency} calls in flight), so "
            "load from elsewhere on the machine hits a trial rather than a "
            "system. The unary CPU column of the results and the CPU targets use "
            "each system's lowest figure. Context switches: voluntary + "
            "involuntary, all threads, from `/proc/<pid>/task/*/status`; kernel "
            "share: `stime / (utime + stime)`.", "",
            "| System | CPU µs / req, best (every trial) | Context switches / req | "
            "Kernel share | req/s in that trial |",
            "|---|---|---|---|---|"] + rows + [""]


def write_markdown(path, args, results, rows, tgts, mach, pinning, started, elapsed, notes,
                   raw_path):
    trial = args.label or ("TRIAL (--quick) on a shared, loaded machine: numbers are "
                           "noisy and only prove the harness works end to end."
                           if args.quick else "")
    cmd = "tools/bench/bench.sh" + ("".join(" " + shlex.quote(a) for a in sys.argv[1:]))
    md = ["# Echelon benchmarks", ""]
    md += ["_Generated by `tools/bench/run_bench.py`; rerun to regenerate. "
           "Do not edit by hand._", ""]
    if trial:
        md += [f"> **{trial}**", ""]
    md += ["## How it was run", "",
           f"- Command: `{cmd}` (also `tools/echelon bench`)",
           f"- Date: {started} UTC, run time {elapsed:.0f} s",
           f"- Machine: {mach}",
           f"- Pinning: {pinning}",
           f"- Phases: {args.warmup:g} s warmup + {args.duration:g} s measured each; "
           f"closed loop with {args.concurrency} calls in flight; open loop at "
           f"{', '.join(str(r) for r in RATES)} req/s; streams open loop at "
           f"{args.stream_rate}/s, 16 chunks each; capacity: {args.streams} "
           f"streams at 1 chunk/s held {args.hold:g} s",
           "- Upstream: one `upstream_sim` (`tokens=16`), shared by every row; "
           "gateways use `configs/llms` with target `fast-pool`, "
           "`--log_level=warning`", ""]
    md += ["## Results", "", table(rows), ""]
    md += ["How to read it:", "",
           "- `echelon-grpc-batch`: the same gateway started with "
           "`--sched_batch` (every thread under SCHED_BATCH: woken threads do "
           "not preempt, so gRPC → loop → gRPC hand-offs batch up). Off by "
           "default: on a shared machine it trades latency for CPU.",
           "- Throughput: closed loop, the highest rate the system sustained "
           f"with {args.concurrency} calls in flight (client and simulator share "
           "the client core, so the direct row is bounded by the load side).",
           "- Added latency: the row's percentile minus the direct row's "
           "percentile at the same fixed rate, measured from each request's "
           "intended send time (no coordinated omission). `(abs)` rows are "
           "absolute (direct itself; the echo server has no upstream). "
           "`saturated`: the closed-loop throughput was below that rate, so "
           "the open-loop run was skipped. A negative value means the row's "
           "tail came out below direct's: noise, at that percentile the two "
           "runs are not distinguishable.",
           "- CPU s / 1k req: user+system CPU of the system's own process(es) "
           "(`/proc/<pid>/stat`) during the closed-loop run, per 1,000 "
           "completed requests (for the rows in the CPU section below, the "
           "lowest of that run and the interleaved trials); for `direct` it "
           "is the simulator's CPU. "
           "CPU s / 1k chunks: the same during the stream run, per 1,000 "
           "streamed messages received.",
           "- Peak RSS: `VmHWM` after the row's runs (nginx: master + worker).",
           "- Added TTFT: time to the first streamed message minus direct's "
           "(`@N/s`: a system slower than the stream rate ran at half its "
           "unary throughput).",
           "- 10k streams: `loadgen --mode=grpc_hold` opens the streams at "
           "2,000/s over 16 channels against a simulator that sends 1 token "
           "per second, waits (at most 60 s) until every stream had its first "
           "chunk, then holds them, sampling the gateway's `VmRSS` and "
           "`Threads` every 0.5 s and counting chunks; the simulator's "
           "`/_stats` gives the upstream streams it serves mid-hold. Held = "
           "all streams flowing and ≥ 90 % of the expected chunks/s.",
           ""]
    md += cpu_section(results, args)
    md += ["## Targets (issue 8)", "", "| Target | Measured | Verdict |", "|---|---|---|"]
    for t in tgts:
        md.append(f"| {t[0]} | {t[1]} | {t[2]} |")
    md.append("")
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    # Hand-written history (optimisations and their measured effect) lives
    # next to the harness and is carried into every regeneration.
    history = os.path.join(ROOT, "tools/bench/BEFORE_AFTER.md")
    if os.path.exists(history):
        with open(history) as f:
            md += [f.read().rstrip(), ""]
    md += ["## Tools", "",
           "- `tools/loadgen` (C++): gRPC callback-API client (no thread per "
           "call) and a libcurl-multi HTTP client on one epoll loop with a "
           "timerfd; closed loop, open loop from intended send times, "
           "log-bucket histogram (≤ 1.6 % error), streaming TTFT/chunk gaps, "
           "`grpc_hold` for long-lived streams.",
           "- `tools/bench/echo_server` (C++): bare `echelon.v1.Gateway` on the "
           "gRPC callback API answering immediately.",
           "- nginx: minimal config written at run time (1 worker, keep-alive "
           "upstream pool, `proxy_buffering off`).",
           "- Portkey: `@portkey-ai/gateway@1.15.2` with `@hono/node-server` "
           "pinned to 1.13.5 (`tools/bench/portkey/package.json`), provider "
           "`openai` with `x-portkey-custom-host`.",
           f"- Raw loadgen output of this run: `{raw_path}` (not committed).", ""]
    # Sections other generators own (tools/bench/cluster_cost.py) survive.
    try:
        with open(path) as f:
            old = f.read()
        a = old.index("<!-- cluster-cost:begin -->")
        b = old.index("<!-- cluster-cost:end -->") + len("<!-- cluster-cost:end -->")
        md += [old[a:b], ""]
    except (OSError, ValueError):
        pass
    with open(path, "w") as f:
        f.write("\n".join(md))


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~2 minute run")
    ap.add_argument("--no-portkey", dest="portkey", action="store_false")
    ap.add_argument("--no-nginx", dest="nginx", action="store_false")
    ap.add_argument("--no-install", dest="install", action="store_false")
    ap.add_argument("--no-build", dest="build", action="store_false")
    ap.add_argument("--no-pin", action="store_true", help="do not use taskset")
    ap.add_argument("--output_base", default=os.environ.get("BAZEL_OUTPUT_BASE", ""))
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--label", default="", help="banner line in BENCHMARKS.md")
    ap.add_argument("--target", default="fast-pool")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--stream_rate", type=int, default=200)
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--hold", type=float, default=None)
    ap.add_argument("--only", default="", help="comma-separated rows to run")
    ap.add_argument("--cpu_trials", type=int, default=None,
                    help="interleaved closed-loop CPU rounds (default 3; 1 with --quick)")
    ap.add_argument("--cpu_trial_s", type=float, default=5)
    args = ap.parse_args()
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.hold is None:
        args.hold = 8 if args.quick else 30
    if args.cpu_trials is None:
        args.cpu_trials = 1 if args.quick else 3
    only = set(filter(None, args.only.split(",")))
    _STREAM_RATE[0] = args.stream_rate

    def want(name):
        return not only or name in only

    started = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")
    t0 = time.time()
    mach = machine()
    try:  # 10,000 streams need ~10,000 sockets in the gateway and simulator.
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    if args.install:
        install(args)
    bin_dir = build(args) if args.build else os.path.join(ROOT, "bazel-bin")
    tmp = tempfile.mkdtemp(prefix="echelon-bench-")
    bench = Bench(args, bin_dir, tmp)
    notes = []
    if bench.sut_cpus is None:
        pinning = "none"
    else:
        pinning = (f"system under test (gateway / echo / nginx / Portkey) on core "
                   f"{bench.sut_cpus}, upstream simulator on core {bench.sim_cpus}, "
                   f"loadgen on core {bench.client_cpus} (`taskset -c`)")
    try:
        sim = bench.start("sim", [os.path.join(bin_dir, "tools/upstream_sim/upstream_sim"),
                                  "--port=0", "--scenario=tokens=16"], cpus=bench.sim_cpus)
        sim_port = int(sim.wait_lines(["LISTENING "])["LISTENING "])
        sim_url = f"http://127.0.0.1:{sim_port}/v1"
        direct_extra = ["--target=sim-direct", "--headers=Authorization: Bearer sk-bench"]

        gw = bench.start("echelond", [
            os.path.join(bin_dir, "service/echelond"), "--config=configs/llms",
            "--grpc_address=127.0.0.1:0", "--http_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0", "--log_level=warning",
            "--watch_config=false"], env={"ECHELON_SIM_URL": sim_url},
            cpus=bench.sut_cpus)
        ports = gw.wait_lines(["LISTENING grpc ", "LISTENING http "])
        gw_grpc = f"127.0.0.1:{ports['LISTENING grpc ']}"
        gw_http = f"http://127.0.0.1:{ports['LISTENING http ']}/v1/chat/completions"

        # The same gateway with --sched_batch (see service/main.cc): a row of
        # its own, measured in the same run.
        gwb = bench.start("echelond-batch", [
            os.path.join(bin_dir, "service/echelond"), "--config=configs/llms",
            "--grpc_address=127.0.0.1:0", "--http_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0", "--log_level=warning",
            "--watch_config=false", "--sched_batch=true"],
            env={"ECHELON_SIM_URL": sim_url}, cpus=bench.sut_cpus)
        gwb_grpc = "127.0.0.1:" + gwb.wait_lines(["LISTENING grpc "])["LISTENING grpc "]

        echo = bench.start("echo", [os.path.join(bin_dir, "tools/bench/echo_server"),
                                    "--port=0", "--chunks=16"], cpus=bench.sut_cpus)
        echo_addr = "127.0.0.1:" + echo.wait_lines(["LISTENING grpc "])["LISTENING grpc "]

        if want("direct"):
            bench.run_system("direct", "http", f"{sim_url}/chat/completions",
                             lambda: [sim.pid], direct_extra)
        if want("echelon-grpc"):
            bench.run_system("echelon-grpc", "grpc", gw_grpc, lambda: [gw.pid])
        if want("echelon-grpc-batch"):
            bench.run_system("echelon-grpc-batch", "grpc", gwb_grpc, lambda: [gwb.pid])
        if want("echelon-http"):
            bench.run_system("echelon-http", "http", gw_http, lambda: [gw.pid],
                             [f"--target={args.target}"])
        gw_hwm = proc_status_kib(gw.pid, "VmHWM")
        if want("echo-grpc"):
            bench.run_system("echo-grpc", "grpc", echo_addr, lambda: [echo.pid])
        bench.cpu_trials([
            ("echelon-grpc", "grpc", gw_grpc, lambda: [gw.pid], None),
            ("echelon-grpc-batch", "grpc", gwb_grpc, lambda: [gwb.pid], None),
            ("echelon-http", "http", gw_http, lambda: [gw.pid], [f"--target={args.target}"]),
            ("echo-grpc", "grpc", echo_addr, lambda: [echo.pid], None)])
        gwb.stop()
        echo.stop()

        if args.nginx and want("nginx"):
            try:
                ngx, ngx_port = start_nginx(bench, sim_port)
                bench.run_system("nginx", "http",
                                 f"http://127.0.0.1:{ngx_port}/v1/chat/completions",
                                 lambda: [ngx.pid] + children(ngx.pid), direct_extra)
                ngx.stop()
            except Exception as e:  # noqa: BLE001 - reported in the table
                log(f"nginx: {e}")
                bench.results["nginx"] = {"error": str(e)[:200]}

        if args.portkey and want("portkey"):
            try:
                pk, pk_port = start_portkey(bench)
                pk_url = f"http://127.0.0.1:{pk_port}/v1/chat/completions"
                hdrs = {"Content-Type": "application/json",
                        "x-portkey-provider": "openai",
                        "x-portkey-custom-host": sim_url,
                        "Authorization": "Bearer sk-bench"}
                status, body = http_post(pk_url, json.dumps(
                    {"model": "sim-direct",
                     "messages": [{"role": "user", "content": "hi"}]}), hdrs)
                if status != 200 or "tok1" not in body:
                    raise RuntimeError(f"Portkey smoke call: HTTP {status} {body[:200]}")
                extra = ["--target=sim-direct", "--headers=" + "|".join(
                    f"{k}: {v}" for k, v in hdrs.items() if k != "Content-Type")]
                bench.run_system("portkey", "http", pk_url, lambda: [pk.pid], extra)
                pk.stop()
            except Exception as e:  # noqa: BLE001 - reported in the table
                log(f"portkey: {e}")
                bench.results["portkey"] = {"error": str(e)[:200]}

        if want("capacity") or not only:
            try:
                bench.capacity(gw_grpc, gw.pid, sim_port)
            except Exception as e:  # noqa: BLE001 - reported in the notes
                log(f"capacity: {e}")
                notes.append(f"capacity run failed: {e}")
        if "echelon-grpc" in bench.results:
            bench.results["echelon-grpc"]["vmhwm_kib"] = gw_hwm
            if "echelon-http" in bench.results:
                bench.results["echelon-http"]["vmhwm_kib"] = gw_hwm
        if gw.p.poll() is not None:
            notes.append(f"echelond exited during the run: {gw.tail()[-300:]}")
    finally:
        for p in reversed(bench.procs):
            p.stop()

    raw_path = os.path.join(tmp, "results.json")
    with open(raw_path, "w") as f:
        json.dump(bench.results, f, indent=1)
    try:  # the machine is shared: say how busy it was at the end, too
        mach += f", at end {' '.join(open('/proc/loadavg').read().split()[:3])}"
    except OSError:
        pass
    rows = build_rows(bench.results)
    tgts = targets(bench.results, args)
    print(table(rows))
    print()
    for t in tgts:
        print(f"{t[2]:>12}  {t[0]}: {t[1]}")
    print(f"\nraw results: {raw_path}")
    for name, r in bench.results.items():
        for phase in ("closed", "stream"):
            x = r.get(phase) if isinstance(r, dict) else None
            if x and x.get("first_error"):
                notes.append(f"{name} {phase}: {x.get('total_errors', 0)} errors, first: "
                             f"{x['first_error'][:160]}")
    write_markdown(args.out, args, bench.results, rows, tgts, mach, pinning, started,
                   time.time() - t0, notes, raw_path)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
