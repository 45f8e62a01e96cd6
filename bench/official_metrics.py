"""Time the official `calc_metrics.py` (FID on N fakes) offline, with a local detector file.

    python bench/official_metrics.py --repo .official/stylegan2-ada-pytorch --network N.pkl --data D.zip \\
        --detector standin-inception.pt --cache DIR [--num 10000] [--dry-run]

Offline: the official FID code loads its Inception network with `dnnlib.util.open_url(URL)`, which
looks in its download cache first ($DNNLIB_CACHE_DIR/downloads/<md5 of the URL>_<name>) and only
downloads when nothing is there. The detector file given is placed there under that name (a
symbolic link), so no network is needed. (The real inception-2015-12-05.pt can be given the same way.)

The official metric list has only 50k-fake FIDs; `fid<N/1000>k_full` is registered here through its
own `metric_main.register_metric`, calling its own `frechet_inception_distance.compute_fid` with
all reals (as fid50k_full does) and N fakes. Then `calc_metrics.py --metrics fid10k_full --data D
--mirror 0 --gpus 1 --network N` runs in this process. Prints `RESULT {json}`: the metric's own
`total_time` (network already loaded; real statistics computed, not cached) and the wall time.
--dry-run checks on a CPU that the detector is found offline, and stops.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_run import official_import  # noqa: E402

DETECTOR_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"


def place_detector(detector: Path, cache: Path) -> Path:
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / (hashlib.md5(DETECTOR_URL.encode("utf-8")).hexdigest() + "_inception-2015-12-05.pt")
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(detector.resolve())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--network")
    parser.add_argument("--data", required=True)
    parser.add_argument("--detector", required=True)
    parser.add_argument("--cache", required=True, help="private DNNLIB_CACHE_DIR")
    parser.add_argument("--num", type=int, default=10000)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    os.environ["DNNLIB_CACHE_DIR"] = str(cache)
    placed = place_detector(Path(args.detector), cache)
    official_import(args.repo)
    import dnnlib

    found = dnnlib.util.open_url(DETECTOR_URL, return_filename=True)
    name = f"fid{args.num // 1000}k_full" if args.num % 1000 == 0 else f"fid{args.num}_full"
    result = {"code": "official", "metric": name, "detector": str(args.detector),
              "detector_found_offline": Path(found).resolve() == placed.resolve()}
    if args.dry_run:
        result["dry_run"] = "detector lookup checked; calc_metrics needs CUDA"
        print("RESULT " + json.dumps(result), flush=True)
        return
    if not args.network:
        parser.error("--network is needed")
    import calc_metrics
    from metrics import frechet_inception_distance, metric_main

    num = args.num

    def fid_full(opts):
        opts.dataset_kwargs.update(max_size=None, xflip=False)
        return {result["metric"]: frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=num)}

    fid_full.__name__ = result["metric"]
    metric_main.register_metric(fid_full)
    reported = []
    original_report = metric_main.report_metric

    def report(result_dict, **kwargs):
        reported.append(dict(result_dict))
        return original_report(result_dict, **kwargs)

    metric_main.report_metric = report
    start = time.perf_counter()
    try:
        calc_metrics.calc_metrics.main(args=["--network", args.network, "--metrics", result["metric"], "--data", args.data,
                                             "--mirror", "0", "--gpus", "1"], standalone_mode=False)
    finally:
        result["wall_seconds"] = round(time.perf_counter() - start, 2)
    if reported:
        result["metric_seconds"] = round(float(reported[0]["total_time"]), 2)
        result["value_meaningless_with_standin"] = reported[0]["results"].get(result["metric"])
        result["fakes_per_s_incl_reals"] = round(num / max(result["metric_seconds"], 1e-9), 1)
    print("RESULT " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
