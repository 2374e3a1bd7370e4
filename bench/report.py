# SPDX-License-Identifier: MIT
"""bench/run.sh's report: RESULTS.md and the plots from the run's raw lines.

  report.py parse-real CONFIG FILE cpu_s=BEFORE cpu_s=AFTER
      one key=value line from redis-benchmark's CSV or wrk's text output
  report.py report --work DIR --out DIR
      DIR/raw.txt (one key=value line per measurement), meta.txt and the other
      workloads' files -> OUT/RESULTS.md and OUT/results/*.png

Every figure is a median over the rounds with its spread (min-max), and also
a ratio to the best peer of the same run ("direct", no proxy, is a ceiling,
not a peer). Used by bench/run.sh only.
"""
import math
import os
import re
import statistics
import sys

PEERS = ["direct", "socat", "nginx", "haproxy", "proxyd", "gatewayd"]
PROXIES = PEERS[1:]
NAMES = {"direct": "direct (no proxy)", "socat": "socat", "nginx": "nginx stream", "haproxy": "HAProxy",
         "proxyd": "systemd-socket-proxyd", "gatewayd": "gatewayd", "gatewayd-echo": "gatewayd echo route"}


def kv(text):
    return dict(f.split("=", 1) for f in text.split() if "=" in f)


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


# ---- parse-real ----------------------------------------------------------------

def wrk_time_us(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else math.nan


def wrk_bytes(text):
    m = re.match(r"([\d.]+)([KMG]?B)$", text)
    return float(m.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[m.group(2)] if m else math.nan


def fields(line):
    """The key=value words of a line, as a dict of strings."""
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def parse_real(config, path, before, after):
    text = open(path).read()
    before, after = fields(before), fields(after)
    cpu = num(after.get("cpu_s", "nan")) - num(before.get("cpu_s", "nan"))
    user = num(after.get("user_ticks", "nan")) - num(before.get("user_ticks", "nan"))
    system = num(after.get("system_ticks", "nan")) - num(before.get("system_ticks", "nan"))
    out = {}
    if config == "redis":
        rows = {}
        for line in text.splitlines():
            f = [x.strip('"') for x in line.split(",")]
            if len(f) >= 7 and f[0] in ("SET", "GET"):
                rows[f[0]] = f
        if len(rows) < 2:
            return "failed=1"
        # Each test made the same number of requests: the combined rate is
        # their count over the two tests' time.
        set_rps, get_rps = num(rows["SET"][1]), num(rows["GET"][1])
        out["rps"] = 2 / (1 / set_rps + 1 / get_rps)
        out["set_rps"], out["get_rps"] = set_rps, get_rps
        out["p50_us"] = max(num(rows["SET"][4]), num(rows["GET"][4])) * 1e3
        out["p99_us"] = max(num(rows["SET"][6]), num(rows["GET"][6])) * 1e3
        out["messages"] = math.nan
    else:
        m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+\w+) read", text)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
        if not m or not rps:
            return "failed=1"
        out["messages"] = int(m.group(1))
        out["rps"] = num(rps.group(1))
        out["mbps"] = wrk_bytes(re.search(r"Transfer/sec:\s+(\S+)", text).group(1)) / 1e6
        for q, key in (("50", "p50_us"), ("99", "p99_us")):
            lat = re.search(r"^\s+%s%%\s+(\S+)" % q, text, re.M)
            out[key] = wrk_time_us(lat.group(1)) if lat else math.nan
        err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        out["failures"] = (sum(map(int, err.groups())) if err else 0) + (int(non2xx.group(1)) if non2xx else 0)
    out["cpu_s"] = cpu
    out["user_share"] = user / (user + system) if user + system > 0 else math.nan
    return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items())


# ---- the report ------------------------------------------------------------------

