"""The documentation's charts, drawn from the benchmarks' own results files (``benchmarks/results/*.json``).

  python benchmarks/charts.py            # every chart into docs/img/

A chart is only ever drawn from what a benchmark kept with `results.save` (or, where named ``*_transcribed``,
figures copied from an earlier run's printout, which the file says); each chart names the host or GPU and the
date of its figures. Needs matplotlib (the ``notebooks`` extra).

  cpu.png               separation speed per preset (separate.json, else separate_transcribed.json) and the
                        training step per backend (train_step_<backend>.json, else train_step_transcribed.json)
  gpu.png               gpu.json: training step and separation on a GPU
  precision.png         precision_speed.json: speed of float16 and int8 against float32
  browser_speed.png     browser.json: the in-browser site's speed (a placeholder that says so until it exists)
  quickstart_curve.png  quickstart_curve.json (benchmarks/training_curve.py): the quickstart's losses

Rows are read by their keys: a separation row has ``preset`` and ``x_real_time`` (or ``x_real_time_best``; a
``graph`` key marks a reference such as the original TF1 graph); a training-step row ``setting`` and
``s_per_step`` (or ``s_per_step_best``, as train_step.py prints it).
"""

import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402

IMG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "img")
COLOURS = ("#3f6fb5", "#e08a2c", "#5a9e4b", "#b0413e", "#7d5ba6")


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                       "svg.hashsalt": "wave-unet-tf"})
  return plt


def _value(row, *keys):
  """The first of ``keys`` the row has (benchmarks name a figure ``x_real_time`` or ``x_real_time_best``)."""
  return next((row[k] for k in keys if row.get(k) is not None), None)


SPEED_KEYS = ("x_real_time", "x_real_time_best", "realtime_factor")
STEP_KEYS = ("s_per_step", "s_per_step_best")


def _load_first(*names, keys=()):
  """The first of these results files that exists and has rows with a figure of ``keys`` (a re-run's file
  replaces a transcribed one)."""
  for name in names:
    if os.path.exists(os.path.join(results.RESULTS, f"{name}.json")):
      record = results.load(name)
      if not keys or any(all(_value(row, *k) is not None for k in keys) for row in record.get("rows", [])):
        return record
  return None


def _provenance(record):
  where = record.get("device") if record.get("device", "CPU") != "CPU" else record.get("host")
  text = f"{where}, {record.get('date')}"
  if record.get("browser"):
    text += f"; {record['browser']}"
  if record.get("load_average"):
    text += f", load average {'–'.join(str(x) for x in record['load_average'])}"
  if record.get("transcribed"):
    text += " (transcribed from the README's table of that run)"
  return f"benchmarks/results/{record['benchmark']}.json: {text}"


def _save(fig, name, *records):
  lines = [line for r in records if r for line in textwrap.wrap(_provenance(r), 150, subsequent_indent="    ")]
  fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, color="#555555", va="bottom")
  path = os.path.join(IMG, f"{name}.png")
  os.makedirs(IMG, exist_ok=True)
  fig.savefig(path, dpi=110, metadata={"Software": None})
  _plt().close(fig)
  return path


def _bars(ax, labels, values, fmt, colours=None, title="", xlabel=""):
  bars = ax.barh(range(len(values)), values, color=colours or COLOURS[0])
  ax.set_yticks(range(len(values)), labels)
  ax.invert_yaxis()
  ax.set_title(title, loc="left", fontsize=10)
  ax.set_xlabel(xlabel)
  for bar, value in zip(bars, values):
    ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + fmt.format(value), va="center", fontsize=8)
  ax.set_xlim(0, max(values) * 1.25)


