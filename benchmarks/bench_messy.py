"""The labelled "messy" recording: how much clean target speech the dataset keeps, and what else it keeps.

    .venv/bin/python benchmarks/bench_messy.py [--baseline 9723098] [--keep DIR] [--denoise]

Builds one recording from the LJSpeech clips in ../shared/fixtures (the target speaker) plus two espeak-ng
voices (other speakers), synthetic music, noise, target speech over music (-6 dB SNR) and over noise (5 dB
SNR), every region labelled per sample and separated by 1 s pauses. Runs the real workflow to
`until: dataset` twice - this checkout (with the quality screen on: dataset.min_dnsmos_bak 3.0) and the
baseline commit (`git archive` into a temporary folder, its own defaults) - and from each kept clip's place
in the recording (segments manifest) prints:
  recall: the share of the clean target speech seconds that the dataset kept (target >= 95%);
  contamination: the share of the kept non-silent seconds that are anything else (target <= 2%).

With --denoise it runs this checkout twice instead, segment.denoise off and on (both with the quality
screen, dataset.min_dnsmos_bak 3.0), and prints side by side: the mean DNSMOS OVRL/BAK/SIG and SNR of the
kept clips (quality/{source}.json), recall, contamination, and the denoise job's time x real time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xttsflow.audio import read_wav, write_wav  # noqa: E402
from xttsflow.demo import DEMO_SENTENCES, espeak  # noqa: E402

SR = 22050
FIXTURES = Path(os.environ.get("XTTSFLOW_FIXTURES", REPO.parent / "shared" / "fixtures"))
LABELS = ("silence", "target", "other", "music", "noise", "target+music", "target+noise")


def music(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    notes = rng.choice([220.0, 246.9, 277.2, 293.7, 329.6, 370.0, 415.3, 440.0], size=4)
    chord = sum(np.sin(2 * np.pi * f * t) * np.exp(-3 * (t % 0.5)) for f in notes)  # plucked, 2 notes/s
    return (0.2 * chord / 4).astype(np.float32)


def at_snr(speech: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    bg = np.resize(background, speech.size)
    bg *= np.sqrt(np.mean(speech ** 2) / np.mean(bg ** 2) / 10 ** (snr_db / 10))
    return np.clip(speech + bg, -1, 1).astype(np.float32)


def build(path: Path) -> np.ndarray:
    """The recording, and its label (index into LABELS) per sample."""
    rng = np.random.default_rng(10)
    lj = [read_wav(p)[0] for p in sorted((FIXTURES / "ljspeech").glob("*/*.wav"))]
    regions: list[tuple[str, np.ndarray]] = []
    target, mixed = lj[:-6], lj[-6:]
    others = [espeak(s, voice="en-us", speed=150) * 0.5 for s in DEMO_SENTENCES[:4]]
    synthetic = [espeak(s, voice="en+f3", speed=175, pitch=70) * 0.5 for s in DEMO_SENTENCES[4:8]]
    for k, clip in enumerate(target):
        regions.append(("target", clip))
        if k % 4 == 1 and others:
            regions.append(("other", others.pop()))
        if k % 4 == 3 and synthetic:
            regions.append(("other", synthetic.pop()))
        if k == 6:
            regions.append(("music", music(8 * SR, 1)))
        if k == 12:
            regions.append(("noise", (rng.standard_normal(6 * SR) * 0.03).astype(np.float32)))
    for k, clip in enumerate(mixed):
        if k % 2:
            regions.append(("target+music", at_snr(clip, music(clip.size, 2 + k), -6)))
        else:
            regions.append(("target+noise", at_snr(clip, rng.standard_normal(clip.size).astype(np.float32), 5)))
    pause = np.zeros(SR, np.float32)
    parts, labels = [pause], [np.zeros(SR, np.int8)]
    for name, samples in regions:
        parts += [samples.astype(np.float32), pause]
        labels += [np.full(samples.size, LABELS.index(name), np.int8), np.zeros(SR, np.int8)]
    audio = np.concatenate(parts)
    audio += (rng.standard_normal(audio.size) * 10 ** (-70 / 20)).astype(np.float32)
    write_wav(path, audio, SR)
    label = np.concatenate(labels)
    # a target clip's own pauses between words are target speech's time too; only the gaps are silence
    return label


def run_workflow(snakefile: Path, work: Path, config: dict, env: dict) -> float:
    (work / "config").mkdir(parents=True, exist_ok=True)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(work),
                           "--cores", "2"], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"workflow failed in {work}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def placed_clips(work: Path, dataset: str = "dataset") -> list[dict]:
    """Every segment (manifests) and every piece the dataset cut from one (clips.json), with its place in the
    recording (start, end in seconds)."""
    placed = [seg for manifest in (work / "segments").glob("*.json")
              for seg in json.loads(manifest.read_text())["segments"]]
    listing = work / dataset / "clips.json"
    if listing.is_file():  # older code (the baseline) writes no pieces
        placed += [c for c in json.loads(listing.read_text())["clips"] if c.get("cut_from")]
    return placed


def score(work: Path, label: np.ndarray) -> dict:
    kept = {row[0] for row in csv.reader((work / "dataset" / "metadata.csv").open(), delimiter="|")}
    in_kept = np.zeros(label.size, bool)
    for seg in placed_clips(work):
        if seg["id"] in kept:
            in_kept[round(seg["start"] * SR): round(seg["end"] * SR)] = True
    speech = label > 0
    target = label == LABELS.index("target")
    kept_speech = in_kept & speech
    return {"clips": len(kept), "recall": float((in_kept & target).sum() / target.sum()),
            "contamination": float((kept_speech & ~target).sum() / max(kept_speech.sum(), 1)),
            "kept_s": float(kept_speech.sum() / SR),
            "kept_by_label_s": {name: round(float((in_kept & (label == i)).sum() / SR), 1)
                                for i, name in enumerate(LABELS) if i}}


def kept_quality(work: Path) -> dict:
    """Mean DNSMOS (OVRL, BAK, SIG) and SNR of the clips the dataset kept (quality screen on)."""
    kept = {row[0] for row in csv.reader((work / "dataset" / "metadata.csv").open(), delimiter="|")}
    clips = [clip for path in (work / "quality").glob("*.json")
             for cid, clip in json.loads(path.read_text())["clips"].items() if cid in kept]
    return {k: float(np.mean([c[k] for c in clips])) if clips else float("nan")
            for k in ("ovrl", "bak", "sig", "snr_db")}


def quality_by_label(work: Path, label: np.ndarray) -> dict[str, str]:
    """Mean DNSMOS and SNR of the kept clips by what most of their speech is (clean target, target over
    noise, ...): the same clips' scores with and without denoising, not only the mix of what was kept."""
    kept = {row[0] for row in csv.reader((work / "dataset" / "metadata.csv").open(), delimiter="|")}
    scores = {cid: clip for path in (work / "quality").glob("*.json")
              for cid, clip in json.loads(path.read_text())["clips"].items()}
    groups: dict[str, list[dict]] = {}
    for manifest in (work / "segments").glob("*.json"):
        for seg in json.loads(manifest.read_text())["segments"]:
            if seg["id"] not in kept:
                continue
            span = label[round(seg["start"] * SR): round(seg["end"] * SR)]
            speech = span[span > 0]
            main = LABELS[int(np.bincount(speech, minlength=len(LABELS)).argmax())] if speech.size else "silence"
            groups.setdefault(main, []).append(scores[seg["id"]])
    return {name: f"{len(clips)} clips, OVRL {np.mean([c['ovrl'] for c in clips]):.2f} BAK "
                  f"{np.mean([c['bak'] for c in clips]):.2f} SIG {np.mean([c['sig'] for c in clips]):.2f} SNR "
                  f"{np.mean([c['snr_db'] for c in clips]):.1f} dB" for name, clips in sorted(groups.items())}