class Runs:
    """Raw measurements grouped by (workload, config, peer)."""

    def __init__(self, path):
        self.rows = {}
        for line in open(path):
            r = kv(line)
            if "workload" in r:
                self.rows.setdefault((r["workload"], r["config"], r["peer"]), []).append(r)

    def configs(self, workload):
        seen = []
        for w, c, _ in self.rows:
            if w == workload and c not in seen:
                seen.append(c)
        return seen

    def values(self, workload, config, peer, metric):
        out = []
        for r in self.rows.get((workload, config, peer), []):
            v = metric(r) if callable(metric) else num(r.get(metric))
            if v is not None and not math.isnan(v):
                out.append(v)
        return out

    def median(self, workload, config, peer, metric):
        v = self.values(workload, config, peer, metric)
        return statistics.median(v) if v else math.nan


def fmt(v, digits=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def spread(vals):
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"


def best_of(medians, higher):
    vals = [v for p, v in medians.items() if p in PROXIES and not math.isnan(v)]
    if not vals:
        return math.nan
    return max(vals) if higher else min(vals)


def div(a, b):
    return a / b if b and not math.isnan(b) else math.nan


def ratio(v, best):
    return "–" if math.isnan(v) or math.isnan(best) or best == 0 else f"{v / best:.2f}"


def cpu_per(r, unit_key, scale):
    cpu, units = num(r.get("cpu_s")), num(r.get(unit_key))
    return cpu / units * scale if units and not math.isnan(cpu) else math.nan


def kernel_per(r, unit_key, scale):
    """The part of cpu_per spent in the kernel (system time), by the ticks' split."""
    return cpu_per(r, unit_key, scale) * (1 - num(r.get("user_share")))


def unit_key(workload, config):
    """The raw field that counts the units CPU time is divided by."""
    return "bytes" if workload == "stream" else "rps_requests" if config == "redis" else "messages"


def cpu_metrics(workload, config):
    """The CPU columns: all of it per unit, and the kernel's part."""
    key = unit_key(workload, config)
    unit, scale = ("s per GB", 1e9) if workload == "stream" else (
        ("µs/conn", 1e6) if workload == "churn" else ("µs/req", 1e6))
    return [(f"CPU {unit}", lambda r: cpu_per(r, key, scale), False),
            (f"kernel {unit}", lambda r: kernel_per(r, key, scale), False)]


def metrics_for(workload, config):
    """(label, metric, higher_is_better) columns of one workload's table."""
    if workload == "stream":
        return [("MB/s", "mbps", True)] + cpu_metrics(workload, config)
    if workload in ("pingpong", "churn"):
        unit = "req" if workload == "pingpong" else "conn"
        return [(f"{unit}/s", "rps", True), ("p50 µs", "p50_us", False), ("p99 µs", "p99_us", False),
                ("p99.9 µs", "p999_us", False)] + cpu_metrics(workload, config) + (
                    [("failures", "failures", False)] if workload == "churn" else [])
    if workload == "real":
        cols = [("req/s", "rps", True), ("p50 µs", "p50_us", False), ("p99 µs", "p99_us", False)]
        if config == "http_1m":
            cols.append(("MB/s", "mbps", True))
        return cols + cpu_metrics(workload, config)
    if workload == "idle":
        return [("clients", "established", True), ("RSS after KiB", "after_rss_kb", False),
                ("B/client (RSS)", lambda r: idle_per(r, "rss_kb"), False),
                ("B/client (PSS)", lambda r: idle_per(r, "pss_kb"), False)]
    return []


def idle_per(r, key):
    n = num(r.get("established"))
    d = num(r.get("after_" + key)) - num(r.get("before_" + key))
    return d * 1024 / n if n else math.nan


def table(runs, workload, config, peers):
    cols = metrics_for(workload, config)
    head = "| peer | " + " | ".join(f"{c[0]} | ×best" for c in cols) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(cols)]
    meds = {c[0]: {p: runs.median(workload, config, p, c[1]) for p in peers} for c in cols}
    for p in peers:
        if (workload, config, p) not in runs.rows:
            continue
        cells = []
        for label, metric, higher in cols:
            cells.append(spread(runs.values(workload, config, p, metric)))
            cells.append(ratio(meds[label][p], best_of(meds[label], higher)))
        lines.append(f"| {NAMES.get(p, p)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


CONFIG_TEXT = {
    "stream": lambda c: f"{c[1:]} client(s) writing 64 KiB writes to a sink",
    "pingpong": lambda c: "{} client(s), {} B messages, closed loop, to an echo backend".format(*c[1:].split("_s")),
    "churn": lambda c: f"{c[1:]} clients, each: connect, 64 B request, echo, close",
    "idle": lambda c: f"up to {c[1:]} idle clients, each with one 1-byte echo done (so with its backend connection)",
    "real": lambda c: {"redis": "redis-benchmark -c 50 -t set,get to redis-server",
                       "http_1k": "wrk -t1 -c50 GET of a 1 KiB file from nginx http",
                       "http_1m": "wrk -t1 -c50 GET of a 1 MiB file from nginx http"}[c],
}
TITLES = {"stream": "1. Stream", "pingpong": "2. Ping-pong", "churn": "3. Churn", "idle": "4. Idle connections",
          "real": "5. Real clients"}


class Missing(dict):
    """Meta fields a partial run did not write show as "?"."""

    def __missing__(self, key):
        return "?"


def read_meta(path):
    meta = {}
    for line in open(path):
        if ": " in line:
            k, v = line.rstrip("\n").split(": ", 1)
            meta[k] = v
    return meta


def target_lines(runs, footprint):
    out = []

    def med(w, c, p, m):
        return runs.median(w, c, p, m)

    def verdict(ok, text, bound=""):
        out.append(f"| {'met' if ok else '**missed**'} | {text} | {'' if ok else bound} |")

    def overlap(w, c, metric, best_peer):
        """Whether gatewayd's runs and the best other peer's overlap: the
        medians then differ by less than the run-to-run spread."""
        g, b = runs.values(w, c, "gatewayd", metric), runs.values(w, c, best_peer, metric)
        if not g or not b:
            return ""
        level = max(min(g), min(b)) <= min(max(g), max(b))
        return (f"{'level within the spread' if level else 'outside the spread'}: gatewayd {fmt(min(g))}–{fmt(max(g))}, "
                f"{NAMES[best_peer]} {fmt(min(b))}–{fmt(max(b))}")

    for c in runs.configs("stream"):
        g, s, d = (med("stream", c, p, "mbps") for p in ("gatewayd", "proxyd", "direct"))
        if not any(math.isnan(x) for x in (g, s, d)):
            verdict(g >= 1.15 * s, f"stream {c}: gatewayd {g:,.0f} MB/s = {div(g, s):.2f}× systemd-socket-proxyd (target ≥ 1.15×)",
                    f"the ceiling: direct, with no proxy, moves {d:,.0f} MB/s = {div(d, s):.2f}× systemd-socket-proxyd;"
                    f" gatewayd is at {div(g, d):.0%} of it, and both proxies splice (no copy to user space)")
            verdict(g >= 0.75 * d, f"stream {c}: gatewayd = {div(g, d):.0%} of direct (target ≥ 75 %)")
    for w in ("pingpong", "real"):
        for c in runs.configs(w):
            cpu_metric, kernel_metric = (m for _, m, _ in cpu_metrics(w, c))
            cpu = {p: med(w, c, p, cpu_metric) for p in PROXIES}
            rps = {p: med(w, c, p, "rps") for p in PROXIES}
            p99 = {p: med(w, c, p, "p99_us") for p in PROXIES}
            g, g_kernel = cpu["gatewayd"], med(w, c, "gatewayd", kernel_metric)
            if math.isnan(g):
                continue
            others = {p: v for p, v in cpu.items() if p != "gatewayd" and not math.isnan(v) and v > 0}

            def kernel_bound(against):
                return (f"gatewayd's kernel time alone is {g_kernel:.2f} µs/req = {div(g_kernel, against):.2f}× that;"
                        f" its user space {g - g_kernel:.2f} µs/req ({div(g - g_kernel, g):.0%})")
            if others:
                least = min(others, key=others.get)
                verdict(g <= others[least], f"{w} {c}: gatewayd CPU {g:.2f} µs/req = {div(g, others[least]):.2f}× the least"
                        f" of the other peers ({NAMES[least]}, {others[least]:.2f}; target: least of all)",
                        overlap(w, c, cpu_metric, least))
            nh = {p: v for p, v in others.items() if p in ("nginx", "haproxy")}
            if nh:
                best_nh = min(nh.values())
                verdict(g <= 0.8 * best_nh, f"{w} {c}: gatewayd CPU/req = {div(g, best_nh):.2f}× the best of nginx and HAProxy (target ≤ 0.8×)",
                        kernel_bound(best_nh))
            rps_others = {p: v for p, v in rps.items() if p != "gatewayd" and not math.isnan(v)}
            p99_others = {p: v for p, v in p99.items() if p != "gatewayd" and not math.isnan(v)}
            if rps_others:
                top = max(rps_others, key=rps_others.get)
                verdict(rps["gatewayd"] >= rps_others[top], f"{w} {c}: gatewayd req/s = {div(rps['gatewayd'], rps_others[top]):.2f}× the best other peer (target: most)",
                        overlap(w, c, "rps", top))
            if p99_others:
                low = min(p99_others, key=p99_others.get)
                verdict(p99["gatewayd"] <= p99_others[low], f"{w} {c}: gatewayd p99 = {div(p99['gatewayd'], p99_others[low]):.2f}× the lowest other peer's (target: lowest)",
                        overlap(w, c, "p99_us", low))
    for c in runs.configs("churn"):
        rps = {p: med("churn", c, p, "rps") for p in PROXIES}
        others = {p: v for p, v in rps.items() if p != "gatewayd" and not math.isnan(v)}
        if not math.isnan(rps["gatewayd"]) and others:
            top = max(others, key=others.get)
            cpu_metric, kernel_metric = (m for _, m, _ in cpu_metrics("churn", c))
            g_cpu, g_kernel, top_cpu = (med("churn", c, p, m) for p, m in
                                        (("gatewayd", cpu_metric), ("gatewayd", kernel_metric), (top, cpu_metric)))
            verdict(rps["gatewayd"] >= 1.2 * others[top],
                    f"churn: gatewayd {rps['gatewayd']:,.0f} conn/s = {div(rps['gatewayd'], others[top]):.2f}× the best other peer (target ≥ 1.2×)",
                    f"CPU per connection: gatewayd {g_cpu:.1f} µs, {NAMES[top]} {top_cpu:.1f} µs; gatewayd's kernel time alone"
                    f" {g_kernel:.1f} µs = {div(g_kernel, top_cpu):.2f}× {NAMES[top]}'s whole; direct: {med('churn', c, 'direct', 'rps'):,.0f} conn/s")
    for c in runs.configs("idle"):
        for p, limit in (("gatewayd", 512), ("gatewayd-echo", 256)):
            v = med("idle", c, p, lambda r: idle_per(r, "rss_kb"))
            if not math.isnan(v):
                verdict(v <= limit, f"idle {c}: {NAMES[p]} {v:.0f} B per client (RSS; target ≤ {limit} B)")
    sections = footprint.get("sections_arm64", "")
    size_bound = f"what the stripped arm64 files hold (KiB): {sections.replace('_', ' ')}" if sections else ""
    deb_arm = footprint.get("deb_elf_arm64", "")
    if deb_arm.isdigit():
        verdict(int(deb_arm) <= 256 * 1024, f"footprint: arm64 packages gateway + libgateway0, their ELF files (stripped) {int(deb_arm) / 1024:.0f} KiB (target ≤ 256 KiB)",
                size_bound)
    arm = footprint.get("size_arm64")
    if arm is not None and not deb_arm.isdigit():
        if arm.isdigit():
            verdict(int(arm) <= 256 * 1024, f"footprint: arm64 gatewayd + libgateway.so.0 stripped {int(arm) / 1024:.0f} KiB (target ≤ 256 KiB)",
                    size_bound)
        else:
            out.append(f"| not measured | arm64 footprint: {arm.replace('_', ' ')} | |")
    idle_rss = footprint.get("idle_rss_kb")
    if idle_rss:
        verdict(int(idle_rss) <= 1024, f"footprint: idle gatewayd {int(idle_rss)} KiB resident (target ≤ 1024 KiB)",
                f"the floor: `sleep`, linked with libc alone, holds {footprint.get('floor_rss_kb', '?')} KiB resident,"
                f" a C++ program doing nothing {footprint.get('floor_cxx_rss_kb', '?')} KiB; gatewayd"
                f" {cxx_over(footprint)} KiB above that, of which {footprint.get('idle_anon_kb', '?')} KiB its own"
                f" (anonymous) memory; {footprint.get('idle_pss_kb', '?')} KiB PSS; what no other process shares"
                f" (USS) {footprint.get('idle_private_kb', '?')} KiB")
    return out


def cxx_over(f):
    """How much more than a do-nothing C++ program idle gatewayd holds, in KiB."""
    a, b = num(f.get("idle_rss_kb")), num(f.get("floor_cxx_rss_kb"))
    return "?" if math.isnan(a) or math.isnan(b) else f"{a - b:.0f}"


def read_footprint(path):
    f = {}
    if not os.path.exists(path):
        return f
    acts = []
    for line in open(path):
        if line.startswith("idle_gatewayd "):
            r = kv(line)
            f["idle_rss_kb"], f["idle_pss_kb"] = r.get("rss_kb"), r.get("pss_kb")
            f["idle_anon_kb"], f["idle_file_kb"] = r.get("anon_kb", "?"), r.get("file_kb", "?")
            f["idle_private_kb"] = r.get("private_kb", "?")
        elif line.startswith("idle_floor "):
            r = kv(line)
            f["floor_rss_kb"], f["floor_anon_kb"] = r.get("rss_kb"), r.get("anon_kb", "?")
        elif line.startswith("idle_floor_cxx "):
            r = kv(line)
            f["floor_cxx_rss_kb"], f["floor_cxx_anon_kb"] = r.get("rss_kb"), r.get("anon_kb", "?")
        elif line.startswith("activation "):
            acts.append(num(kv(line).get("first_byte_ms")))
        elif "=" in line:
            k, v = line.strip().split("=", 1)
            f[k] = v
    f["activation"] = [a for a in acts if not math.isnan(a)]
    return f


def footprint_section(f):
    def size(k):
        v = f.get(k, "")
        return f"{int(v) / 1024:,.0f} KiB" if v.isdigit() else v.replace("_", " ")
    lines = ["| what | size |", "|---|---:|"]
    for arch in ("amd64", "arm64", "armhf"):
        built = f" (build of {f['built_' + arch].replace('_', ' ')})" if f.get("built_" + arch) and arch != "amd64" else ""
        lines.append(f"| gatewayd + libgateway.so.0, stripped, {arch}{built} | {size('size_' + arch)} |")
    for arch in ("amd64", "arm64", "armhf"):
        if f.get("deb_elf_" + arch, "").isdigit():
            lines.append(f"| packages gateway + libgateway0 {arch} ({f.get('deb_built_' + arch, '').replace('_', ' ')}): ELF files, stripped | {size('deb_elf_' + arch)} |")
            lines.append(f"| packages gateway + libgateway0 {arch}: Installed-Size (units, man pages, config too) | {f.get('deb_installed_kib_' + arch)} KiB |")
    for pkg in ("socat", "nginx", "nginx-light", "libnginx-mod-stream", "nginx-common", "haproxy", "systemd", "ser2net"):
        lines.append(f"| Debian package {pkg}, installed | {f.get('installed_kib_' + pkg, '–')} KiB |")
    if f.get("file_bytes_proxyd", "").isdigit():
        lines.append(f"| /lib/systemd/systemd-socket-proxyd alone (needs libsystemd-shared) | {int(f['file_bytes_proxyd']) / 1024:,.0f} KiB |")
    lines.append("")
    if f.get("idle_rss_kb"):
        lines.append(f"Idle gatewayd (one echo route, no client): {f['idle_rss_kb']} KiB resident (VmRSS: {f['idle_anon_kb']} KiB"
                     f" anonymous, {f['idle_file_kb']} KiB of mapped files, mostly shared libraries), {f['idle_pss_kb']} KiB PSS,"
                     f" {f.get('idle_private_kb', '?')} KiB in pages no other process maps (USS: what running it costs"
                     f" a board whose other programs use libc and libstdc++ too).")
    if f.get("floor_rss_kb"):
        lines.append(f"The floor on this machine: `sleep`, linked with libc alone, holds {f['floor_rss_kb']} KiB resident"
                     f" ({f['floor_anon_kb']} KiB anonymous): the libc and loader pages that any dynamically linked program maps.")
    if f.get("floor_cxx_rss_kb"):
        lines.append(f"A C++ program that does nothing, linked with libstdc++ (and so libm and libgcc_s) as gatewayd is,"
                     f" holds {f['floor_cxx_rss_kb']} KiB resident ({f['floor_cxx_anon_kb']} KiB anonymous).")
    a = f.get("activation") or []
    if a:
        lines.append(f"Socket activation (systemd-socket-activate starting gatewayd), first connect to first echoed byte: "
                     f"median {statistics.median(a):.1f} ms ({min(a):.1f}–{max(a):.1f} ms, {len(a)} starts).")
    return "\n".join(lines)


SYSCALL_WORK = {"pingpong": ("request", "ping-pong, 64 clients × 64 B"), "churn": ("connection", "churn, 16 clients")}


def syscalls_section(path):
    """System calls per request (ping-pong) and per connection (churn), by name, for each peer."""
    rows = [kv(line) for line in open(path) if line.startswith("workload=")]
    out = ["Counted by the kernel's syscall tracepoints (`perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_NAME -p PIDS`,",
           "no ptrace) over the middle 60 % of a loadgen run, for all of a peer's processes, divided by the requests or",
           "connections carried in that window (loadgen's rate × the window). \"all\" counts every system call, also those",
           "not named in the columns. Unlike CPU time, these counts hardly vary from run to run.", ""]
    for work, (unit, title) in SYSCALL_WORK.items():
        mine = [r for r in rows if r.get("workload") == work and num(r.get("rate")) > 0]
        if not mine:
            continue
        names = [k for k in mine[0] if k not in ("workload", "peer", "window_s", "rate", "all")]
        names = [n for n in names if any(num(r.get(n)) > 0 for r in mine)]
        out += [f"**{title}: system calls per {unit}**", "",
                "| peer | all | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
        for r in mine:
            carried = num(r["rate"]) * num(r["window_s"])
            cells = [f"{num(r.get(n)) / carried:.2f}" for n in ["all"] + names]
            out.append(f"| {NAMES.get(r['peer'], r['peer'])} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plots(runs, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []

    def bars(ax, workload, configs, metric, title, log=False):
        peers = [p for p in PEERS if any(runs.values(workload, c, p, metric) for c in configs)]
        width = 0.8 / max(len(peers), 1)
        for i, p in enumerate(peers):
            meds, lo, hi = [], [], []
            for c in configs:
                v = runs.values(workload, c, p, metric)
                m = statistics.median(v) if v else 0
                meds.append(m)
                lo.append(m - min(v) if v else 0)
                hi.append(max(v) - m if v else 0)
            xs = [j + i * width for j in range(len(configs))]
            ax.bar(xs, meds, width, yerr=[lo, hi], label=NAMES[p], capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(configs))])
        ax.set_xticklabels(configs, fontsize=8)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")

    def figure(name, panels):
        panels = [p for p in panels if runs.configs(p[0])]
        if not panels:
            return
        fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
        for ax, (w, metric, title, log) in zip(axes[:, 0], panels):
            bars(ax, w, runs.configs(w), metric, title, log)
        axes[0, 0].legend(fontsize=7, ncol=3)
        fig.tight_layout()
        path = os.path.join(outdir, name)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        made.append(name)

    # The same CPU per unit as the tables (cpu_metrics: the unit follows the workload).
    cpu = lambda r: cpu_metrics(r["workload"], r["config"])[0][1](r)
    figure("throughput.png", [("stream", "mbps", "stream: MB/s (higher is better)", False),
                              ("pingpong", "rps", "ping-pong: requests/s (higher is better)", False),
                              ("real", "rps", "real clients: requests/s (higher is better)", False)])
    figure("latency.png", [("pingpong", "p99_us", "ping-pong: p99 latency µs (lower is better)", True),
                           ("real", "p99_us", "real clients: p99 latency µs (lower is better)", True)])
    figure("cpu.png", [("pingpong", cpu, "ping-pong: proxy CPU µs per request (lower is better)", False),
                       ("real", cpu, "real clients: proxy CPU µs per request (lower is better)", True),
                       ("stream", cpu, "stream: proxy CPU s per GB (lower is better)", False)])
    return made


def report(work, out):
    meta = read_meta(os.path.join(work, "meta.txt"))
    runs = Runs(os.path.join(work, "raw.txt"))
    for rows in runs.rows.values():  # redis-benchmark gives rates, not counts: its requests are 2 x -n
        for r in rows:
            if r["workload"] == "real" and r["config"] == "redis":
                r["rps_requests"] = str(2 * int(meta.get("redis_requests", "0") or 0))
    results = os.path.join(out, "results")
    os.makedirs(results, exist_ok=True)
    footprint = read_footprint(os.path.join(work, "footprint.txt"))
    md = [HEADER.format_map(Missing(meta)), ""]
    for w in ("stream", "pingpong", "churn", "idle", "real"):
        configs = runs.configs(w)
        if not configs:
            continue
        md += [f"## {TITLES[w]}", "", INTRO[w], ""]
        for c in configs:
            peers = PEERS + (["gatewayd-echo"] if w == "idle" else [])
            md += [f"**{CONFIG_TEXT[w](c)}** (`{c}`)", "", table(runs, w, c, peers), ""]
    serial = os.path.join(work, "serial.txt")
    if os.path.exists(serial):
        cmd = open(os.path.join(work, "serial.cmd")).read().strip()
        md += ["## 6. Serial: gatewayd against ser2net on a pty", "", f"`{cmd}` (its own report, unchanged):", "",
               "```", open(serial).read().rstrip(), "```", ""]
    if os.path.exists(os.path.join(work, "footprint.txt")):
        md += ["## 7. Footprint and start-up", "", footprint_section(footprint), ""]
    sysc = os.path.join(work, "syscalls.txt")
    if os.path.exists(sysc):
        md += ["## System calls per request and per connection", "", syscalls_section(sysc), ""]
    prof = os.path.join(work, "profile.txt")
    if os.path.exists(prof):
        md += ["## perf profile: gatewayd in ping-pong, 64 clients × 64 B", "",
               "`perf record -e cpu-clock -g -p PID`, then `perf report --no-children --sort dso,symbol`: the top 15 symbols, and the time by object.", "",
               "```", open(prof).read().rstrip(), "```", ""]
    targets = target_lines(runs, footprint)
    if targets:
        md += ["## Targets", "", "Medians of this run; \"another peer\" excludes direct.", "",
               "| verdict | target and figure | where missed: what bounds it |", "|---|---|---|"] + targets + [""]
    made = plots(runs, results)
    if made:
        md += ["## Plots", ""] + [f"![{m}](results/{m})" for m in made] + [""]
    md += ["## Configurations", "", "Each peer forwards `127.0.0.1:LISTEN` to `127.0.0.1:BACKEND`; WORK is the run's temporary directory.", ""]
    for p in PROXIES:
        md.append(f"- {NAMES[p]}: `{meta.get('peer_command_' + p, '?')}`")
    md.append("")
    for name in ("nginx.conf", "haproxy.cfg", "gateway.conf"):
        path = os.path.join(work, "configs", name)
        if os.path.exists(path):
            md += [f"`{name}`:", "", "```", open(path).read().rstrip(), "```", ""]
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(md))


