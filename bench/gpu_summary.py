"""Collect what bench/gpu_check.sh measured into summary.json and summary.txt, and print the table.

    python bench/gpu_summary.py --stages WORK/stages.tsv --logs WORK/logs --out RESULTS [--dry 0|1] [--elapsed S]

Reads each stage's exit status and time (stages.tsv) and the `RESULT {json}` lines of the stage logs
(the drivers print them), plus what only a log says: the doctor's kernel rows, pytest's counts, the
official per-tick lines (if a run was cut off before its RESULT line).
"""

from __future__ import annotations

import argparse
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

V100_OFFICIAL_PAPER256 = 21.6  # s/kimg, official README, 256x256 on one V100 (--cfg auto, default settings)
GOAL_RATIO = 1.5  # gancli at least 1.5x the official speed at identical settings
GOAL_PAPER256_H200 = 1.5  # s/kimg, gancli paper256 on an H200


def read_stages(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 5:
                rows.append({"stage": parts[0], "exit": parts[1], "seconds": _num(parts[2]), "limit": _num(parts[3]),
                             "status": parts[4]})
    return rows


def _num(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


RUN: set[str] | None = None  # the stages of this call (stages.tsv); logs of other stages are older: not read


def results(logs: Path, name: str) -> list[dict]:
    path = logs / f"{name}.log"
    if RUN is not None and name not in RUN:
        return []
    out = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("RESULT "):
                try:
                    out.append(json.loads(line[7:]))
                except ValueError:
                    pass
    return out


def prefixed(logs: Path, name: str, prefix: str) -> list[dict]:
    out = []
    for line in log_text(logs, name).splitlines():
        if line.startswith(prefix + " "):
            try:
                out.append(json.loads(line[len(prefix) + 1:]))
            except ValueError:
                pass
    return out


def log_text(logs: Path, name: str) -> str:
    path = logs / f"{name}.log"
    if RUN is not None and name not in RUN:
        return ""
    return path.read_text(errors="replace") if path.is_file() else ""


def doctor_facts(text: str) -> dict:
    flat = " ".join(text.replace("│", " ").split())
    facts = {}
    m = re.search(r"(built|loaded from the cache) in ([\d.]+) s", flat)
    if m:
        facts["kernels"] = m.group(1)
        facts["kernel_seconds"] = float(m.group(2))
    for op in ("upfirdn2d", "bias_act"):
        m = re.search(op + r" (ok|problem) max error (\S+) of tolerance.*?fwd\+bwd ([\d.]+) ms CUDA vs ([\d.]+) ms reference", flat)
        if m:
            facts[op] = {"ok": m.group(1) == "ok", "max_error_of_tolerance": m.group(2),
                         "cuda_ms": float(m.group(3)), "ref_ms": float(m.group(4))}
    m = re.search(r"CUDA kernels (ok|problem) (.{0,200})", flat)
    if m:
        facts["row"] = m.group(1) + " " + m.group(2)
    m = re.search(r"doctor exit code (\d+)", flat)
    if m:
        facts["doctor_exit_code"] = int(m.group(1))
        facts["doctor_fixes"] = re.findall(r"^fix (.+)$", text, re.M)[:10]
    if "no GPU is visible" in flat or "this torch has no CUDA" in flat:
        facts["note"] = "no GPU: kernels not built"
    return facts


def pytest_facts(junit: Path, text: str) -> dict:
    facts = {}
    if junit.is_file():
        try:
            root = ET.parse(junit).getroot()
            suite = root if root.tag == "testsuite" else root.find("testsuite")
            if suite is not None:
                facts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
                facts["seconds"] = float(suite.get("time", 0))
                facts["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                                         if c.find("failure") is not None or c.find("error") is not None][:20]
        except ET.ParseError:
            pass
    last = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
    if last:
        facts["line"] = last[-1].strip("= ")
    return facts


def official_ticks_from_log(text: str) -> list[list[dict]]:
    """Per run (a tick 0 starts one), the official per-tick lines: tick, kimg, sec/kimg, gpumem."""
    runs: list[list[dict]] = []
    for m in re.finditer(r"^tick (\d+)\s+kimg ([\d.]+).*?sec/kimg ([\d.]+).*?gpumem ([\d.]+)", text, re.M):
        tick = {"tick": int(m.group(1)), "kimg": float(m.group(2)), "sec_per_kimg": float(m.group(3)),
                "peak_gpu_mem_gb": float(m.group(4))}
        if tick["tick"] == 0 or not runs:
            runs.append([])
        runs[-1].append(tick)
    return runs


def training(logs: Path) -> list[dict]:
    rows = []
    for config in ("paper256", "cifar"):
        for code in ("official", "gancli"):
            found = results(logs, f"train_{code}_{config}")
            if code == "official" and not any("sec_per_kimg" in r for r in found):
                text = log_text(logs, f"train_{code}_{config}")
                ops = ("REFERENCE ops (a plugin build failed; from the log)" if "Failed to build CUDA kernels" in text
                       else "cuda plugins (from the log)" if "Done." in text else "?")
                for precision, ticks in zip(("mixed", "fp32"), official_ticks_from_log(text)):
                    steady = [t for t in ticks if t["tick"] >= 1]
                    if steady and not any(r.get("precision") == precision and "sec_per_kimg" in r for r in found):
                        found.append({"code": code, "precision": precision, "from_log": True, "ticks": ticks, "ops": ops,
                                      "sec_per_kimg": sum(t["sec_per_kimg"] for t in steady) / len(steady),
                                      "peak_gpu_mem_gb": max(t["peak_gpu_mem_gb"] for t in steady)})
            for r in found:
                r = dict(r)
                r["config"], r["code"] = config, code
                rows.append(r)
    return rows


def compare(rows: list[dict]) -> list[dict]:
    out = []
    for config in ("paper256", "cifar"):
        for precision in ("mixed", "fp32"):
            pick = {code: next((r for r in rows if r["config"] == config and r["code"] == code and r.get("precision") == precision
                                and "sec_per_kimg" in r), None) for code in ("official", "gancli")}
            row = {"config": config, "precision": precision}
            for code, r in pick.items():
                if r:
                    row[f"{code}_sec_per_kimg"] = round(r["sec_per_kimg"], 3)
                    if r.get("peak_gpu_mem_gb") is not None:
                        row[f"{code}_peak_gpu_mem_gb"] = r["peak_gpu_mem_gb"]
                    if code == "official":
                        row["official_ops"] = r.get("ops", "?")
            if "official_sec_per_kimg" in row and "gancli_sec_per_kimg" in row:
                row["speedup"] = round(row["official_sec_per_kimg"] / row["gancli_sec_per_kimg"], 3)
                row["goal_1_5x"] = row["speedup"] >= GOAL_RATIO
            if config == "paper256" and precision == "mixed" and "gancli_sec_per_kimg" in row:
                row["goal_under_1_5_s_per_kimg"] = row["gancli_sec_per_kimg"] < GOAL_PAPER256_H200
            out.append(row)
    return out


def stage_seconds(stages: list[dict], name: str):
    row = next((s for s in stages if s["stage"] == name), None)
    return (row["seconds"], row["status"]) if row else (None, "not run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", required=True)
    parser.add_argument("--logs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dry", default="0")
    parser.add_argument("--elapsed", type=float, default=None)
    args = parser.parse_args()
    logs, out = Path(args.logs), Path(args.out)
    stages = read_stages(Path(args.stages))
    global RUN
    RUN = {s["stage"] for s in stages}
    env = (results(logs, "env") or [{}])[0]
    summary = {
        "dry_run": args.dry == "1", "elapsed_seconds": args.elapsed, "env": env, "stages": stages,
        "doctor_first_build": doctor_facts(log_text(logs, "doctor_build")),
        "doctor_cached": doctor_facts(log_text(logs, "doctor_cached")),
        "official_prebuild": results(logs, "prebuild_bias_act") + results(logs, "prebuild_upfirdn2d"),
        "pytest_cuda": pytest_facts(out / "junit-cuda.xml", log_text(logs, "pytest_cuda")),
        "training": training(logs),
        "profile": prefixed(logs, "train_gancli_paper256", "PROFILE") + results(logs, "profile_gancli"),
        "reference": {"official_v100_paper256_sec_per_kimg": V100_OFFICIAL_PAPER256,
                      "note": "official README: 256x256 on one V100, --cfg auto (batch 16), default settings"},
    }
    for key, name in (("doctor_first_build", "doctor_build"), ("doctor_cached", "doctor_cached")):
        summary[key]["stage_seconds"], summary[key]["status"] = stage_seconds(stages, name)
    summary["comparison"] = compare(summary["training"])
    n_seeds = 16 if summary["dry_run"] else 1000
    sampling = {}
    for name in ("sample_gancli", "sample_official"):
        seconds, status = stage_seconds(stages, name)
        sampling[name] = {"status": status, "seconds": seconds, "images": n_seeds,
                          "img_per_s_incl_start": round(n_seeds / seconds, 1) if seconds else None}
    summary["sampling"] = sampling
    evaluate = {}
    for name in ("evaluate_gancli", "evaluate_official"):
        seconds, status = stage_seconds(stages, name)
        evaluate[name] = {"status": status, "seconds": seconds, "results": results(logs, name)}
    evaluate["note"] = ("stand-in detector (Inception-v3 architecture, random weights): times only, FID values "
                        "mean nothing; reals: all images of paper256.zip; seconds include process start")
    summary["evaluate"] = evaluate
    notes = []
    for r in summary["training"]:
        if r["code"] == "official" and r.get("ops", "").startswith("REFERENCE"):
            notes.append(f"official {r['config']} {r.get('precision')}: {r['ops']} (its plugin build failed)")
        if r["code"] == "official" and r.get("conv2d_gradfix") is False:
            notes.append(f"official {r['config']} {r.get('precision')}: conv2d_gradfix disabled on this torch "
                         "(plain F.conv2d, as it warns)")
    summary["notes"] = sorted(set(notes))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")

    lines = []
    e = env
    lines.append(f"GPU check{' (DRY RUN on the CPU: no GPU figures)' if summary['dry_run'] else ''}: "
                 f"{e.get('gpu', 'no GPU')}, torch {e.get('torch')} (CUDA {e.get('torch_cuda')}), python {e.get('python')}, "
                 f"{args.elapsed}s")
    lines.append("")
    lines.append(f"{'stage':28} {'status':8} {'s':>5} {'limit':>5}")
    for s in stages:
        status, _, why = s["status"].partition(": ")
        lines.append(f"{s['stage']:28} {status:8} {s['seconds'] or 0:>5} {s['limit'] or 0:>5}  {why}".rstrip())
    d1, d2 = summary["doctor_first_build"], summary["doctor_cached"]
    lines.append("")
    if d1.get("note"):
        lines.append(f"kernels: {d1['note']}")
    else:
        lines.append(f"kernels: first build {d1.get('kernel_seconds')} s ({d1.get('kernels')}), cached start "
                     f"{d2.get('kernel_seconds')} s ({d2.get('kernels')}); doctor wall {d1.get('stage_seconds')} s / "
                     f"{d2.get('stage_seconds')} s")
    for op in ("upfirdn2d", "bias_act"):
        if op in d2 or op in d1:
            f = d2.get(op) or d1.get(op)
            lines.append(f"  {op}: {'ok' if f['ok'] else 'MISMATCH'}, error {f['max_error_of_tolerance']} of tolerance, "
                         f"fwd+bwd {f['cuda_ms']} ms CUDA vs {f['ref_ms']} ms reference")
    if d1.get("doctor_fixes"):
        lines.append(f"doctor also says (exit code {d1.get('doctor_exit_code')}): " + "; ".join(d1["doctor_fixes"]))
    p = summary["pytest_cuda"]
    if "tests" in p:
        passed = p["tests"] - p["failures"] - p["errors"] - p["skipped"]
        lines.append(f"pytest -m 'cuda or gpu': {p['tests']} tests, {passed} passed, {p['failures']} failed, "
                     f"{p['errors']} errors, {p['skipped']} skipped in {p['seconds']:.1f} s")
    else:
        lines.append(f"pytest -m 'cuda or gpu': {p.get('line', 'no result (see logs)')}")
    for t in p.get("failed_tests", []):
        lines.append(f"  FAILED {t}")
    lines.append("")
    lines.append(f"{'training s/kimg':18} {'official':>9} {'gancli':>9} {'speedup':>8} {'off GB':>7} {'gan GB':>7}  official ops")
    for c in summary["comparison"]:
        def f(key, fmt="{:.3f}", c=c):
            return fmt.format(c[key]) if key in c else "-"
        lines.append(f"{c['config'] + ' ' + c['precision']:18} {f('official_sec_per_kimg'):>9} {f('gancli_sec_per_kimg'):>9} "
                     f"{f('speedup', '{:.2f}x'):>8} {f('official_peak_gpu_mem_gb', '{:.2f}'):>7} "
                     f"{f('gancli_peak_gpu_mem_gb', '{:.2f}'):>7}  {c.get('official_ops', '')}")
    lines.append(f"goals: gancli >= {GOAL_RATIO}x official at identical settings; paper256 under {GOAL_PAPER256_H200} s/kimg "
                 f"(official on one V100: {V100_OFFICIAL_PAPER256} s/kimg, --cfg auto)")
    lines.append("")
    for name, s in sampling.items():
        if s["status"] != "ok":
            lines.append(f"{name}: {s['status']}")
            continue
        lines.append(f"{name}: {s['images']} images in {s['seconds']} s "
                     f"({s['img_per_s_incl_start']} img/s, process start and PNG writing included)")
    for name in ("evaluate_gancli", "evaluate_official"):
        ev = evaluate[name]
        extra = ""
        if ev["results"] and "metric_seconds" in ev["results"][0]:
            extra = f", metric itself {ev['results'][0]['metric_seconds']} s"
        lines.append(f"{name}: {ev['status']}, {ev['seconds']} s{extra} (stand-in detector: times only)")
    for r in summary["profile"]:
        lines.append(f"profile {r.get('precision')}: full step {r.get('full_step_seconds')} s, peak "
                     f"{r.get('full_step_peak_gpu_mem_gb')} GB; plain step {r.get('plain_step_seconds')} s, peak "
                     f"{r.get('plain_step_peak_gpu_mem_gb')} GB (tables in profile.txt)")
    for n in summary["notes"]:
        lines.append(f"note: {n}")
    text = "\n".join(lines) + "\n"
    (out / "summary.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
