"""Synthesis benchmark (CPU, or CUDA when there is one): real-time factor of xttsflow's sentence-streaming
synthesis against coqui's own `Xtts.inference` called on the same sentences, for the tiny and a mid-size GPT.

    .venv/bin/python benchmarks/bench_synthesize.py            # tiny (2x64) and mid-size (8x512) GPT
    .venv/bin/python benchmarks/bench_synthesize.py --quick    # tiny only

Both sides use the same random checkpoint, reference clip, sentences, seeds and a fixed number of audio
codes per sentence (a random model never emits its stop code), so they make the same audio. The baseline
is the model as coqui's Xtts.load_checkpoint leaves it; ours folds the HiFi-GAN's weight norm once at load
and adds text splitting, a voice cache and WAV writing: the ratio is the net of both. Time to first audio
shows what streaming buys a listener on a long text, against synthesising the whole text in one call.
RTF = synthesis seconds / audio seconds (below 1 is faster than real time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = {"tiny": {"gpt_layers": 2, "gpt_n_model_channels": 64, "gpt_n_heads": 4},
           "mid": {"gpt_layers": 8, "gpt_n_model_channels": 512, "gpt_n_heads": 8}}
TEXT = ("The evening train was late again, so we waited on the cold platform. A man with a violin began to play. "
        "Nobody knew his name, but everyone listened. When the train finally arrived, the whole platform "
        "applauded. He bowed, packed his violin and walked away into the night.")


def bench(name: str, gpt: dict, work: Path, codes: int, repeats: int, device: str) -> dict:
    import numpy as np
    import torch

    from xttsflow.audio import write_wav
    from xttsflow.demo import espeak
    from xttsflow.inference import Settings, get_synthesizer, write_wav_chunks
    from xttsflow.xtts_model import build_random_checkpoint, load_xtts

    folder = build_random_checkpoint(work / name, seed=0, **gpt)
    reference = work / "reference.wav"
    write_wav(reference, 0.5 * espeak("This is the voice the model should clone, read slowly and clearly."), 22050)
    synth = get_synthesizer(folder, device=device)
    voice = synth.voice([reference])
    coqui_model = load_xtts(folder, device=synth.device)  # as coqui-tts loads it: weight norm not folded
    settings = Settings(seed=1, max_new_tokens=codes)
    sentences = synth.sentences(TEXT, "en")
    kwargs = {k: v for k, v in settings.resolved(synth.config).items()
              if k in ("temperature", "top_k", "top_p", "repetition_penalty", "length_penalty", "speed")}

    def ours():
        start = time.perf_counter()
        first = None
        chunks = []
        for chunk in synth.stream(TEXT, "en", voice, settings):
            first = first or time.perf_counter() - start
            chunks.append(chunk)
        write_wav_chunks(work / "ours.wav", iter(chunks), synth.sample_rate)
        return time.perf_counter() - start, first, sum(map(len, chunks)) / synth.sample_rate

    def coqui():  # the library's own entry point, sentence by sentence, same seeds
        start = time.perf_counter()
        wavs = []
        for i, sentence in enumerate(sentences):
            torch.manual_seed(settings.seed + i)
            wavs.append(coqui_model.inference(sentence, "en", voice.gpt_cond_latent, voice.speaker_embedding,
                                              max_new_tokens=codes, **kwargs)["wav"])
        audio = np.concatenate(wavs)
        write_wav(work / "coqui.wav", audio, synth.sample_rate)
        return time.perf_counter() - start, None, len(audio) / synth.sample_rate

    # No streaming: the listener waits for the whole text in one call (as many codes as all sentences).
    whole_start = time.perf_counter()
    torch.manual_seed(1)
    total = codes * len(sentences)
    whole_audio = coqui_model.inference(TEXT, "en", voice.gpt_cond_latent, voice.speaker_embedding,
                                        min_new_tokens=total, max_new_tokens=total, **kwargs)["wav"]
    whole = time.perf_counter() - whole_start
    ours(), coqui()  # warm-up
    runs = {"ours": [], "coqui": []}
    for i in range(repeats):  # interleaved, alternating order: a shared machine's load hits both alike
        for side in (("ours", "coqui") if i % 2 == 0 else ("coqui", "ours")):
            runs[side].append(ours() if side == "ours" else coqui())
    t_ours = statistics.median(r[0] for r in runs["ours"])
    t_coqui = statistics.median(r[0] for r in runs["coqui"])
    audio = runs["ours"][0][2]
    return {"config": name, "device": synth.device, "sentences": len(sentences), "audio_s": audio,
            "rtf_ours": t_ours / audio, "rtf_coqui": t_coqui / audio, "ratio": t_ours / t_coqui,
            "first_audio_s": statistics.median(r[1] for r in runs["ours"]), "whole_text_s": whole,
            "whole_audio_s": len(whole_audio) / synth.sample_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model only")
    parser.add_argument("--codes", type=int, default=60, help="audio codes per sentence (~46 ms each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = ["tiny"] if args.quick else list(CONFIGS)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(n, CONFIGS[n], Path(tmp), args.codes, args.repeats, args.device) for n in names]
    print(f"\nsynthesis, {args.codes} codes/sentence, torch threads {torch.get_num_threads()}, median of "
          f"{args.repeats}")
    print(f"{'config':<6} {'device':<6} {'sent':>4} {'audio s':>8} {'RTF ours':>9} {'RTF coqui':>10} "
          f"{'ours/coqui':>10} {'first audio: streamed':>22} {'one call (audio s)':>19}")
    for r in rows:
        print(f"{r['config']:<6} {r['device']:<6} {r['sentences']:>4} {r['audio_s']:>8.2f} {r['rtf_ours']:>9.3f} "
              f"{r['rtf_coqui']:>10.3f} {r['ratio']:>10.3f} {r['first_audio_s']:>21.2f}s "
              f"{r['whole_text_s']:>9.2f}s ({r['whole_audio_s']:.1f})")


if __name__ == "__main__":
    main()
