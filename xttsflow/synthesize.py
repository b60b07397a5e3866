"""Stage 6a: speak text with an XTTS checkpoint folder — the evaluation samples and the command line.

`python -m xttsflow.synthesize speak` reads any text (streamed sentence by sentence into the WAV);
`python -m xttsflow.synthesize samples` writes the evaluation sentences as NNN.wav plus a manifest.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from . import cli
from .atomic import atomic_dir, read_json, write_json
from .errors import XttsflowError
from .inference import Settings, get_synthesizer, write_wav_chunks
from .languages import xtts_language
from .options import EvaluateConfig, parse

log = logging.getLogger(__name__)

#: Evaluation sentences per language: varied length, questions, no digits (the recogniser's normaliser and
#: the text front end would otherwise disagree on how numbers are spelled).
DEFAULT_SENTENCES = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "Please call Stella and ask her to bring these things with her from the store.",
        "Where were you when the lights went out last night?",
        "A good voice should sound natural, clear and warm, even in a long sentence like this one.",
        "Thank you for listening, and have a wonderful day.",
    ],
    "pt": [
        "O rato roeu a roupa do rei de Roma.",
        "Por favor, chame a Estela e peça que ela traga estas coisas da loja.",
        "Onde você estava quando as luzes se apagaram ontem à noite?",
        "Uma boa voz deve soar natural, clara e calorosa, mesmo numa frase longa como esta.",
        "Obrigado por ouvir, e tenha um ótimo dia.",
    ],
    "es": [
        "El veloz murciélago hindú comía feliz cardillo y kiwi.",
        "Por favor, llama a Estela y pídele que traiga estas cosas de la tienda.",
        "¿Dónde estabas cuando se apagaron las luces anoche?",
        "Una buena voz debe sonar natural, clara y cálida, incluso en una frase larga como esta.",
        "Gracias por escuchar, y que tengas un día maravilloso.",
    ],
    "fr": [
        "Portez ce vieux whisky au juge blond qui fume.",
        "Appelle Stella et demande-lui d'apporter ces choses du magasin.",
        "Où étais-tu quand les lumières se sont éteintes hier soir ?",
        "Une bonne voix doit sonner naturelle, claire et chaleureuse, même dans une longue phrase comme celle-ci.",
        "Merci de votre écoute, et bonne journée.",
    ],
    "de": [
        "Franz jagt im komplett verwahrlosten Taxi quer durch Bayern.",
        "Bitte ruf Stella an und sag ihr, sie soll diese Dinge aus dem Laden mitbringen.",
        "Wo warst du, als gestern Abend die Lichter ausgingen?",
        "Eine gute Stimme klingt natürlich, klar und warm, selbst in einem langen Satz wie diesem.",
        "Danke fürs Zuhören und einen schönen Tag noch.",
    ],
    "it": [
        "Quel vituperabile xenofobo zelante assaggia il whisky ed esclama alleluja.",
        "Per favore, chiama Stella e chiedile di portare queste cose dal negozio.",
        "Dov'eri quando ieri sera si sono spente le luci?",
        "Una buona voce deve suonare naturale, chiara e calda, anche in una frase lunga come questa.",
        "Grazie per l'ascolto, e buona giornata.",
    ],
    "nl": [
        "Pa's wijze lynx bezag vroom het fikse aquaduct.",
        "Bel Stella alsjeblieft en vraag haar deze dingen uit de winkel mee te nemen.",
        "Waar was je toen gisteravond de lichten uitgingen?",
        "Een goede stem klinkt natuurlijk, helder en warm, zelfs in een lange zin als deze.",
        "Bedankt voor het luisteren, en nog een fijne dag.",
    ],
    "pl": [
        "Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
        "Zadzwoń proszę do Stelli i poproś, żeby przyniosła te rzeczy ze sklepu.",
        "Gdzie byłeś, kiedy wczoraj wieczorem zgasły światła?",
        "Dobry głos powinien brzmieć naturalnie, wyraźnie i ciepło, nawet w długim zdaniu takim jak to.",
        "Dziękuję za wysłuchanie i miłego dnia.",
    ],
    "ru": [
        "Съешь же ещё этих мягких французских булок, да выпей чаю.",
        "Пожалуйста, позвони Стелле и попроси её принести эти вещи из магазина.",
        "Где ты был, когда вчера вечером погас свет?",
        "Хороший голос должен звучать естественно, ясно и тепло, даже в длинной фразе, как эта.",
        "Спасибо, что выслушали, и хорошего дня.",
    ],
    "tr": [
        "Pijamalı hasta yağız şoföre çabucak güvendi.",
        "Lütfen Stella'yı ara ve bu eşyaları mağazadan getirmesini söyle.",
        "Dün gece ışıklar söndüğünde neredeydin?",
        "İyi bir ses, bunun gibi uzun bir cümlede bile doğal, net ve sıcak duyulmalıdır.",
        "Beni dinlediğin için teşekkür ederim, güzel bir gün geçir.",
    ],
    "cs": [
        "Příliš žluťoučký kůň úpěl ďábelské ódy.",
        "Zavolej prosím Stelle a popros ji, ať přinese tyhle věci z obchodu.",
        "Kde jsi byl, když včera večer zhasla světla?",
        "Dobrý hlas by měl znít přirozeně, jasně a vřele, i v dlouhé větě, jako je tato.",
        "Děkuji za poslech a přeji krásný den.",
    ],
    "ar": [
        "الطقس جميل اليوم في المدينة القديمة.",
        "من فضلك اتصل بستيلا واطلب منها أن تحضر هذه الأشياء من المتجر.",
        "أين كنت عندما انطفأت الأنوار الليلة الماضية؟",
        "يجب أن يبدو الصوت الجيد طبيعيا وواضحا ودافئا، حتى في جملة طويلة مثل هذه.",
        "شكرا على الاستماع، وأتمنى لك يوما رائعا.",
    ],
    "zh-cn": [
        "敏捷的棕色狐狸跳过了那只懒狗。",
        "请给斯特拉打电话，让她从商店把这些东西带来。",
        "昨天晚上灯灭的时候你在哪里？",
        "一个好的声音应该听起来自然、清晰而温暖，即使是在这样的长句子里。",
        "谢谢你的收听，祝你有美好的一天。",
    ],
    "hu": [
        "Árvíztűrő tükörfúrógép.",
        "Kérlek, hívd fel Stellát, és kérd meg, hogy hozza el ezeket a dolgokat a boltból.",
        "Hol voltál, amikor tegnap este kialudtak a fények?",
        "Egy jó hangnak természetesen, tisztán és melegen kell szólnia, még egy ilyen hosszú mondatban is.",
        "Köszönöm, hogy meghallgattál, és további szép napot!",
    ],
    "ko": [
        "다람쥐 헌 쳇바퀴에 타고파.",
        "스텔라에게 전화해서 가게에서 이 물건들을 가져오라고 부탁해 주세요.",
        "어젯밤 불이 꺼졌을 때 어디에 있었어요?",
        "좋은 목소리는 이렇게 긴 문장에서도 자연스럽고 맑고 따뜻하게 들려야 합니다.",
        "들어 주셔서 감사합니다. 좋은 하루 보내세요.",
    ],
    "ja": [
        "すばやい茶色の狐がのろまな犬を飛び越えた。",
        "ステラに電話して、お店からこれらの物を持ってくるように頼んでください。",
        "昨日の夜、電気が消えたとき、どこにいましたか？",
        "良い声は、このような長い文でも、自然で、はっきりとして、温かく聞こえるべきです。",
        "聞いてくれてありがとう。良い一日を。",
    ],
    "hi": [
        "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूद गई।",
        "कृपया स्टेला को फ़ोन करो और उससे कहो कि वह दुकान से ये चीज़ें ले आए।",
        "कल रात जब बत्तियाँ बुझ गईं तब तुम कहाँ थे?",
        "एक अच्छी आवाज़ को स्वाभाविक, साफ़ और गर्म लगना चाहिए, ऐसे लंबे वाक्य में भी।",
        "सुनने के लिए धन्यवाद, आपका दिन शुभ हो।",
    ],
}


def evaluation_sentences(cfg: EvaluateConfig, language: str) -> list[str]:
    """The configured sentences for `language` (evaluate.sentences), else the built-in ones."""
    configured = cfg.sentences.get(language)
    sentences = configured or DEFAULT_SENTENCES.get(language) or DEFAULT_SENTENCES.get(xtts_language(language) or "")
    if not sentences:
        raise XttsflowError(
            f"evaluate: no evaluation sentences for language {language!r} — add a list under "
            f"evaluate.sentences.{language} in the config (built-in: {', '.join(DEFAULT_SENTENCES)})"
        )
    limit = cfg.num_sentences
    return list(sentences[:limit] if limit else sentences)


def synthesize_samples(checkpoint_dir: str | os.PathLike, references: str | os.PathLike, cfg: EvaluateConfig,
                       out_dir: str | os.PathLike, manifest: str | os.PathLike, model_name: str,
                       threads: int | None = None) -> dict:
    """Speak the evaluation sentences into out_dir/NNN.wav; the text, seed and settings go in the manifest.

    `checkpoint_dir` is an XTTS checkpoint folder or the model.pth inside one."""
    if Path(checkpoint_dir).is_file():
        checkpoint_dir = Path(checkpoint_dir).parent
    if threads:
        import torch

        torch.set_num_threads(threads)
    refs = read_json(references)
    language = refs["language"]
    sentences = evaluation_sentences(cfg, language)
    settings = Settings.from_config(cfg.model_dump())
    synthesizer = get_synthesizer(checkpoint_dir, device=cfg.device)
    synthesizer.check_language(language)
    voice = synthesizer.voice([r["file"] for r in refs["references"]])
    samples, start = [], time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        for i, text in enumerate(sentences, 1):
            name, began = f"{i:03d}.wav", time.perf_counter()
            seconds = write_wav_chunks(tmp / name, synthesizer.stream(text, language, voice, settings),
                                       synthesizer.sample_rate)
            took = time.perf_counter() - began
            samples.append({"file": name, "text": text, "seed": settings.seed, "duration": round(seconds, 3),
                            "synthesis_seconds": round(took, 3), "rtf": round(took / max(seconds, 1e-9), 4)})
            log.info("%s %s: %.2f s of audio in %.2f s (RTF %.2f): %s", model_name, name, seconds, took,
                     took / max(seconds, 1e-9), text)
        record = {
            "model": model_name,
            "checkpoint": str(checkpoint_dir),
            "device": synthesizer.device,
            "language": language,
            "sample_rate": synthesizer.sample_rate,
            "references": [r["file"] for r in refs["references"]],
            "settings": settings.resolved(synthesizer.config),
            "samples": samples,
            "audio_seconds": round(sum(s["duration"] for s in samples), 3),
            "synthesis_seconds": round(time.perf_counter() - start, 3),
        }
        write_json(tmp / "samples.json", record)
    write_json(manifest, record)
    return record


def speak(checkpoint_dir: str | os.PathLike, references: list[str], text: str, language: str,
          out: str | os.PathLike, settings: Settings | None = None, device: str = "auto") -> float:
    """Speak any text to a WAV at the model's rate (24 kHz), written sentence by sentence; return seconds."""
    synthesizer = get_synthesizer(checkpoint_dir, device=device)
    voice = synthesizer.voice(references)
    sentences = synthesizer.sentences(text, language)
    log.info("speaking %d sentence(s) with %s", len(sentences), checkpoint_dir)
    start = time.perf_counter()
    seconds = write_wav_chunks(out, synthesizer.stream(text, language, voice, settings), synthesizer.sample_rate)
    took = time.perf_counter() - start
    log.info("wrote %s: %.2f s of audio in %.2f s (RTF %.2f)", out, seconds, took, took / max(seconds, 1e-9))
    return seconds


