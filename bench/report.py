"""The Markdown table of targets vs measured, from the JSON results (pure)."""

from __future__ import annotations

import math
from typing import Any

from bench.stats import fmt_spread


def _med(d: dict[str, Any], *keys: str) -> float:
    for key in keys:
        d = d[key]
    return float(d["median"]) if isinstance(d, dict) else float(d)


def _verdict(ok: bool, miss: str, why: str) -> str:
    return "met" if ok else f"missed by {miss}" + (f" — {why}" if why else "")


def best_rate(rates: dict[str, Any]) -> tuple[float, str]:
    """Highest median rate over the concurrency levels, and the level."""
    best, level = 0.0, "-"
    for c, point in rates.items():
        value = point["rate"]["median"] if point["rate"]["n"] else 0.0
        if not math.isnan(value) and value > best:
            best, level = value, c
    return best, level


def cpu_budget(rate: float, cpu: dict[str, float] | None, cores: int = 2) -> str:
    """What ``rate`` requests/s would leave the worker: the cores' CPU per request at that rate, minus
    what Postgres and the fake spent per request in this run (the CPU row). Empty without a CPU row."""
    if not cpu or rate <= 0:
        return ""
    per_request = cores / rate * 1000
    others = (cpu.get("postgres", 0.0) + cpu.get("fake", 0.0)) * 1000
    worker = cpu.get("kimiproxy_workers", 0.0) * 1000
    left = per_request - others
    room = f"{left:.1f} ms for the worker" if left > 0 else "nothing for the worker"
    return (
        f"at {rate:.0f}/s the {cores} cores give {per_request:.1f} ms of CPU per request; Postgres and the fake"
        f" alone use {others:.1f} ms of it (CPU row), leaving {room} (it uses {worker:.1f} ms) before the load"
        " generator's share"
    )


def _why(reason: str, budget: str) -> str:
    return "; ".join(part for part in (reason, budget) if part)


