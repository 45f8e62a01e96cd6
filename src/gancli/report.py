"""`gancli report RUN`: one self-contained HTML page about a training run folder.

What a run folder holds (train/loop.py): `stats.jsonl` (one record per progress tick: kimg, step,
images/s, seconds of training, learning rates, every loss and family value such as `augment/p`; and
`event` records for snapshots and metrics), `metrics.jsonl` (training-time metric results with their
kimg), `fakes-NNNNNN.png` (the fixed-seed grid at every image tick, NNNNNN = kimg), `reals.png`,
`recipe.yaml` and the snapshots, which embed the resolved recipe.

The page plots every numeric series found over kimg with plotly, whose JavaScript (plotly.min.js,
shipped inside the PyPI package) is inlined once, and embeds the grids as base64 data URIs, so the
file opens offline and fetches nothing. Only the standard library, PyYAML, Pillow and plotly are
imported; torch is not needed.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gancli.errors import UserError

GENERATOR_TAG = '<meta name="generator" content="gancli report">'  # marks a file as our own report
_FAKES_RE = re.compile(r"^fakes-(\d+)(?:-step(\d+))?\.png$")  # -stepSSSSSSSS: a second grid in one kimg
# Fields of a stats record that are the x axis or bookkeeping, never a series of their own.
_NOT_SERIES = {"kimg", "step", "event", "path", "snapshot"}
# (group title, test on the series name), in the order the page shows them; the first match wins.
_GROUPS: list[tuple[str, Any]] = [
    ("Losses", lambda k: k.startswith("loss/")),
    ("Discriminator scores", lambda k: k.startswith("scores/")),
    ("ADA: augmentation probability p", lambda k: k == "augment/p"),
    ("ADA: overfitting heuristic r_t (p rises above the target)", lambda k: k.startswith("augment/")),
    ("Learning rates", lambda k: k.startswith("lr/") or k == "lr"),
    ("Metrics", lambda k: k.startswith("metrics/")),
    ("Throughput (images/s)", lambda k: k == "img_per_s"),
]


def require_plotly() -> None:
    """Fail in one line, before any work, when the optional plotting dependency is missing."""
    if importlib.util.find_spec("plotly") is None:
        raise UserError("gancli report needs plotly: pip install 'gancli[report]' (or pip install plotly)")


@dataclass
class RunData:
    """What a run folder says, read without torch."""

    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)  # stats.jsonl tick records (no events)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # {"kimg", name: value} per training-time result
    fakes: list[tuple[float, Path]] = field(default_factory=list)  # (kimg, fakes-NNNNNN.png), by kimg
    recipe: dict[str, Any] | None = None
    recipe_source: str = ""
    snapshots: int = 0

    def series(self) -> dict[str, tuple[list[float], list[float]]]:
        """name -> (kimg values, values) for every numeric field of the records and metric results."""
        out: dict[str, tuple[list[float], list[float]]] = {}
        for rows in (self.records, self.metrics):
            for rec in rows:
                x = rec.get("kimg")
                if not _is_number(x):
                    continue
                for key, value in rec.items():
                    if key in _NOT_SERIES or key == "time_s" or not _is_number(value):
                        continue
                    xs, ys = out.setdefault(key, ([], []))
                    xs.append(float(x))
                    ys.append(float(value))
        return out

    def timing(self) -> dict[str, float | None]:
        """kimg reached, seconds of training and images/s over the whole run (time_s of the last record;
        logs written before time_s was logged: the sum of each tick's images over its rate, which
        leaves out the time spent on grids, snapshots and metrics)."""
        if not self.records:
            return {"kimg": None, "seconds": None, "img_per_s": None, "estimated": False}
        last = self.records[-1]
        kimg = float(last.get("kimg", 0))
        seconds, estimated = last.get("time_s"), False
        if not _is_number(seconds):
            seconds, prev, estimated = 0.0, 0.0, True
            for rec in self.records:
                k, rate = rec.get("kimg"), rec.get("img_per_s")
                if _is_number(k) and _is_number(rate) and rate > 0:
                    seconds += (float(k) - prev) * 1000 / float(rate)
                    prev = float(k)
        rate = kimg * 1000 / seconds if seconds else None
        return {"kimg": kimg, "seconds": float(seconds), "img_per_s": rate, "estimated": estimated}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_run(run_dir: Path) -> RunData:
    """The run folder's logs, grids and recipe. A folder with none of them is not a run: one line."""
    import warnings

    from gancli.train.rundir import read_jsonl

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (give a training run folder, e.g. runs/quickstart-00000)")
    data = RunData(run_dir=run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line a crash cut short is simply not plotted
        if (run_dir / "stats.jsonl").is_file():
            data.records = [r for r in read_jsonl(run_dir / "stats.jsonl") if "event" not in r]
        if (run_dir / "metrics.jsonl").is_file():
            for rec in read_jsonl(run_dir / "metrics.jsonl"):
                results = rec.get("results")
                if _is_number(rec.get("kimg")) and isinstance(results, dict):  # evaluate's own results have no kimg
                    data.metrics.append({"kimg": rec["kimg"], **{f"metrics/{k}": v for k, v in results.items()}})
    fakes = []
    for path in run_dir.iterdir():
        m = _FAKES_RE.match(path.name)
        if m and path.is_file():
            fakes.append((float(int(m.group(1))), int(m.group(2) or -1), path))
    data.fakes = [(kimg, path) for kimg, _, path in sorted(fakes)]  # by kimg, then step
    data.recipe, data.recipe_source, data.snapshots = _recipe_of(run_dir)
    if not data.records and not data.fakes and data.recipe is None:
        raise UserError(f"{run_dir}: not a training run folder (no stats.jsonl, fakes-*.png, recipe.yaml or snapshots)")
    return data


def _recipe_of(run_dir: Path) -> tuple[dict[str, Any] | None, str, int]:
    """(the resolved recipe, where it was read, number of snapshots): the newest snapshot's embedded
    recipe (it has the changes a resume made), else recipe.yaml."""
    import yaml

    from gancli.train.checkpoint import list_checkpoints
    from gancli.train.snapshot import read_snapshot_header

    pairs = list_checkpoints(run_dir)
    for pair in reversed(pairs):
        try:
            recipe, _ = read_snapshot_header(pair.snapshot, verify=False)
            return recipe, f"embedded in {pair.snapshot.name}", len(pairs)
        except UserError:
            continue
    path = run_dir / "recipe.yaml"
    if path.is_file():
        try:
            recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            recipe = None
        if isinstance(recipe, dict):
            return recipe, "recipe.yaml", len(pairs)
    return None, "", len(pairs)


def group_series(series: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """[(title, series names)]: losses, scores, ADA, learning rates, metrics, throughput, then one group
    per remaining prefix ('grow/...', 'vq/...') and 'Other' for names without one (pl_mean, epoch)."""
    groups: dict[str, list[str]] = {title: [] for title, _ in _GROUPS}
    for name in sorted(series):
        title = next((t for t, test in _GROUPS if test(name)), None)
        if title is None:
            title = name.split("/")[0] if "/" in name else "Other"
        groups.setdefault(title, []).append(name)
    return [(title, names) for title, names in groups.items() if names]


def _figure_html(title: str, names: list[str], series: dict, index: int, recipe: dict) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name in names:
        xs, ys = series[name]
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines+markers" if len(xs) < 50 else "lines"))
    target = (recipe.get("augment") or {}).get("target") if isinstance(recipe.get("augment"), dict) else None
    if "augment/rt" in names and _is_number(target):  # ADA raises p while r_t is above its target
        fig.add_hline(y=target, line_dash="dash", line_color="gray", annotation_text=f"augment.target {target:g}")
    fig.update_layout(title=title, xaxis_title="kimg", height=360, margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(orientation="h", y=-0.25), showlegend=True, template="plotly_white")
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{index}",
                       config={"displaylogo": False, "responsive": True})


def _png_data_uri(path: Path, max_width: int) -> tuple[str, tuple[int, int]]:
    """A grid PNG as a data URI, scaled down to `max_width` pixels when wider (the browser scales up)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        size = image.size
        if image.width > max_width:
            height = max(1, round(image.height * max_width / image.width))
            image = image.convert("RGB").resize((max_width, height), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            image.save(buf, format="PNG", optimize=True)
            data = buf.getvalue()
        else:
            data = path.read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), size


def pick_grids(fakes: list, limit: int) -> list:
    """At most `limit` grids, evenly spaced over the run, always with the first and the last."""
    if limit <= 0 or len(fakes) <= limit:
        return list(fakes)
    if limit == 1:
        return [fakes[-1]]
    picks = sorted({round(i * (len(fakes) - 1) / (limit - 1)) for i in range(limit)})
    return [fakes[i] for i in picks]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.facts td { padding: 2px 14px 2px 0; vertical-align: top; } table.facts td:first-child { color: #666; }
pre.recipe { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; line-height: 1.35; }
.grid-view img { display: none; width: 100%; max-width: 768px; image-rendering: pixelated; border: 1px solid #ccc; }
.grid-view img.shown { display: block; }
.controls { margin: 0.6em 0; display: flex; gap: 1em; align-items: center; }
.controls input[type=range] { flex: 1; max-width: 600px; }
.reals img { width: 100%; max-width: 384px; image-rendering: pixelated; border: 1px solid #ccc; }
.note { color: #666; font-size: 0.9em; }
.plots { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 0.5em 1em; }
@media (max-width: 900px) { .plots { grid-template-columns: minmax(0, 1fr); } }
.plot { min-width: 0; }
"""

_SCRIPT = """
(function () {
  var slider = document.getElementById('tick');
  if (!slider) return;
  var grids = document.querySelectorAll('.grid-view img.fake');
  var label = document.getElementById('tick-label');
  function show(i) {
    grids.forEach(function (g, j) { g.classList.toggle('shown', j === i); });
    label.textContent = 'kimg ' + grids[i].dataset.kimg + '  (' + (i + 1) + ' of ' + grids.length + ')';
  }
  slider.addEventListener('input', function () { show(parseInt(slider.value, 10)); });
  var timer = null, play = document.getElementById('play');
  play.addEventListener('click', function () {
    if (timer) { clearInterval(timer); timer = null; play.textContent = 'play'; return; }
    play.textContent = 'pause';
    timer = setInterval(function () {
      slider.value = (parseInt(slider.value, 10) + 1) % grids.length; show(parseInt(slider.value, 10));
    }, 400);
  });
  show(parseInt(slider.value, 10));
})();
"""


def render_report(data: RunData, *, max_grids: int = 100, grid_width: int = 1024) -> str:
    """The page as one HTML string (plotly.js inline, images as data URIs)."""
    import yaml
    from plotly.offline import get_plotlyjs

    esc = html.escape
    recipe = data.recipe or {}
    timing = data.timing()
    series = data.series()
    name = recipe.get("name") or data.run_dir.name
    model = recipe.get("model", {}) if isinstance(recipe.get("model"), dict) else {}
    train = recipe.get("train", {}) if isinstance(recipe.get("train"), dict) else {}
    rate = timing["img_per_s"]
    facts = [
        ("run folder", str(data.run_dir.resolve())),
        ("recipe", f"{name}" + (f" ({model.get('kind')})" if model.get("kind") else "")),
        ("progress", (f"{timing['kimg']:g} of {train.get('total_kimg', '?')} kimg" if timing["kimg"] is not None else "no log")
         + (f", step {data.records[-1].get('step')}" if data.records else "")),
        ("training time", _duration(timing["seconds"]) + (" (from the logged rates: grids, snapshots and metrics "
                                                            "not counted)" if timing["estimated"] else "")),
        ("images/s", f"{rate:,.1f} over the run" if rate else "-"),
        ("snapshots", str(data.snapshots)),
        ("image grids", str(len(data.fakes))),
    ]
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', GENERATOR_TAG,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gancli report: {esc(data.run_dir.name)}</title>",
        f"<style>{_STYLE}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head>", "<body>",
        f"<h1>{esc(data.run_dir.name)}</h1>",
        f'<p class="note">{esc(str(recipe.get("description", "")))}</p>' if recipe.get("description") else "",
        '<table class="facts">' + "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in facts) + "</table>",
        "<h2>Training curves</h2>",
    ]
    groups = group_series(series)
    if groups:
        parts.append('<div class="plots">')
        for i, (title, names) in enumerate(groups):
            parts.append(f'<div class="plot">{_figure_html(title, names, series, i, recipe)}</div>')
        parts.append("</div>")
    else:
        parts.append('<p class="note">stats.jsonl has no records yet.</p>')

    parts.append("<h2>Generated images</h2>")
    shown = pick_grids(data.fakes, max_grids)
    if shown:
        if len(shown) < len(data.fakes):
            parts.append(f'<p class="note">{len(shown)} of the {len(data.fakes)} grids, evenly spaced '
                         "(--max-grids)</p>")
        parts.append('<div class="controls"><button id="play" type="button">play</button>'
                     f'<input type="range" id="tick" min="0" max="{len(shown) - 1}" value="{len(shown) - 1}" '
                     'aria-label="image tick"><span id="tick-label"></span></div>')
        parts.append('<div class="grid-view">')
        for kimg, path in shown:
            uri, size = _png_data_uri(path, grid_width)
            step = _FAKES_RE.match(path.name).group(2)
            label = f"{kimg:g}" + (f", step {int(step)}" if step else "")
            parts.append(f'<img class="fake" src="{uri}" data-kimg="{label}" alt="{esc(path.name)}" '
                         f'title="{esc(path.name)} ({size[0]}x{size[1]})">')
        parts.append("</div>")
        parts.append('<p class="note">The EMA generator on fixed seeds at every image tick '
                     "(train.image_kimg); the slider moves through them, arrow keys too.</p>")
    else:
        parts.append('<p class="note">no fakes-*.png grids in the run folder yet.</p>')
    reals = data.run_dir / "reals.png"
    if reals.is_file():
        uri, _ = _png_data_uri(reals, grid_width)
        parts.append(f'<h3>Training data</h3><div class="reals"><img class="reals" src="{uri}" alt="reals.png"></div>')
    from gancli.data.emoji import credit_for

    data_section = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    credit = credit_for(data_section.get("source", ""))
    if credit and (shown or reals.is_file()):  # the images show (or are derived from) Twemoji artwork
        parts.append(f'<p class="credit">{esc(credit)}</p>')

    parts.append("<h2>Resolved recipe</h2>")
    if data.recipe is not None:
        parts.append(f'<p class="note">{esc(data.recipe_source)}</p>')
        parts.append(f'<details open><summary>YAML</summary><pre class="recipe">'
                     f'{esc(yaml.safe_dump(data.recipe, sort_keys=False))}</pre></details>')
    else:
        parts.append('<p class="note">no recipe found (no snapshot and no recipe.yaml).</p>')
    parts.append(f"<script>{_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def check_output(out: Path, force: bool) -> None:
    """An existing file is replaced only when it is a previous gancli report, or with --force."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out}: must end in .html (the report is one HTML page)")
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory")
    if out.exists() and not force and not is_own_report(out):
        raise UserError(f"{out}: exists and is not a gancli report; pass --force to overwrite it, or choose another --out")


def is_own_report(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return GENERATOR_TAG in head


def write_report(run_dir: Path, out: Path, *, max_grids: int = 100, grid_width: int = 1024) -> dict[str, Any]:
    """Read the run, render the page and write it atomically. Returns facts for the command's line."""
    from gancli.fileio import atomic_write_text

    data = read_run(run_dir)
    page = render_report(data, max_grids=max_grids, grid_width=grid_width)
    atomic_write_text(out, page)
    return {"path": out, "bytes": len(page.encode("utf-8")), "series": len(data.series()),
            "grids": len(pick_grids(data.fakes, max_grids)), "all_grids": len(data.fakes)}

