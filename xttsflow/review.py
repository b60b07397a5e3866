"""The dataset review page (reports/dataset.html): hear what the dataset holds before training on it.

Every clip the dataset stage saw, kept or rejected, is on the page and playable, with its source,
speaker, language, transcript, duration, the scores the filters judged (transcript confidence, no-speech
probability, speech ratio, speaker similarity, text tokens) and each reason it was rejected; the table
filters by status or reason, searches, and sorts by any column. Above it: counts and minutes per source,
per language, per speaker and per filter as tables, and plots of the same (duration histogram, minutes
per source, rejections per filter).

The page is one self-contained HTML file (audio as Ogg Opus data: URIs, plots as PNG data: URIs, its
script inline), so it opens offline, on its own or inside `snakemake --report`. Opus at 24 kbit/s keeps
it at ~3 kB per second of audio (a 1000-clip, 2-hour dataset: ~25 MB).
"""

from __future__ import annotations

import base64
import concurrent.futures
import html
import io
import logging
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

from . import cli
from .atomic import read_json, write_text
from .audio_formats import encode_file
from .errors import XttsflowError

log = logging.getLogger(__name__)

WEB = Path(__file__).with_name("web")
AUDIO_FORMAT, AUDIO_BITRATE, AUDIO_MIME = "opus", "24k", "audio/ogg"
#: Chromium does not open a data: URL over 2 MiB in a frame, and the Snakemake report shows each page so.
FRAME_LIMIT_BYTES = 2 * 2**20
#: Score columns: key in clips.json "scores" (or the clip) -> (heading, digits, what it means).
SCORES = {
    "confidence": ("confidence", 2, "exp(Whisper avg_logprob): 1 = certain"),
    "no_speech_prob": ("no speech", 2, "Whisper's probability that there is no speech"),
    "speech_ratio": ("speech ratio", 2, "share of 10 ms frames with speech"),
    "speaker_similarity": ("speaker sim.", 2, "cosine to the speaker's centroid"),
    "tokens": ("tokens", 0, "XTTS text tokens"),
}


def build_review(clips_json: str | os.PathLike, stats_json: str | os.PathLike, out: str | os.PathLike,
                 threads: int = 1) -> dict:
    """Write the review page for the dataset described by clips.json and stats.json; return its counts."""
    listing = read_json(clips_json)
    clips, filters = listing["clips"], listing.get("filters") or sorted({r for c in listing["clips"]
                                                                           for r in c["reasons"]})
    stats = read_json(stats_json)
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        audio = dict(zip((c["id"] for c in clips), pool.map(_audio_uri, clips), strict=True))
    page = _page(clips, filters, stats, audio)
    write_text(out, page)
    size = len(page.encode("utf-8"))
    record = {"clips": len(clips), "kept": sum(c["kept"] for c in clips), "playable": sum(bool(a) for a in
                                                                                          audio.values()),
              "bytes": size}
    log.info("review: %d clips (%d kept, %d playable), %.1f MB -> %s", record["clips"], record["kept"],
             record["playable"], size / 2**20, out)
    if size > FRAME_LIMIT_BYTES:
        log.warning("review: %s is %.1f MB; Chromium-based browsers show pages over 2 MB blank inside the "
                    "single-file Snakemake report — open %s itself, or make the report as a .zip", out,
                    size / 2**20, out)
    return record


def _audio_uri(clip: dict) -> str | None:
    path = Path(clip["file"])
    if not path.is_file():
        return None
    try:
        data = encode_file(path, AUDIO_FORMAT, AUDIO_BITRATE)
    except XttsflowError as err:
        log.warning("review: %s (%s) cannot be played: %s", clip["id"], path, err)
        return None
    return f"data:{AUDIO_MIME};base64," + base64.b64encode(data).decode("ascii")


# ---------- statistics ----------


def _minutes(clips: list[dict]) -> float:
    return sum(c["duration"] for c in clips) / 60