def rows(data: dict[str, Any], why: dict[str, str]) -> list[tuple[str, str, str, str]]:
    lat, gaps, rates = data["latency"], data["gaps"], data["rates"]
    out = []
    add50 = _med(lat, "kimiproxy", "p50") - _med(lat, "direct", "p50")
    add99 = _med(lat, "kimiproxy", "p99") - _med(lat, "direct", "p99")
    pt50 = _med(lat, "passthrough", "p50") - _med(lat, "direct", "p50")
    ms = lambda s: f"{s * 1000:.2f} ms"  # noqa: E731
    out.append(
        (
            "Non-stream added latency p50 (c=1)",
            "≤ 3 ms",
            ms(add50),
            _verdict(add50 <= 0.003, ms(add50 - 0.003), why.get("p50", "")),
        )
    )
    out.append(
        (
            "Non-stream added latency p99 (c=1)",
            "≤ 10 ms",
            ms(add99),
            _verdict(add99 <= 0.010, ms(add99 - 0.010), why.get("p99", "")),
        )
    )
    ratio = add50 / pt50 if pt50 > 0 else math.inf
    out.append(
        (
            "… vs pass-through's added p50",
            "≤ 2×",
            f"{ratio:.1f}× ({ms(pt50)} for pass-through)",
            _verdict(ratio <= 2, f"{ratio - 2:.1f}×", why.get("ratio", "")),
        )
    )
    ttfc = _med(lat, "kimiproxy", "ttfc_p50") - _med(lat, "direct", "ttfc_p50")
    out.append(
        (
            "Stream added time to first chunk p50",
            "≤ 3 ms",
            ms(ttfc),
            _verdict(ttfc <= 0.003, ms(ttfc - 0.003), why.get("ttfc", "")),
        )
    )
    gap = _med(gaps, "kimiproxy", "p99") - _med(gaps, "direct", "p99")
    batched = _med(gaps, "kimiproxy", "batched")
    out.append(
        (
            "Stream added gap between chunks p99 (20 ms pacing)",
            "≤ 1 ms, no batching",
            f"{ms(gap)}, {batched:.1%} batched",
            _verdict(gap <= 0.001 and batched < 0.01, ms(gap - 0.001), why.get("gap", "")),
        )
    )
    cpu = data.get("cpu_per_request")
    kp, kp_c = best_rate(rates["kimiproxy"])
    pt, pt_c = best_rate(rates["passthrough"])
    dr, dr_c = best_rate(rates["direct"])
    out.append(
        (
            "Requests/s with p99 added latency < 50 ms",
            "≥ 400/s",
            f"{kp:.0f}/s (c={kp_c}); direct {dr:.0f}/s (c={dr_c})",
            _verdict(kp >= 400, f"{400 - kp:.0f}/s", _why(why.get("rate", ""), cpu_budget(400, cpu))),
        )
    )
    share = kp / pt if pt else 0.0
    out.append(
        (
            "… vs pass-through's rate",
            "≥ 50%",
            f"{share:.0%} (pass-through {pt:.0f}/s, c={pt_c})",
            _verdict(share >= 0.5, f"{0.5 - share:.0%}", _why(why.get("share", ""), cpu_budget(pt / 2, cpu))),
        )
    )
    slow = data["slow_streams"]["kimiproxy"]
    kb = slow["per_stream_kb"]
    errs = slow["errors"] + slow["incomplete"]
    out.append(
        (
            f"{slow['streams']} open slow streams: RSS per stream",
            "≤ 100 KB, no errors",
            f"{kb:.0f} KB, {errs} errors",
            _verdict(
                kb <= 100 and errs == 0, f"{kb - 100:.0f} KB" if kb > 100 else f"{errs} errors", why.get("rss", "")
            ),
        )
    )
    if cpu:
        parts = ", ".join(f"{k.replace('_', ' ')} {v * 1000:.1f} ms" for k, v in cpu.items() if k != "requests")
        out.append(("CPU per kimiproxy request (sequential, non-stream)", "(reported)", parts, "—"))
    peak = data.get("peak_rss_kb", {}).get("kimiproxy", 0) / 1024
    out.append(("Peak RSS of all workers", "(reported)", f"{peak:.0f} MB", "—"))
    rt = data.get("round_trips")
    if rt:
        per = rt["per_request"]
        steps = per["transactions"] + per["autocommit"]
        out.append(
            (
                "Database steps per request (transactions + lone statements)",
                "≤ 4 (2 before upstream, 1 at chat id, 1 at end)",
                f"{steps:.1f} ({per['transactions']:.1f} tx + {per['autocommit']:.1f} lone); "
                f"{per['round_trips']:.1f} round trips"
                + (f" (+{per['connection_setup']:.2f} new-connection set-up)" if per.get("connection_setup") else ""),
                _verdict(steps <= 4, f"{steps - 4:.1f} steps", why.get("db", "")),
            )
        )
        calls = rt["upstream_calls_per_request"]
        text = ", ".join(f"{k} {v:.2f}" for k, v in sorted(calls.items()))
        extra = {k: v for k, v in calls.items() if k not in ("chat", "delete", "refresh")}
        exact = abs(calls.get("chat", 0) - 1) < 0.01 and abs(calls.get("delete", 0) - 1) < 0.01 and not extra
        out.append(
            (
                "Upstream calls per request (Connect)",
                "chat 1 + delete 1 (+ refresh when due)",
                text,
                _verdict(exact, "extra calls", why.get("calls", "")),
            )
        )
    return out


def markdown(data: dict[str, Any], why: dict[str, str] | None = None) -> str:
    lines = ["| Target | Goal | Measured (median of repeats) | Verdict |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(data, why or {})]
    lines += [
        "",
        "| c=1, fake without delay | non-stream p50 | non-stream p99 | stream first chunk p50 "
        "| gap p99 (20 ms pacing) |",
        "|---|---|---|---|---|",
    ]
    for name in ("direct", "passthrough", "kimiproxy"):
        lat, gap = data["latency"][name], data["gaps"][name]
        cells = [fmt_spread(lat["p50"]), fmt_spread(lat["p99"]), fmt_spread(lat["ttfc_p50"]), fmt_spread(gap["p99"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    levels = list(data["rates"]["kimiproxy"])
    lines += [
        "",
        "| Requests/s within 50 ms p99 (open loop) | " + " | ".join(f"c={c}" for c in levels) + " |",
        "|---" * (len(levels) + 1) + "|",
    ]
    for name in ("direct", "passthrough", "kimiproxy"):
        cells = [fmt_spread(data["rates"][name][c]["rate"], scale=1, unit="/s", digits=0) for c in levels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "agent" in data:
        from bench.agent import markdown as agent_markdown

        lines += ["", agent_markdown(data["agent"]).rstrip("\n")]
    if "native" in data:
        from bench.native_session import markdown as native_markdown

        lines += ["", native_markdown(data["native"]).rstrip("\n")]
    meta = data["meta"]
    lines += [
        "",
        f"Median (min–max) of {meta['repeats']} repeats; {meta['machine']}; "
        f"load generator busy at most {meta['loadgen_busy_max']:.0%} of one core.",
    ]
    return "\n".join(lines) + "\n"
