#!/usr/bin/env python3
"""The cost of sharing limits through Redis (issue 10). Stdlib only.

    tools/bench/cluster_cost.py [--duration 10] [--rates 500,2000]
                                [--no-write] [--out BENCHMARKS.md]

Starts the upstream simulator, a Redis server and echelond twice on the same
config (tools/bench/cluster/gateway.yaml: one echelon with an RPM/TPM limit
far above the load, so every request pays exactly one limit decision):
once without the `cluster:` section (the decision is in process) and once
with it (one Lua script in Redis per request). For each it measures with
tools/loadgen, open loop at fixed rates from intended send times, the
gateway's CPU per 1,000 requests (from /proc), Redis's CPU per 1,000
requests, and p50/p99 latency; prints a table and replaces the section
between the cluster-cost markers in BENCHMARKS.md.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402

BEGIN = "<!-- cluster-cost:begin -->"
END = "<!-- cluster-cost:end -->"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rates", default="500,2000")
    p.add_argument("--output_base", default="")
    p.add_argument("--out", default=os.path.join(rb.ROOT, "BENCHMARKS.md"))
    p.add_argument("--no-write", dest="write", action="store_false")
    p.add_argument("--no-pin", dest="no_pin", action="store_true")
    return p.parse_args()


def build(args):
    bazel = ["bazel"] + ([f"--output_base={args.output_base}"]
                         if args.output_base else [])
    targets = ["//service:echelond", "//tools/upstream_sim:upstream_sim",
               "//tools/loadgen:loadgen"]
    rb.log("bazel build -c opt " + " ".join(targets))
    if rb.sh(bazel + ["build", "-c", "opt"] + targets).returncode != 0:
        sys.exit("cluster_cost: build failed")
    return rb.sh(bazel + ["info", "-c", "opt", "bazel-bin"],
                 capture_output=True, text=True).stdout.strip()


def main():
    args = parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]
    bin_dir = build(args)
    tmp = tempfile.mkdtemp(prefix="echelon-cluster-bench-")
    bench_args = argparse.Namespace(no_pin=args.no_pin)
    bench = rb.Bench(bench_args, bin_dir, tmp)
    started = time.time()
    rows = []
    try:
        sim = bench.start("sim", [os.path.join(
            bin_dir, "tools/upstream_sim/upstream_sim"), "--port=0"],
            cpus=bench.sim_cpus)
        sim_port = int(sim.wait_lines(["LISTENING "])["LISTENING "])
        redis_port = rb.free_port()
        redis = bench.start("redis", [
            "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no"], cpus=bench.sim_cpus)
        rb.wait_port(redis_port, redis)
        for mode in ("in process", "Redis"):
            env = {
                "ECHELON_SIM_URL": f"http://127.0.0.1:{sim_port}/v1",
                "ECHELON_REDIS_ADDR": f"127.0.0.1:{redis_port}",
                "ECHELON_BENCH_CLUSTER":
                    "true" if mode == "Redis" else "false",
            }
            gw = bench.start(f"echelond-{mode.replace(' ', '-')}", [
                os.path.join(bin_dir, "service/echelond"),
                "--config=tools/bench/cluster/gateway.yaml",
                "--grpc_address=127.0.0.1:0", "--http_address=",
                "--metrics_address=", "--watch_config=false",
                "--log_level=warning"], env=env, cpus=bench.sut_cpus)
            port = gw.wait_lines(["LISTENING grpc "])["LISTENING grpc "]
            for rate in rates:
                rb.log(f"{mode}: open loop at {rate}/s")
                c_redis0 = rb.proc_cpu_s([redis.pid])
                res = bench.measured(lambda: [gw.pid], [
                    f"--address=127.0.0.1:{port}", "--target=limited",
                    f"--warmup_s={args.warmup}",
                    f"--duration_s={args.duration}", "--mode=grpc_unary",
                    f"--rate={rate}"])
                redis_cpu = rb.proc_cpu_s([redis.pid]) - c_redis0
                n = res.get("total_ok", 0)
                rows.append({
                    "mode": mode, "rate": rate, "ok": n,
                    "errors": res.get("total_errors", 0),
                    "gw_cpu_1k": res["cpu_s"] / n * 1000 if n else None,
                    "redis_cpu_1k": redis_cpu / n * 1000 if n else None,
                    "p50": res["lat_us"]["p50"], "p99": res["lat_us"]["p99"],
                })
            gw.stop()
    finally:
        for p in bench.procs:
            p.stop()
    elapsed = time.time() - started
    table = render(rows)
    print(table)
    if args.write:
        write(args.out, table, rates, args, bench, elapsed)


def render(rows):
    lines = ["| limit decided | rate/s | ok | errors | echelond CPU-s / 1k req "
             "| Redis CPU-s / 1k req | p50 µs | p99 µs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(v):
            return "–" if v is None else f"{v:.3f}"
        lines.append(
            f"| {r['mode']} | {r['rate']} | {r['ok']} | {r['errors']} | "
            f"{f(r['gw_cpu_1k'])} | "
            f"{f(r['redis_cpu_1k']) if r['mode'] == 'Redis' else '–'} | "
            f"{rb.fmt_us(r['p50'])} | {rb.fmt_us(r['p99'])} |")
    by = {(r["mode"], r["rate"]): r for r in rows}
    for rate in sorted({r["rate"] for r in rows}):
        a, b = by.get(("in process", rate)), by.get(("Redis", rate))
        if a and b and a["gw_cpu_1k"] and b["gw_cpu_1k"]:
            lines.append("")
            lines.append(
                f"At {rate}/s sharing adds {b['p50'] - a['p50']:+.0f} µs p50, "
                f"{b['p99'] - a['p99']:+.0f} µs p99 and "
                f"{b['gw_cpu_1k'] - a['gw_cpu_1k']:+.3f} CPU-s per 1k "
                f"requests in echelond (+{b['redis_cpu_1k'] or 0:.3f} in "
                f"Redis).")
    return "\n".join(lines)


def write(path, table, rates, args, bench, elapsed):
    load = os.getloadavg()
    body = "\n".join([
        BEGIN,
        "## The cost of sharing limits through Redis (issue 10)",
        "",
        "Command: `python3 tools/bench/cluster_cost.py` "
        f"(rates {','.join(map(str, rates))}/s, {args.duration:.0f} s "
        f"each after {args.warmup:.0f} s warm-up; {elapsed:.0f} s in all). "
        "One echelond, gRPC unary to a task group whose echelon has an "
        "RPM/TPM limit far above the load, so every request pays one limit "
        "decision: in process, or one `EVALSHA` in a local Redis 7.0 "
        "(decision budget 2 ms). Pinning: echelond on core "
        f"{bench.sut_cpus}, simulator and Redis on {bench.sim_cpus}, "
        f"loadgen on {bench.client_cpus}. Load average at the end: "
        f"{load[0]:.2f}.",
        "",
        table,
        END,
    ])
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        text = "# Benchmarks\n"
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + body + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    with open(path, "w") as f:
        f.write(text)
    rb.log(f"wrote {path}")


if __name__ == "__main__":
    main()