def _training_steps(setting="float32", batch_size=16):
  """One record of the CPU training step per backend (train_step.py keeps one file per backend), the float32
  step at batch 16 of each, as rows with ``setting`` = the backend; None when no backend's file exists."""
  rows, records = [], []
  for backend in ("tensorflow", "jax", "torch"):
    record = _load_first(f"train_step_{backend}")
    row = next((r for r in (record or {}).get("rows", []) if r.get("setting") == setting
                and r.get("batch_size") == batch_size and r.get("ms_per_step_best")), None)
    if row and "cpu" in str(record.get("device", "")).lower():
      rows.append({"setting": backend, "batch_size": batch_size, "s_per_step": row["ms_per_step_best"] / 1000})
      records.append(record)
  if not rows:
    return None
  return {**records[0], "device": "CPU", "benchmark": "train_step_{" + ",".join(r["setting"] for r in rows) + "}",
          "rows": rows}


def cpu():
  separate = _load_first("separate", "separate_transcribed", keys=(("preset",), SPEED_KEYS))
  train = _training_steps() or _load_first("train_step_transcribed", keys=(("setting",), STEP_KEYS))
  if not separate and not train:
    return None
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [3, 2]})
  fig.subplots_adjust(left=0.2, right=0.97, wspace=0.6, bottom=0.32, top=0.9)
  if separate:
    rows = [r for r in separate["rows"] if "preset" in r and _value(r, *SPEED_KEYS) is not None]
    labels = [r["preset"] + (f"\n{r['graph']}" if r.get("graph") else "") for r in rows]
    _bars(axes[0], labels, [_value(r, *SPEED_KEYS) for r in rows], "{:.1f}x",
          [COLOURS[1] if r.get("graph") else COLOURS[0] for r in rows],
          f"Separating a {separate.get('song_seconds', 30)} s song (after loading)", "x real time (higher is faster)")
  if train:
    rows = [r for r in train["rows"] if "setting" in r and _value(r, *STEP_KEYS) is not None]
    _bars(axes[1], [r["setting"] for r in rows], [_value(r, *STEP_KEYS) for r in rows], "{:.1f} s",
          [COLOURS[1] if "original" in r["setting"] else COLOURS[0] for r in rows],
          f"{train.get('preset', 'M5-HighSR')} training step, batch {rows[0].get('batch_size', 16)}",
          "seconds per step (lower is faster)")
  return _save(fig, "cpu", separate, train)


def gpu():
  record = _load_first("gpu")
  if not record:
    return None
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  fig.subplots_adjust(left=0.2, right=0.97, wspace=0.75, bottom=0.28, top=0.88)
  steps = [r for r in record["rows"] if r["what"] == "train_step" and r.get("device") is None]
  labels = [f"{r['backend']}, batch {r['batch_size']}" + (f"\n{r['dtype']}" if r.get("dtype") else "") for r in steps]
  _bars(axes[0], labels, [r["ms_per_step"] for r in steps], "{:.1f} ms",
        [COLOURS[0] if r["backend"] == "jax" else COLOURS[2] for r in steps],
        f"{record.get('preset', 'M5-HighSR')} training step", "milliseconds per step (lower is faster)")
  separation = [r for r in record["rows"] if r["what"] == "separate"]
  labels = [f"{r['backend']}, {r['song_seconds'] / 60:g} min song" if r["song_seconds"] >= 60 else
            f"{r['backend']}, {r['song_seconds']:g} s song" for r in separation]
  _bars(axes[1], labels, [r["x_real_time"] for r in separation], "{:,.0f}x",
        [COLOURS[0] if r["backend"] == "jax" else COLOURS[2] for r in separation],
        "Separating a song", "x real time (higher is faster)")
  return _save(fig, "gpu", record)


