"""Speech with known pauses, made offline with espeak-ng: the bundled demo input and test audio.

`python -m xttsflow.demo demo/recordings` rewrites the demo recordings that the repository ships;
`python -m xttsflow.demo --language pt demo/recordings-pt` the Portuguese ones (`make demo-pt`).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from . import TRAIN_SAMPLE_RATE, cli
from .errors import XttsflowError

DEMO_SENTENCES = [
    "The old lighthouse keeper climbed the spiral stairs every evening before sunset.",
    "He trimmed the wick, polished the great glass lens, and watched the ships pass by.",
    "On stormy nights the waves crashed against the rocks with a sound like distant thunder.",
    "Sailors far out at sea looked for his light to guide them safely into the harbour.",
    "In the morning he wrote down the weather, the wind, and the names of the boats he saw.",
    "His daughter brought him bread, cheese and apples from the village market on Sundays.",
    "She told him stories about the people in town and the news from the capital city.",
    "Years later she became the keeper herself, and the light never failed a single night.",
    "Travellers still visit the tower today to read the notebooks he left behind.",
    "The pages are full of small drawings of birds, clouds and the changing colours of the sea.",
    "Some of the entries describe whales that swam close to the shore in early spring.",
    "Others record the long quiet winters when no ship came near the island for weeks.",
    "A museum near the harbour now keeps the lens, the logbooks and his worn leather boots.",
    "Children press their faces against the glass to see how the old lamp once worked.",
    "Every summer the town holds a festival with music, boats and lanterns on the water.",
    "At midnight the lanterns are released together and drift slowly out towards the horizon.",
    "The keeper's notebooks also list the tools he used to repair the lamp and the clock.",
    "When the oil ran low he rowed across the bay to fetch fresh barrels from the mainland.",
    "The crossing took most of a day, and he always carried a spare oar and a warm coat.",
    "Fishermen waved to him from their boats and sometimes shared part of their catch.",
    "In the autumn flocks of geese rested on the island before flying further south.",
    "He counted them each year and noticed that their numbers slowly grew larger.",
    "One winter the bay froze solid, and people walked across the ice to visit him.",
    "They brought soup, blankets and letters, and they stayed to watch the light begin to turn.",
    "The lamp turned once every twelve seconds, a rhythm every sailor on the coast could recognise.",
    "Even now, the town clock strikes the hour with the same slow and steady beat.",
    "Visitors often ask whether the keeper was ever lonely on his rocky island.",
    "His last entry answers them: the sea was company enough, and the light was his friend.",
]

#: The same story in Portuguese, for `make demo-pt` (espeak-ng's "pt-br" voice; no digits, so that the
#: recogniser's spelling of numbers cannot differ from the text).
DEMO_SENTENCES_PT = [
    "O velho faroleiro subia a escada em espiral todas as tardes antes do pôr do sol.",
    "Ele aparava o pavio, polia a grande lente de vidro e observava os navios passarem.",
    "Nas noites de tempestade as ondas batiam nas rochas com um som de trovão distante.",
    "Os marinheiros em alto mar procuravam a sua luz para entrar no porto em segurança.",
    "De manhã ele anotava o tempo, o vento e os nomes dos barcos que tinha visto.",
    "A sua filha trazia pão, queijo e maçãs do mercado da aldeia aos domingos.",
    "Ela contava-lhe histórias sobre as pessoas da vila e as notícias da capital.",
    "Anos mais tarde ela própria tornou-se faroleira, e a luz nunca falhou uma só noite.",
    "Ainda hoje os viajantes visitam a torre para ler os cadernos que ele deixou.",
    "As páginas estão cheias de pequenos desenhos de aves, de nuvens e das cores do mar.",
    "Algumas notas descrevem baleias que nadavam perto da costa no início da primavera.",
    "Outras registam os longos invernos calmos em que nenhum navio se aproximava da ilha.",
    "Um museu perto do porto guarda agora a lente, os diários de bordo e as suas botas de couro.",
    "As crianças encostam o rosto ao vidro para ver como a velha lâmpada funcionava.",
    "Todos os verões a vila faz uma festa com música, barcos e lanternas sobre a água.",
    "À meia noite as lanternas são soltas juntas e vão devagar em direção ao horizonte.",
    "Os cadernos do faroleiro também listam as ferramentas que usava para reparar a lâmpada.",
    "Quando o óleo acabava ele remava pela baía para buscar barris novos no continente.",
    "A travessia levava quase um dia, e ele levava sempre um remo extra e um casaco quente.",
    "Os pescadores acenavam dos seus barcos e às vezes partilhavam parte da pesca.",
    "No outono, bandos de gansos descansavam na ilha antes de voarem mais para o sul.",
    "Ele contava-os todos os anos e reparou que o seu número crescia devagar.",
    "Num inverno a baía gelou por completo, e as pessoas atravessaram o gelo para o visitar.",
    "Trouxeram sopa, cobertores e cartas, e ficaram para ver a luz começar a girar.",
    "A lâmpada dava uma volta a cada doze segundos, um ritmo que todos os marinheiros conheciam.",
    "Ainda hoje o relógio da vila bate as horas com o mesmo ritmo lento e firme.",
    "Os visitantes perguntam muitas vezes se o faroleiro se sentia sozinho na sua ilha.",
    "A sua última nota responde: o mar era companhia bastante, e a luz era a sua amiga.",
]


@dataclass
class Speech:
    """Concatenated utterances with silences between them, and where those silences are."""

    samples: np.ndarray
    sample_rate: int
    texts: list[str] = field(default_factory=list)
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (start, end) in seconds


def espeak(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50,
           sample_rate: int = TRAIN_SAMPLE_RATE) -> np.ndarray:
    """One utterance from espeak-ng as float32 at `sample_rate`, leading/trailing silence trimmed."""
    exe = shutil.which("espeak-ng")
    if not exe:
        raise XttsflowError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    wav = subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         capture_output=True, check=True).stdout
    data, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = np.gcd(rate, sample_rate)
        data = resample_poly(data, sample_rate // g, rate // g).astype(np.float32)
    voiced = np.flatnonzero(np.abs(data) > 1e-3)
    return data[voiced[0]: voiced[-1] + 1] if voiced.size else data


def speech_with_pauses(texts: list[str], pauses_s: list[float], voice: str = "en-us", speed: int = 160,
                       pitch: int = 50, lead_s: float = 0.5, noise_dbfs: float = -70.0,
                       sample_rate: int = TRAIN_SAMPLE_RATE, seed: int = 0) -> Speech:
    """Utterances joined by the given pauses (len(texts) - 1 of them), over a faint noise floor."""
    if len(pauses_s) != len(texts) - 1:
        raise ValueError("need one pause between each pair of texts")
    rng = np.random.default_rng(seed)
    parts, pauses, t = [np.zeros(int(lead_s * sample_rate), np.float32)], [], lead_s
    for i, text in enumerate(texts):
        utterance = espeak(text, voice, speed, pitch, sample_rate) * 0.5
        parts.append(utterance)
        t += len(utterance) / sample_rate
        if i < len(pauses_s):
            n = int(round(pauses_s[i] * sample_rate))
            parts.append(np.zeros(n, np.float32))
            pauses.append((t, t + n / sample_rate))
            t += n / sample_rate
    parts.append(np.zeros(int(lead_s * sample_rate), np.float32))
    samples = np.concatenate(parts)
    samples += (rng.standard_normal(samples.size) * 10 ** (noise_dbfs / 20)).astype(np.float32)
    return Speech(samples.astype(np.float32), sample_rate, list(texts), pauses)


#: The demo story per language: its sentences, espeak-ng voice and file names.
DEMO_STORIES = {"en": (DEMO_SENTENCES, "en-us", "lighthouse"), "pt": (DEMO_SENTENCES_PT, "pt-br", "farol")}


def write_demo_recordings(out_dir: str | Path, language: str = "en") -> list[Path]:
    """The three demo recordings (mp3, ogg/opus, m4a/aac): one speaker, pauses of 0.25 to 1.2 s."""
    if language not in DEMO_STORIES:
        raise XttsflowError(f"demo: no demo story in {language!r} (available: {', '.join(DEMO_STORIES)})")
    sentences, voice, stem = DEMO_STORIES[language]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    third = len(sentences) // 3
    written = []
    for name, codec_args, texts in [
        (f"{stem} part 1.mp3", ["-c:a", "libmp3lame", "-b:a", "48k"], sentences[:third]),
        (f"{stem} part 2.ogg", ["-c:a", "libopus", "-b:a", "32k"], sentences[third: 2 * third]),
        (f"{stem} part 3.m4a", ["-c:a", "aac", "-b:a", "48k"], sentences[2 * third:]),
    ]:
        pauses = [float(p) for p in rng.choice([0.25, 0.7, 0.9, 1.2], size=len(texts) - 1)]
        speech = speech_with_pauses(texts, pauses, voice=voice, speed=150, seed=len(written))
        wav = io.BytesIO()
        sf.write(wav, speech.samples, speech.sample_rate, format="WAV", subtype="PCM_16")
        dest = out_dir / name
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "wav", "-i", "-", *codec_args,
                        "-map_metadata", "-1", str(dest)], input=wav.getvalue(), check=True)
        written.append(dest)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("demo", __doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="demo/recordings")
    parser.add_argument("--language", default="en", choices=sorted(DEMO_STORIES), help="the story's language")
    args = parser.parse_args(argv)
    for path in write_demo_recordings(args.out_dir, args.language):
        print(path)


if __name__ == "__main__":
    sys.exit(cli.run("demo", main))
