#!/usr/bin/env python3
"""blockscope benchmark: one command, one table.

For every workload it prints the median wall time natively, under qemu-x86_64 (when
installed; the script installs nothing) and under blockscope in each requested tier, the
ratios to native and to QEMU, and peak RSS. Plugin overhead rows (`--plugins`) give each
shipped plugin's time relative to uninstrumented blockscope in the JIT tier, by wall time
and by CPU time (user+sys; steadier on a loaded machine), from interleaved runs.

Usage: bench/bench.py [--reps N] [--tiers interp,jit,auto] [--only NAME,...] [--plugins]
       [--quick]  (smaller inputs, for a smoke run)
Nothing here is a test: no time is asserted. Machines are noisy, so quote medians.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build_blockscope():
    sh(["cargo", "build", "--release", "--workspace", "-q"], cwd=ROOT)
    return os.path.join(ROOT, "target", "release", "blockscope")


def host_binary(name):
    """The real ELF program `name`, not a wrapper script: version managers (pyenv and
    the like) put shell shims first in PATH, and qemu-x86_64 would time the shim."""
    for d in ["/usr/bin", "/bin", "/usr/local/bin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            with open(p, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    return p
    p = shutil.which(name)
    if p:
        with open(p, "rb") as fh:
            if fh.read(4) == b"\x7fELF":
                return p
    return None


def build_workloads(quick):
    os.makedirs(OUT, exist_ok=True)
    src = os.path.join(ROOT, "bench", "src")
    progs = {}
    for f in sorted(os.listdir(src)):
        if f.endswith(".c"):
            name = f[:-2]
            exe = os.path.join(OUT, name)
            sh(["gcc", "-O2", "-o", exe, os.path.join(src, f)])
            progs[name] = exe
    small = {"hash": ["20"], "sort": ["200000"], "bytecode": ["3000"], "ptrchase": ["500000"]}
    wl = []
    for name, exe in progs.items():
        wl.append((name, [exe] + (small.get(name, []) if quick else []), None))
    data = os.path.join(OUT, "data32m.bin")
    size = (4 if quick else 32) << 20
    if not os.path.exists(data) or os.path.getsize(data) != size:
        # Compressible but not trivial: words from a fixed pseudo-random stream.
        import random
        rnd = random.Random(1234)
        words = [("%x" % rnd.getrandbits(rnd.randint(4, 40))).encode() for _ in range(5000)]
        with open(data, "wb") as fh:
            n = 0
            while n < size:
                chunk = b" ".join(rnd.choice(words) for _ in range(4096)) + b"\n"
                fh.write(chunk[: size - n])
                n += len(chunk[: size - n])
    gz = host_binary("gzip")
    xz = host_binary("xz")
    py = host_binary("python3")
    if gz:
        wl.append(("gzip -9", [gz, "-9", "-c", data], None))
    if xz:
        wl.append(("xz -6", [xz, "-6", "-c", "-T1", data], None))
    if py:
        loop = "s=0\nfor i in range(%d): s += i*i %% 7\nprint(s)" % (300000 if quick else 3000000)
        wl.append(("python3 loop", [py, "-c", loop], None))
        wl.append(("python3 -c pass", [py, "-c", "pass"], None))
    sq = host_binary("sqlite3")
    if sq:
        q = ("create table t(a integer, b text);"
             "with recursive c(x) as (select 1 union all select x+1 from c where x < %d) "
             "insert into t select x, hex(x*7919) from c;"
             "select count(*), sum(a), max(b) from t where a %% 3 = 1;" % (20000 if quick else 200000))
        wl.append(("sqlite3 query", [sq, ":memory:", q], None))
    return wl


def run_once(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pid, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    ok = os.waitstatus_to_exitcode(status) == 0
    return dt, ru.ru_maxrss, ok, err


def measure(cmd, reps):
    times, rss = [], 0
    for _ in range(reps):
        dt, m, ok, err = run_once(cmd)
        if not ok:
            return None, 0, err.strip().splitlines()[-1:] or ["failed"]
        times.append(dt)
        rss = max(rss, m)
    return statistics.median(times), rss, None


def fmt_t(t):
    return "-" if t is None else ("%.3fs" % t)


def fmt_r(a, b):
    return "-" if a is None or b is None else ("%.2fx" % (a / b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tiers", default="interp,jit,auto")
    ap.add_argument("--only", default="")
    ap.add_argument("--plugins", action="store_true")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    bs = build_blockscope()
    wl = build_workloads(a.quick)
    if a.only:
        keep = set(a.only.split(","))
        wl = [w for w in wl if w[0] in keep]
    qemu = shutil.which("qemu-x86_64")
    tiers = [t for t in a.tiers.split(",") if t]
    print("blockscope bench  %s  reps=%d  qemu=%s  cpu=%s" % (
        time.strftime("%Y-%m-%d"), a.reps, "yes" if qemu else "absent", cpu_name()))
    cols = ["workload", "native", "qemu"] + ["bs-" + t for t in tiers]
    cols += ["%s/native" % t for t in tiers] + (["%s/qemu" % t for t in tiers] if qemu else [])
    cols += ["rss(bs-%s)" % tiers[-1]]
    rows = []
    failures = []
    for name, cmd, _ in wl:
        nat, _, _ = measure(cmd, a.reps)
        q = measure([qemu] + cmd, a.reps)[0] if qemu else None
        res = {}
        rss = 0
        for t in tiers:
            m, r, err = measure([bs, "run", "--tier", t, "--"] + cmd, a.reps)
            res[t] = m
            rss = r
            if err:
                failures.append("%s (%s): %s" % (name, t, err[0]))
        row = [name, fmt_t(nat), fmt_t(q)] + [fmt_t(res[t]) for t in tiers]
        row += [fmt_r(res[t], nat) for t in tiers]
        if qemu:
            row += [fmt_r(res[t], q) for t in tiers]
        row += ["%d MB" % (rss // 1024)]
        rows.append(row)
        print_table(cols, rows[-1:], header=(len(rows) == 1))
    if a.plugins:
        plugin_rows(bs, wl, a.reps)
    for f in failures:
        print("failed:", f)


def run_cpu(cmd):
    """One run: (wall seconds, user+sys CPU seconds of the process and its threads, ok)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    return dt, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status) == 0


