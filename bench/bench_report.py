"""The load benchmark's report: per-proxy medians over rounds, the Sluice/Envoy ratios with
their PASS/FAIL against the targets, and the table ``run_bench.py`` prints."""

from __future__ import annotations

import argparse
import statistics

FOREIGN_WARN_CORES = 0.1
TARGET_CPU_RATIO = 1.5
TARGET_LATENCY_RATIO = 1.5


def median(values: list[float]) -> float:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else float("nan")


def fmt(v: float | None, spec: str) -> str:
    if v is None or v != v:
        return "n/a"
    return format(v, spec)


def report(summary: dict) -> str:
    s, e, d, r = summary["sluice"], summary["envoy"], summary["direct"], summary["ratios"]
    c = summary["connections"]
    rows = [
        (f"requests/s (c={c})", "rps", ",.0f"),
        (f"p50 latency ms (c={c})", "p50_ms", ".3f"),
        (f"p99 latency ms (c={c})", "p99_ms", ".3f"),
        (f"CPU us / request (c={c})", "cpu_us_per_req", ".1f"),
        ("  of which user (approx.)", "user_cpu_us_per_req", ".1f"),
        ("  of which system (approx.)", "sys_cpu_us_per_req", ".1f"),
        ("proxy CPU utilisation (cores)", "cpu_util", ".2f"),
        ("requests/s (c=1)", "c1_rps", ",.0f"),
        ("p50 latency ms (c=1)", "c1_p50_ms", ".3f"),
        ("p99 latency ms (c=1)", "c1_p99_ms", ".3f"),
        ("added p50 latency us (c=1)", "added_p50_us", ".1f"),
        ("CPU us / request (c=1)", "c1_cpu_us_per_req", ".1f"),
        ("same core: p50 latency ms (c=1)", "c1same_p50_ms", ".3f"),
        ("same core: added p50 us (c=1)", "added_same_p50_us", ".1f"),
        ("same core: CPU us / request (c=1)", "c1same_cpu_us_per_req", ".1f"),
        ("peak RSS MiB (VmHWM)", "vmhwm_mib", ".1f"),
        ("errors (sum over rounds)", "errors_total", "d"),
    ]
    w0 = max(len(x[0]) for x in rows) + 2
    lines = [f"{'metric':<{w0}}{'Sluice':>12}{'Envoy':>12}{'Sluice/Envoy':>14}"]
    lines.append("-" * len(lines[0]))
    for label, key, spec in rows:
        lines.append(f"{label:<{w0}}{fmt(s.get(key), spec):>12}{fmt(e.get(key), spec):>12}{fmt(r.get(key), '.2f'):>14}")
    lines.append("")
    lines.append(
        f"direct to upstream (no proxy): c=1 p50 {fmt(d.get('c1_p50_ms'), '.3f')} ms, "
        f"c=1 {fmt(d.get('c1_rps'), ',.0f')} req/s"
        + (f"; c={summary['connections']} {fmt(d.get('rps'), ',.0f')} req/s (ceiling of the load core)" if d.get("rps") is not None else "")
    )
    lines.append("")
    other = max(s["foreign_cores_max"], e["foreign_cores_max"])
    steal = max(s["steal_cores_max"], e["steal_cores_max"])
    lines.append(f"other processes' CPU during measurements: up to {other:.2f} cores; steal up to {steal:.2f} cores")
    if other > FOREIGN_WARN_CORES:
        lines.append(f"WARNING: other jobs used up to {other:.2f} cores while measuring: figures are skewed; rerun on a quiet machine")
    lines.append("")
    for t in summary["targets"]:
        lines.append(f"target {t['name']}: ratio {fmt(t['ratio'], '.2f')} <= {t['limit']}  ->  {'PASS' if t['pass'] else 'FAIL'}")
    return "\n".join(lines)


def summarize(rounds: list[dict], args: argparse.Namespace) -> dict:
    out: dict = {"connections": args.connections}
    direct_keys = ["c1_rps", "c1_p50_ms", "c1_p99_ms", "rps", "p50_ms", "p99_ms"]
    out["direct"] = {
        k: median([rd["direct"].get(k) for rd in rounds]) if any(k in rd["direct"] for rd in rounds) else None for k in direct_keys
    }
    keys = [
        "rps",
        "p50_ms",
        "p99_ms",
        "cpu_us_per_req",
        "user_cpu_us_per_req",
        "sys_cpu_us_per_req",
        "cpu_util",
        "c1_rps",
        "c1_p50_ms",
        "c1_p99_ms",
        "c1_cpu_us_per_req",
        "c1same_p50_ms",
        "c1same_cpu_us_per_req",
    ]
    for name in ("sluice", "envoy"):
        m = {k: median([rd[name].get(k) for rd in rounds]) for k in keys}
        # added latency is computed per round (same round's direct baseline), then the median
        m["added_p50_us"] = median([(rd[name]["c1_p50_ms"] - rd["direct"]["c1_p50_ms"]) * 1000 for rd in rounds])
        if all("c1same_p50_ms" in rd[name] for rd in rounds):
            m["added_same_p50_us"] = median([(rd[name]["c1same_p50_ms"] - rd["direct"]["c1_p50_ms"]) * 1000 for rd in rounds])
        hwm = [rd[name]["vmhwm_kb"] for rd in rounds if rd[name]["vmhwm_kb"] is not None]
        m["vmhwm_mib"] = max(hwm) / 1024 if hwm else None
        m["foreign_cores_max"] = max(max(rd[name]["foreign_cores"], rd[name]["c1_foreign_cores"]) for rd in rounds)
        m["steal_cores_max"] = max(max(rd[name]["steal_cores"], rd[name]["c1_steal_cores"]) for rd in rounds)
        m["errors_total"] = sum(rd[name]["errors"] + rd[name]["c1_errors"] + rd[name].get("c1same_errors", 0) for rd in rounds)
        out[name] = m
    ratios = {}
    for k in list(keys) + ["added_p50_us", "added_same_p50_us", "vmhwm_mib"]:
        a, b = out["sluice"].get(k), out["envoy"].get(k)
        ratios[k] = a / b if a is not None and b and b == b and a == a else None
    out["ratios"] = ratios
    cpu_r, lat_r = ratios["cpu_us_per_req"], ratios["added_p50_us"]
    out["targets"] = [
        {
            "name": "CPU time per proxied request (Sluice/Envoy)",
            "ratio": cpu_r,
            "limit": TARGET_CPU_RATIO,
            "pass": cpu_r is not None and cpu_r <= TARGET_CPU_RATIO,
        },
        {
            "name": "added p50 latency at 1 connection (Sluice/Envoy)",
            "ratio": lat_r,
            "limit": TARGET_LATENCY_RATIO,
            "pass": lat_r is not None and lat_r <= TARGET_LATENCY_RATIO,
        },
    ]
    return out