def _settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--repetition-penalty", type=float)
    parser.add_argument("--length-penalty", type=float)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, help="cap on audio codes per sentence (~46 ms each)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser("synthesize", __doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    say = commands.add_parser("speak", help="speak any text with a checkpoint folder and reference clip(s)")
    say.add_argument("--checkpoint", required=True, help="XTTS checkpoint folder (model.pth, config.json, vocab.json)")
    say.add_argument("--reference", action="append", required=True, help="reference clip of the voice (repeatable)")
    text = say.add_mutually_exclusive_group(required=True)
    text.add_argument("--text")
    text.add_argument("--text-file", help="a UTF-8 text file ('-' reads stdin)")
    say.add_argument("--language", default="en")
    say.add_argument("-o", "--out", required=True, help="output WAV")
    _settings_args(say)
    samples = commands.add_parser("samples", help="speak the evaluation sentences (the workflow's synthesize rule)")
    samples.add_argument("--checkpoint", required=True)
    samples.add_argument("--references", required=True, help="references.json from the references rule")
    samples.add_argument("--model-name", default="model")
    samples.add_argument("--out-dir", required=True)
    samples.add_argument("--manifest", required=True)
    samples.add_argument("--sentence", action="append", help="override the evaluation sentences (repeatable)")
    _settings_args(samples)
    args = parser.parse_args(argv)
    setup_console()
    cfg = {k: v for k, v in vars(args).items() if v is not None}
    if args.command == "speak":
        if args.text is not None:
            body = args.text
        elif args.text_file == "-":
            body = sys.stdin.read()
        else:
            try:
                body = Path(args.text_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise XttsflowError(f"--text-file {args.text_file} cannot be read as UTF-8 text ({err})") from err
        speak(args.checkpoint, args.reference, body, args.language, args.out, Settings.from_config(cfg), args.device)
    else:
        language = read_json(args.references)["language"]
        if args.sentence:
            cfg["sentences"] = {language: args.sentence}
        chosen = [*Settings.model_fields, "device", "sentences"]  # (--references is the references.json)
        options = parse(EvaluateConfig, {k: cfg[k] for k in chosen if k in cfg})
        synthesize_samples(args.checkpoint, args.references, options, args.out_dir, args.manifest, args.model_name)


if __name__ == "__main__":
    sys.exit(cli.run("synthesize", main))