def plugin_rows(bs, wl, reps):
    """Overhead of each plugin over uninstrumented `--tier jit`. Each plugin run is paired
    with an uninstrumented run just before it, and a cell is the median over the reps of
    those pairs' ratios: load on a shared machine drifts over minutes, and a pair sees
    about the same load (medians of separate runs let a noisy minute land on one side).
    Two tables: wall time and CPU time (user+sys, all threads; steadier under load)."""
    plugins = ["count", "coverage", "profile", "memtrace"]
    cols = ["workload", "bs-jit"] + plugins
    wall_rows, cpu_rows = [], []
    # Outputs go to a directory removed at the end; the memtrace trace of a full-size
    # run is gigabytes, so it is deleted after every run (runs used to fill the disk).
    tmpdir = tempfile.TemporaryDirectory(prefix="bs-bench-")
    tmp = tmpdir.name
    specs = {
        "count": "count,out=%s/count.txt" % tmp,
        "coverage": "coverage",
        "profile": "profile,report=%s/profile.txt" % tmp,
        "memtrace": "memtrace,out=%s/memtrace.bin" % tmp,
    }
    trace = os.path.join(tmp, "memtrace.bin")
    for name, cmd, _ in wl:
        base = ([], [])
        ratios = {k: ([], []) for k in plugins}
        failed = set()
        for _ in range(reps):
            for k in plugins:
                pair = []
                for extra in ([], ["--plugin", specs[k]]):
                    wall, cpu, ok = run_cpu([bs, "run", "--tier", "jit"] + extra + ["--"] + cmd)
                    if os.path.exists(trace):
                        os.remove(trace)
                    if not ok:
                        failed.add(k if extra else None)
                    pair.append((wall, cpu))
                for i in (0, 1):
                    base[i].append(pair[0][i])
                    ratios[k][i].append(pair[1][i] / pair[0][i] if pair[0][i] > 0 else 0.0)
        for i, rows in ((0, wall_rows), (1, cpu_rows)):
            ok_base = None not in failed
            row = [name, fmt_t(statistics.median(base[i])) if ok_base else "-"]
            for p in plugins:
                if p in failed or not ok_base:
                    row.append("fail" if p in failed else "-")
                else:
                    row.append("%.2fx" % statistics.median(ratios[p][i]))
            rows.append(row)
    tmpdir.cleanup()
    for title, rows in (("wall time", wall_rows), ("CPU time", cpu_rows)):
        print()
        print("plugin overhead (%s, x uninstrumented blockscope --tier jit, median of paired"
              " ratios)" % title)
        print_table(cols, rows, header=True)


def print_table(cols, rows, header):
    widths = [max(16, len(c) + 2) if i == 0 else max(10, len(c) + 2) for i, c in enumerate(cols)]
    if header:
        print("".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("".join(str(c).ljust(w) for c, w in zip(r, widths)))
    sys.stdout.flush()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    main()