def group_table(clips: list[dict], key: str) -> list[dict]:
    """One row per value of `key` (source, language, speaker): clips and minutes kept and rejected."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for clip in clips:
        groups[str(clip.get(key))].append(clip)
    rows = []
    for name, members in sorted(groups.items()):
        kept = [c for c in members if c["kept"]]
        rejected = [c for c in members if not c["kept"]]
        reasons = Counter(r for c in rejected for r in c["reasons"])
        rows.append({"name": name, "clips": len(members), "kept": len(kept), "rejected": len(rejected),
                     "kept_min": _minutes(kept), "rejected_min": _minutes(rejected),
                     "speakers": sorted({c["speaker"] for c in members}),
                     "languages": sorted({str(c["language"]) for c in members}),
                     "reasons": reasons.most_common()})
    return rows


def filter_table(clips: list[dict], filters: list[str]) -> list[dict]:
    """Per filter: clips it rejected, their minutes, and how many it alone rejected (loosening it keeps them)."""
    rows = []
    for name in filters:
        hit = [c for c in clips if name in c["reasons"]]
        if hit:
            rows.append({"filter": name, "clips": len(hit), "minutes": _minutes(hit),
                         "only": sum(1 for c in hit if len(c["reasons"]) == 1)})
    return rows


# ---------- plots ----------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plots(clips: list[dict], filters: list[str], config: dict) -> list[tuple[str, str]]:
    """(alt text, PNG data URI): durations, minutes per source, rejections per filter, minutes per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kept = [c["duration"] for c in clips if c["kept"]]
    rejected = [c["duration"] for c in clips if not c["kept"]]
    low, high = config.get("min_duration"), config.get("max_duration")
    top = max([*(kept + rejected), (high or 0) + 1, 1.0])
    out = []
    fig, ax = plt.subplots(figsize=(6.4, 3.2), constrained_layout=True)
    bins = np.linspace(0, top, int(np.ceil(top * 2)) + 1)
    ax.hist([kept, rejected], bins=bins, stacked=True, color=["tab:blue", "tab:gray"],
            label=[f"kept ({len(kept)})", f"rejected ({len(rejected)})"])
    for limit in (low, high):
        if limit:
            ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1)
    ax.set(xlabel="clip duration (s)", ylabel="clips", title="Clip durations (dashed: the duration filter)")
    ax.legend()
    out.append(("clip durations, kept and rejected", _png(fig)))

    sources = group_table(clips, "source")
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.32 * len(sources)), constrained_layout=True)
    names = [r["name"] for r in sources]
    ax.barh(names, [r["kept_min"] for r in sources], color="tab:blue", label="kept")
    ax.barh(names, [r["rejected_min"] for r in sources], left=[r["kept_min"] for r in sources], color="tab:gray",
            label="rejected")
    ax.invert_yaxis()
    ax.set(xlabel="minutes", title="Minutes per source")
    ax.legend()
    out.append(("minutes kept and rejected per source", _png(fig)))

    reasons = filter_table(clips, filters)
    languages = group_table(clips, "language")
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.0), constrained_layout=True)
    left.barh([r["filter"] for r in reasons] or ["(none)"], [r["clips"] for r in reasons] or [0], color="tab:red")
    left.invert_yaxis()
    left.set(xlabel="clips", title="Rejections per filter")
    right.bar([r["name"] for r in languages], [r["kept_min"] for r in languages], color="tab:blue")
    right.set(ylabel="minutes kept", title="Minutes kept per language")
    out.append(("rejections per filter and minutes kept per language", _png(fig)))
    return out


def accounting_rows(accounting: dict) -> list[tuple[str, dict]]:
    """(name, account) for the total and each source of stats.json's `accounting`, the total first."""
    rows = [("all sources", accounting["total"])] if accounting.get("total") else []
    return rows + sorted((accounting.get("sources") or {}).items())


def accounting_plot(accounting: dict) -> tuple[str, str] | None:
    """Each source's decoded seconds as one bar: kept, then each drop (stage: reason), adding up to the whole."""
    rows = accounting_rows(accounting)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reasons = sorted({r for _, acc in rows for r in acc["dropped"]})
    fig, ax = plt.subplots(figsize=(8.4, 1.6 + 0.34 * len(rows) + 0.22 * len(reasons)), constrained_layout=True)
    names = [name for name, _ in rows]
    left = [acc["kept"] / 60 for _, acc in rows]
    ax.barh(names, left, color="tab:blue", label="kept")
    colours = plt.get_cmap("tab20")
    for i, reason in enumerate(reasons):
        width = [acc["dropped"].get(reason, 0.0) / 60 for _, acc in rows]
        ax.barh(names, width, left=left, color=colours((i + 2) % 20), label=reason)  # 0, 1: kept's blues
        left = [a + b for a, b in zip(left, width, strict=True)]
    ax.invert_yaxis()
    ax.set(xlabel="minutes decoded", title="Where every second went: kept, or dropped at which stage and why")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize="small", frameon=False)
    return "seconds decoded per source: kept and each drop", _png(fig)