def denoise_speed(work: Path, audio_s: float) -> float | None:
    """The denoise job's wall time x real time (its benchmark: file), or None where it did not run."""
    tsv = list((work / "logs" / "denoise").glob("*.benchmark.tsv"))
    if not tsv:
        return None
    rows = list(csv.DictReader(tsv[0].open(), delimiter="\t"))
    return float(rows[-1]["s"]) / audio_s


def compare_denoise(root: Path, common: dict, label: np.ndarray) -> None:
    screen = {"min_dnsmos_bak": 3.0}
    runs = {"denoise off": {**common, "dataset": screen},
            "denoise on": {**common, "dataset": screen, "segment": {"denoise": True}}}
    rows = {}
    for name, config in runs.items():
        work = root / name.replace(" ", "-")
        took = run_workflow(REPO / "Snakefile", work, config, {**os.environ, "PYTHONPATH": str(REPO)})
        rows[name] = {**score(work, label), **kept_quality(work), "speed": denoise_speed(work, label.size / SR),
                      "seconds": round(took, 1), "by_label": quality_by_label(work, label)}
    print(f"{'':34}" + "".join(f"{name:>16}" for name in rows))
    lines = [("kept clips", "clips", "{:.0f}"), ("kept speech s", "kept_s", "{:.1f}"),
             ("DNSMOS OVRL of kept (mean)", "ovrl", "{:.2f}"), ("DNSMOS BAK of kept (mean)", "bak", "{:.2f}"),
             ("DNSMOS SIG of kept (mean)", "sig", "{:.2f}"), ("SNR of kept, dB (mean)", "snr_db", "{:.1f}"),
             ("clean-target recall %", "recall", "{:.1%}"), ("contamination %", "contamination", "{:.1%}"),
             ("denoise time x real time", "speed", "{:.3f}"), ("workflow s", "seconds", "{:.1f}")]
    for title, key, fmt in lines:
        print(f"{title:34}" + "".join(f"{'-' if r[key] is None else fmt.format(r[key]):>16}" for r in rows.values()))
    for name, r in rows.items():
        print(f"{name}: kept by label {r['kept_by_label_s']}")
        for group, line in r["by_label"].items():
            print(f"  kept, mostly {group}: {line}")