HEADER = """# Benchmark results

Written by `bench/run.sh` (see bench/README.md); do not edit by hand.

- **date**: {date}; **command**: `{command}`; {rounds} round(s), {seconds} s per measurement after {warmup} s of warm-up; {elapsed_s} s in all
- **machine**: {cpu}; {kernel}; {os}
- **network**: {network}
- **load average** (1, 5, 15 min): before {load_before}, after {load_after}
- **peers**: gatewayd {gatewayd}; socat {socat}; nginx {nginx}; HAProxy {haproxy}; {systemd-socket-proxyd}
- **clients and backends**: loadgen ({loadgen}); {redis}; ser2net {ser2net}

Each cell: the median over the rounds and, in brackets, the lowest and highest
run; "×best" is the median divided by the best proxy's median in the same run
(1.00 is the best; direct, no proxy, is a ceiling and not counted as a peer).
CPU is the time on CPU of all the proxy's processes over the measured
interval (live threads: /proc/PID/task/TID/schedstat; reaped children and
zombies: /proc/PID/stat ticks), divided by the requests, bytes or
connections carried. The machine is shared
(2 cores for the load generator, the backend and the proxy): read the
ratios, not the absolute figures."""

INTRO = {
    "stream": "loadgen stream: each client writes 64 KiB as fast as it can to loadgen's sink backend through the peer.",
    "pingpong": "loadgen pingpong: each client sends its next message once the previous echo is whole (closed loop); "
                "latency from the send to the last byte of the echo, log buckets (3 %).",
    "churn": "loadgen churn: each client connects, sends 64 B, reads the echo, closes and starts again; latency from connect "
             "to the whole echo. Failures: connects refused or reset, connections that ended early.",
    "idle": "loadgen idle: clients connected 128 at a time, each with one 1-byte echo done, then held; the peer's "
            "resident memory (sum of VmRSS, and of Pss, of all its processes) before and after, per client. socat "
            "forks a process per connection, so it gets at most 1,000 clients. gatewayd echo route: clients of an "
            "echo route (no backend connection). Where the fd limit cannot be raised, a proxy takes the clients that fit: "
            "systemd-socket-proxyd holds two pipes per connection besides its two sockets. User-space memory only: the "
            "kernel's socket buffers are not in RSS.",
    "real": "Real clients through each peer: redis-benchmark to redis-server (save and appendonly off), and wrk to a "
            "separate nginx http instance (sendfile, access log off, 1 worker). redis p50/p99: the higher of SET's "
            "and GET's.",
}


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "parse-real":
        print(parse_real(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
    elif len(sys.argv) == 6 and sys.argv[1] == "report" and sys.argv[2] == "--work" and sys.argv[4] == "--out":
        report(sys.argv[3], sys.argv[5])
    else:
        sys.exit(__doc__)