def _accounting_html(accounting: dict) -> str:
    rows = accounting_rows(accounting)
    if not rows:
        return "<p class=small>No accounting in stats.json (a dataset from an older version).</p>"
    lines = [[html.escape(name), *(f"{acc[k] / 60:.2f}" for k in ("decoded", "in_segments", "transcribed", "kept")),
              html.escape("; ".join(f"{why} {sec / 60:.2f}" for why, sec in acc["dropped"].items()) or "–")]
             for name, acc in rows]
    failed = (accounting.get("total") or {}).get("failed_sources") or {}
    note = "".join(f"<li>{html.escape(source)}: {html.escape(why)}</li>" for source, why in failed.items())
    return (_table(["", "decoded min", "in segments min", "transcribed min", "kept min", "dropped min (stage: why)"],
                   lines, {1, 2, 3, 4})
            + (f"<p>Failed sources (none of their seconds reached a segment):</p><ul>{note}</ul>" if note else ""))


# ---------- the page ----------


def _num(value, digits: int) -> tuple[str, str]:
    """(data-v for sorting, text shown)."""
    if value is None:
        return "", "–"
    return repr(float(value)), f"{value:.{digits}f}"


def _table(headings: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td class=num>{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _group_html(rows: list[dict], label: str) -> str:
    lines = [[html.escape(r["name"]), html.escape(", ".join(r["speakers"] if label != "speaker" else r["languages"])),
              str(r["clips"]), str(r["kept"]), f"{r['kept_min']:.1f}", str(r["rejected"]), f"{r['rejected_min']:.1f}",
              html.escape(", ".join(f"{k} {n}" for k, n in r["reasons"]) or "–")] for r in rows]
    other = "languages" if label == "speaker" else "speakers"
    return _table([label, other, "clips", "kept", "kept min", "rejected", "rejected min", "rejected for"],
                  lines, {2, 3, 4, 5, 6})


def _clip_row(clip: dict, uri: str | None) -> str:
    status = "kept" if clip["kept"] else "rejected"
    shown = (clip.get("split") or "kept") if clip["kept"] else "rejected"
    player = (f"<audio controls preload=none src='{uri}'></audio>" if uri
              else "<span class=why>no audio (file missing or unreadable)</span>")
    cells = [player, html.escape(clip["id"]), shown, html.escape(clip["source"]), html.escape(str(clip["speaker"])),
             html.escape(str(clip["language"]))]
    numbers = [_num(clip["duration"], 2)]
    for key, (_, digits, _) in SCORES.items():
        numbers.append(_num(clip.get(key) if key == "tokens" else clip["scores"].get(key), digits))
    reasons = "".join(f"<span class=reason title='{html.escape(why, quote=True)}'>{html.escape(name)}</span> "
                      f"<span class=why>{html.escape(why)}</span><br>" for name, why in clip["reasons"].items())
    # Flags a filter did not reject for (ignore_flags, or the confidence filter's own): shown, not hidden.
    flags = "" if "flags" in clip["reasons"] else "".join(f"<span class=flag>{html.escape(f)}</span> "
                                                          for f in clip.get("flags") or [])
    text = html.escape(clip.get("text") or "")
    tds = "".join(f"<td>{c}</td>" for c in cells)
    tds += "".join(f"<td class=num data-v='{v}'>{t}</td>" for v, t in numbers)
    tds += f"<td>{reasons or ('–' if not flags else '')}{flags}</td><td class=text>{text}</td>"
    return (f"<tr class={status} data-status={status} data-split='{clip.get('split') or ''}' "
            f"data-reasons='{' '.join(clip['reasons'])}' id='clip-{html.escape(clip['id'], quote=True)}'>{tds}</tr>")


def _page(clips: list[dict], filters: list[str], stats: dict, audio: dict[str, str | None]) -> str:
    config = stats.get("config") or {}
    kept = [c for c in clips if c["kept"]]
    rejected = [c for c in clips if not c["kept"]]
    splits = Counter(c.get("split") for c in kept)
    overview = _table(["", "clips", "minutes"], [
        ["segments in", str(len(clips)), f"{_minutes(clips):.1f}"],
        ["kept", str(len(kept)), f"{_minutes(kept):.1f}"],
        ["– train", str(splits.get("train", 0)), f"{_minutes([c for c in kept if c.get('split') == 'train']):.1f}"],
        ["– val (held out)", str(splits.get("val", 0)),
         f"{_minutes([c for c in kept if c.get('split') == 'val']):.1f}"],
        ["rejected", str(len(rejected)), f"{_minutes(rejected):.1f}"],
    ], {1, 2})
    by_filter = _table(["filter", "clips rejected", "minutes", "rejected by this filter alone"],
                       [[html.escape(r["filter"]), str(r["clips"]), f"{r['minutes']:.1f}", str(r["only"])]
                        for r in filter_table(clips, filters)], {1, 2, 3})
    settings = ", ".join(f"{k}={v}" for k, v in config.items() if k in (
        "min_duration", "max_duration", "min_avg_logprob", "max_no_speech_prob", "speaker_similarity",
        "min_speech_ratio", "max_text_tokens", "reject_flagged"))
    reason_counts = Counter(r for c in clips for r in c["reasons"])
    options = [("all", f"all clips ({len(clips)})"), ("kept", f"kept ({len(kept)})"),
               ("split:train", f"kept: train ({splits.get('train', 0)})"),
               ("split:val", f"kept: val ({splits.get('val', 0)})"), ("rejected", f"rejected ({len(rejected)})")]
    options += [(f"reason:{f}", f"rejected for {f} ({reason_counts[f]})") for f in filters if reason_counts[f]]
    select = "".join(f"<option value='{v}'>{html.escape(t)}</option>" for v, t in options)
    score_heads = "".join(f"<th data-sort=num title='{html.escape(why, quote=True)}'>{html.escape(head)}</th>"
                          for head, _, why in SCORES.values())
    table = ("<table id=clips><thead><tr><th>listen</th><th data-sort=text>clip</th><th data-sort=text>status</th>"
             "<th data-sort=text>source</th><th data-sort=text>speaker</th><th data-sort=text>lang.</th>"
             f"<th data-sort=num>seconds</th>{score_heads}<th data-sort=text>rejected for / flags</th>"
             "<th data-sort=text>transcript</th></tr></thead><tbody>"
             + "".join(_clip_row(c, audio.get(c["id"])) for c in clips) + "</tbody></table>")
    tokenizer = str((stats.get("text") or {}).get("tokenizer", "–"))
    accounting = stats.get("accounting") or {}
    drawn = [*plots(clips, filters, config), *filter(None, [accounting_plot(accounting)])]
    images = "".join(f"<img alt='{html.escape(alt, quote=True)}' src='{uri}'>" for alt, uri in drawn)
    return "\n".join([
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'><title>Dataset review</title>",
        f"<style>{(WEB / 'review.css').read_text()}</style></head><body>",
        "<h1>Dataset review</h1>",
        f"<p class=small>Every clip the dataset stage saw: play it, see why it was kept or rejected. Filters: "
        f"{html.escape(settings) or 'defaults'}. Tokenizer: {html.escape(tokenizer)}.</p>",
        f"<h2>Overview</h2>{overview}",
        f"<h2>Per source</h2>{_group_html(group_table(clips, 'source'), 'source')}",
        f"<h2>Per language</h2>{_group_html(group_table(clips, 'language'), 'language')}",
        f"<h2>Per speaker</h2>{_group_html(group_table(clips, 'speaker'), 'speaker')}",
        f"<h2>Rejections per filter</h2>{by_filter}",
        f"<h2>Every second accounted for</h2>{_accounting_html(accounting)}",
        f"<h2>Plots</h2><div class=plots>{images}</div>",
        "<h2>Clips</h2><div class=controls><label>Show <select id=filter>" + select + "</select></label>"
        "<label>Search <input id=search type=search placeholder='id, text, source …'></label>"
        "<span id=shown class=small></span> <span class=small>Click a heading to sort.</span></div>",
        table,
        f"<script>{(WEB / 'review.js').read_text()}</script></body></html>",
    ]) + "\n"


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser("review", __doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("dataset"), help="a dataset folder (clips.json)")
    parser.add_argument("--out", type=Path, default=Path("reports/dataset.html"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    setup_console()
    if not (args.dataset / "clips.json").is_file():
        raise XttsflowError(f"review: {args.dataset / 'clips.json'} does not exist — re-run the dataset stage")
    record = build_review(args.dataset / "clips.json", args.dataset / "stats.json", args.out, args.threads)
    print(f"{args.out}: {record['clips']} clips ({record['kept']} kept), {record['bytes'] / 2**20:.1f} MB")


if __name__ == "__main__":
    sys.exit(cli.run("review", main))
