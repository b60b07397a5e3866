"""What the Snakemake HTML report shows: loss curves from TensorBoard, the metrics table and the samples
side by side (audio embedded, so each page is one self-contained file). The dataset's page is the review
page (xttsflow.review)."""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import os
from pathlib import Path

from .atomic import atomic_path, read_json, write_json, write_text

log = logging.getLogger(__name__)

_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.35em .6em;vertical-align:top;text-align:left}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}.better{color:#176f2c}.worse{color:#a11}
audio{width:16em}.small{font-size:.85em;color:#555}</style>"""


# ---------- training curves ----------


def read_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series under a TensorBoard log folder (sub-folders prefix their tags)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = Path(log_dir)
    series: dict[str, list[tuple[int, float]]] = {}
    folders = sorted({p.parent for p in log_dir.rglob("events.out.tfevents.*")}) if log_dir.is_dir() else []
    for folder in folders:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        prefix = "" if folder == log_dir else f"{folder.relative_to(log_dir).as_posix()}/"
        for tag in acc.Tags().get("scalars", []):
            points = {e.step: float(e.value) for e in acc.Scalars(tag)}  # a resumed run rewrites steps
            series.setdefault(prefix + tag, [])
            series[prefix + tag] = sorted({**dict(series[prefix + tag]), **points}.items())
    return series


def training_curves(log_dir: str | os.PathLike, png: str | os.PathLike, summary: str | os.PathLike,
                    train_summary: str | os.PathLike | None = None) -> dict:
    """Plot the loss series (training and validation panels) and summarise them (first, last, best)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {tag: points for tag, points in read_scalars(log_dir).items() if "loss" in tag.lower()}
    validation = {t: p for t, p in series.items() if any(k in t.lower() for k in ("val", "eval"))}
    train = {t: p for t, p in series.items() if t not in validation}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, group, title in ((axes[0], train, "Training loss"), (axes[1], validation, "Validation loss")):
        for tag, points in sorted(group.items()):
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, ms=3, label=tag)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {title.lower()} logged\nin {log_dir}", ha="center", va="center",
                    transform=ax.transAxes)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    record = {"log_dir": str(log_dir), "series": {
        tag: {"points": len(p), "first_step": p[0][0], "last_step": p[-1][0], "first": round(p[0][1], 5),
              "last": round(p[-1][1], 5), "min": round(min(v for _, v in p), 5)}
        for tag, p in sorted(series.items())}}
    if train_summary and Path(train_summary).is_file():
        run = read_json(train_summary)
        record["run"] = {k: run.get(k) for k in ("steps", "epochs", "best_val_loss", "exported_step", "use_lora",
                                                  "clips", "parameters")}
    if not series:
        record["warning"] = f"no loss scalars found under {log_dir} (was TensorBoard logging off?)"
        log.warning("training curves: %s", record["warning"])
    write_json(summary, record)
    return record


# ---------- metrics table ----------


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metric_rows(metrics: dict, labels: dict) -> list[dict]:
    """One row per metric: base, fine-tuned, their difference and the real speaker's own value."""
    models, delta = metrics["models"], metrics["delta_finetuned_minus_base"]
    rows = []
    for key, (label, higher_better) in labels.items():
        values = {m: models.get(m, {}).get(key) for m in ("base", "finetuned", "real")}
        if all(v is None for v in values.values()):
            continue
        change = delta.get(key)
        better = None if change is None or higher_better is None or change == 0 else (change > 0) == higher_better
        rows.append({"metric": key, "label": label, **values, "delta": change, "better": better})
    return rows


def write_table_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["metric", "description", "base", "finetuned", "delta", "real"])
    for r in rows:
        writer.writerow([r["metric"], r["label"], *(("" if r[k] is None else r[k]) for k in
                                                     ("base", "finetuned", "delta", "real"))])
    write_text(path, buf.getvalue())


def write_table_markdown(path: str | os.PathLike, rows: list[dict], metrics: dict) -> None:
    lines = [f"# Evaluation of run `{metrics['run']}` ({metrics['language']}, "
             f"{metrics['models']['finetuned']['samples']} sentences)", "",
             "| Metric | Base | Fine-tuned | Δ (fine-tuned − base) | Real speaker |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {_fmt(r['base'])} | {_fmt(r['finetuned'])} | {_fmt(r['delta'])} "
                     f"| {_fmt(r['real'])} |")
    lines += ["", "Verdict: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in metrics["verdict"].items())]
    lines += [f"> {w}" for w in metrics.get("warnings", [])]
    write_text(path, "\n".join(lines) + "\n")


def _table_html(rows: list[dict]) -> str:
    out = ["<table><tr><th>Metric</th><th>Base</th><th>Fine-tuned</th><th>Δ</th><th>Real speaker</th></tr>"]
    for r in rows:
        cls = "" if r["better"] is None else (" better" if r["better"] else " worse")
        out.append(f"<tr><td>{html.escape(r['label'])}</td><td class=num>{_fmt(r['base'])}</td>"
                   f"<td class=num>{_fmt(r['finetuned'])}</td><td class='num{cls}'>{_fmt(r['delta'])}</td>"
                   f"<td class=num>{_fmt(r['real'])}</td></tr>")
    return "".join(out) + "</table>"


def _data_uri(path: str | os.PathLike, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _audio(path: str | os.PathLike) -> str:
    return f"<audio controls preload=none src='{_data_uri(path, 'audio/wav')}'></audio>"


def write_samples_page(path: str | os.PathLike, metrics: dict, rows: list[dict]) -> None:
    """The metrics table and every sentence, base and fine-tuned audio side by side."""
    settings = html.escape(", ".join(f"{k}={v}" for k, v in metrics["settings"].items()))
    parts = [f"<!doctype html><meta charset=utf-8><title>Samples: {html.escape(metrics['run'])}</title>{_STYLE}",
             f"<h1>Run {html.escape(metrics['run'])}: base vs fine-tuned</h1>", _table_html(rows),
             f"<p class=small>Settings: {settings}. Transcriber: {html.escape(str(metrics['transcriber']))}.</p>",
             "<h2>References (conditioning clips)</h2><table><tr><th>Clip</th><th>Seconds</th><th>Audio</th></tr>"]
    parts += [f"<tr><td>{html.escape(r['id'])}</td><td class=num>{r['duration']}</td><td>{_audio(r['file'])}</td></tr>"
              for r in metrics["references"] if Path(r["file"]).is_file()]
    parts.append("</table><h2>Sentences</h2><table><tr><th>#</th><th>Text</th><th>Base</th><th>Fine-tuned</th></tr>")
    for s in metrics["sentences"]:
        cells = []
        for m in ("base", "finetuned"):
            x = s[m]
            cells.append(f"<td>{_audio(x['file'])}<div class=small>similarity {_fmt(x['speaker_similarity'])}"
                         f", CER {_fmt(x['cer'])}<br>heard: “{html.escape(x['transcript'])}”</div></td>")
        parts.append(f"<tr><td>{s['index']}</td><td>{html.escape(s['text'])}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
    parts += [f"<p class=worse>{html.escape(w)}</p>" for w in metrics.get("warnings", [])]
    write_text(path, "\n".join(parts) + "\n")