def compare_thresholds(root: Path, common: dict, label: np.ndarray, pairs: list[tuple[float, float]]) -> None:
    """The speaker screen's two thresholds swept in one working folder: only the dataset job re-runs."""
    work = root / "thresholds"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    screen = {"min_dnsmos_bak": 3.0}
    print(f"{'speaker_similarity':>18} {'window_similarity':>18} {'kept clips':>10} {'recall %':>9} "
          f"{'contamination %':>16} {'kept s':>7}  kept by label s")
    for clip_t, window_t in pairs:
        config = {**common, "dataset": {**screen, "speaker_similarity": clip_t, "window_similarity": window_t}}
        run_workflow(REPO / "Snakefile", work, config, env)
        r = score(work, label)
        print(f"{clip_t:18.2f} {window_t:18.2f} {r['clips']:10d} {100 * r['recall']:9.1f} "
              f"{100 * r['contamination']:16.1f} {r['kept_s']:7.1f}  {r['kept_by_label_s']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="9723098")
    parser.add_argument("--keep", help="keep the working folders here")
    parser.add_argument("--denoise", action="store_true", help="compare segment.denoise off and on instead")
    parser.add_argument("--thresholds", nargs="+", metavar="CLIP:WINDOW",
                        help="sweep dataset.speaker_similarity:window_similarity pairs instead, e.g. 0.75:0.65 0.7:0.6")
    args = parser.parse_args()
    if not (FIXTURES / "ljspeech").is_dir():
        raise SystemExit(f"needs the LJSpeech fixtures at {FIXTURES / 'ljspeech'} (set XTTSFLOW_FIXTURES)")
    root = Path(args.keep or tempfile.mkdtemp(prefix="messy-"))
    recording = root / "messy.wav"
    recording.parent.mkdir(parents=True, exist_ok=True)
    label = build(recording)
    seconds = {name: round(float((label == i).sum() / SR), 1) for i, name in enumerate(LABELS)}
    print(f"recording: {label.size / SR:.0f} s; seconds by label: {seconds}")
    base_config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    common = {**base_config, "sources": [{"path": str(recording), "speaker": "lj", "language": "en"}],
              "until": "dataset", "segment": {}, "dataset": {}}
    if args.denoise:
        compare_denoise(root, common, label)
        return
    if args.thresholds:
        compare_thresholds(root, common, label, [tuple(map(float, pair.split(":"))) for pair in args.thresholds])
        return
    baseline_dir = root / "baseline-code"
    if not baseline_dir.is_dir():
        baseline_dir.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline_dir)], input=archive, check=True)
    runs = {
        f"baseline {args.baseline}": (baseline_dir, common, baseline_dir),
        "this checkout (min_dnsmos_bak 3.0)": (REPO, {**common, "dataset": {"min_dnsmos_bak": 3.0}}, REPO),
    }
    results = {}
    for name, (code, config, pythonpath) in runs.items():
        work = root / name.split()[0]
        took = run_workflow(code / "Snakefile", work, config, {**os.environ, "PYTHONPATH": str(pythonpath)})
        results[name] = {**score(work, label), "seconds": round(took, 1)}
    for name, r in results.items():
        print(f"{name}: kept {r['clips']} clips ({r['kept_s']:.1f} s): clean target kept {100 * r['recall']:.1f}% "
              f"(target >= 95%), other {100 * r['contamination']:.1f}% of kept (target <= 2%); "
              f"kept by label {r['kept_by_label_s']}; workflow {r['seconds']} s")


if __name__ == "__main__":
    main()