def precision():
  record = _load_first("precision_speed")
  if not record:
    return None
  plt = _plt()
  rows = record["rows"]
  kinds = list(dict.fromkeys(r["what"] for r in rows))
  levels = list(dict.fromkeys(r["precision"] for r in rows))
  fig, ax = plt.subplots(figsize=(7, 3.2))
  fig.subplots_adjust(left=0.1, right=0.97, bottom=0.3, top=0.88)
  width = 0.8 / len(kinds)
  for k, kind in enumerate(kinds):
    values = [next(r["vs_float32"] for r in rows if r["what"] == kind and r["precision"] == level) for level in levels]
    bars = ax.bar([i + k * width for i in range(len(levels))], values, width, label=kind, color=COLOURS[k])
    for bar, value in zip(bars, values):
      ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{value:.2f}x", ha="center", va="bottom",
              fontsize=8)
  ax.axhline(1, color="#999999", linewidth=0.8)
  ax.set_xticks([i + width * (len(kinds) - 1) / 2 for i in range(len(levels))], levels)
  ax.set_ylabel("speed against float32")
  ax.set_title(f"--precision, {record.get('preset', 'M5-HighSR')}, {record.get('song_seconds', 20):g} s song",
               loc="left", fontsize=10)
  ax.legend(frameon=False, fontsize=8)
  return _save(fig, "precision", record)


def _label(row, key):
  if "threads" in row and isinstance(row["threads"], int):
    threads = {0: "a thread per core", 1: "1 thread"}.get(row["threads"], f"{row['threads']} threads")
    row = {**{k: v for k, v in row.items() if k != "threads"}, "threads": threads}
  return ", ".join(str(v) for k, v in row.items() if k != key and isinstance(v, str))


def browser():
  record = _load_first("browser")
  plt = _plt()
  if not record or not record.get("rows"):
    fig, ax = plt.subplots(figsize=(7, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, "No figures yet: python benchmarks/browser.py --save writes benchmarks/results/browser.json",
            ha="center", va="center", color="#555555")
    print("browser: benchmarks/results/browser.json not found; drew a placeholder that says so")
    path = os.path.join(IMG, "browser_speed.png")
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
  rows = [r for r in record["rows"] if _value(r, *SPEED_KEYS) is not None]  # not the matmul ceiling's GFLOP/s
  key = next(k for k in SPEED_KEYS if rows[0].get(k) is not None)
  height = 1.5 + 0.3 * len(rows)
  fig, ax = plt.subplots(figsize=(8, height))
  fig.subplots_adjust(left=0.4, right=0.93, bottom=0.95 / height, top=1 - 0.35 / height)
  song = f", {record['song_seconds']:g} s song" if record.get("song_seconds") else ""
  _bars(ax, [_label(r, key) for r in rows], [_value(r, *SPEED_KEYS) for r in rows], "{:.1f}x",
        [COLOURS[0] if str(r.get("what", "")).startswith("browser") else COLOURS[2] for r in rows],
        f"In the browser and in Python: {record.get('preset', 'M5-HighSR')}{song}", "x real time (higher is faster)")
  return _save(fig, "browser_speed", record)


def quickstart_curve(record=None):
  record = record or _load_first("quickstart_curve")
  if not record:
    return None
  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 3.4))
  fig.subplots_adjust(left=0.12, right=0.97, bottom=0.3, top=0.88)
  for k, split in enumerate(("training", "validation")):
    points = [(r["step"], r["loss"]) for r in record["rows"] if r["split"] == split]
    if points:
      ax.plot(*zip(*points), marker="o" if split == "validation" else None, markersize=4, color=COLOURS[k],
              label=f"{split} loss", linewidth=1.2 if split == "training" else 1.8)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("MSE (log scale)")
  took = f", {record['wall_s'] / 60:.0f} min" if record.get("wall_s") else ""
  ax.set_title(f"The quickstart on the toy data{took}", loc="left", fontsize=10)
  ax.legend(frameon=False, fontsize=8)
  return _save(fig, "quickstart_curve", record)


def main():
  for draw in (cpu, gpu, precision, browser, quickstart_curve):
    path = draw()
    print(f"{draw.__name__}: {path}" if path else f"{draw.__name__}: no results file yet, skipped")


if __name__ == "__main__":
  main()
