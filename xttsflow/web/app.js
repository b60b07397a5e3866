"use strict";
// The page's logic: read the models and voices (GET voices), speak with POST v1/audio/speech (OpenAI's
// request), play the WAV. Relative URLs, so it also works behind a reverse proxy under a sub-path.

const $ = (selector, root = document) => root.querySelector(selector);
const RATE = 24000; // XTTS's output rate; OpenAI's pcm format is 16-bit mono at this rate
let catalog = null;

async function problem(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || body.detail || response.statusText;
  } catch (err) {
    return `${response.status} ${response.statusText}`;
  }
}

function fillVoices(panel) {
  const model = catalog.models.find((m) => m.model === $(".model", panel).value);
  const select = $(".voice", panel);
  select.innerHTML = "";
  select.add(new Option(`default (${model.default || "evaluation references"})`, "default"));
  for (const name of model.voices) select.add(new Option(name, name));
  for (const clip of catalog.clips) select.add(new Option(`clip ${clip}`, clip));
  if (model.default) select.value = model.default;
}

async function load() {
  const response = await fetch("voices");
  if (!response.ok) throw new Error(await problem(response));
  catalog = await response.json();
  const ids = catalog.models.map((m) => m.model);
  const tuned = catalog.models.find((m) => m.kind === "finetuned");
  const defaults = [ids.includes("base") ? "base" : ids[0], tuned ? tuned.model : ids[ids.length - 1]];
  document.querySelectorAll(".panel").forEach((panel, i) => {
    const select = $(".model", panel);
    for (const m of catalog.models) select.add(new Option(`${m.model} (${m.kind})`, m.model));
    select.value = defaults[i];
    select.addEventListener("change", () => fillVoices(panel));
    fillVoices(panel);
  });
  const first = catalog.models.find((m) => m.model === defaults[1]);
  $("#language").value = first ? first.language : "en";
  $("#go").disabled = false;
}

function wavHeader(dataBytes) {
  const view = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + dataBytes, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, RATE, true); view.setUint32(28, RATE * 2, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, dataBytes, true);
  return view.buffer;
}

// Streamed: raw PCM arrives chunk by chunk; each chunk is scheduled right after the previous one.
async function playStream(response, panel, began) {
  const context = new AudioContext({ sampleRate: RATE });
  const reader = response.body.getReader();
  const parts = [];
  let carry = new Uint8Array(0), at = 0, first = null, bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const data = new Uint8Array(carry.length + value.length);
    data.set(carry); data.set(value, carry.length);
    const whole = data.length - (data.length % 2);
    carry = data.slice(whole);
    if (!whole) continue;
    const pcm = new Int16Array(data.slice(0, whole).buffer);
    parts.push(pcm); bytes += whole;
    if (first === null) {
      first = (performance.now() - began) / 1000;
      $(".status", panel).textContent = `first audio after ${first.toFixed(2)} s …`;
    }
    const buffer = context.createBuffer(1, pcm.length, RATE);
    buffer.copyToChannel(Float32Array.from(pcm, (x) => x / 32768), 0);
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    at = Math.max(at, context.currentTime + 0.05);
    source.start(at);
    at += buffer.duration;
  }
  return { blob: new Blob([wavHeader(bytes), ...parts], { type: "audio/wav" }), first };
}

async function speak(panel, request, stream) {
  const status = $(".status", panel), audio = $("audio", panel);
  const voice = $(".voice", panel).value;
  panel.dataset.state = "busy";
  status.textContent = "generating …";
  const began = performance.now();
  const body = { ...request, model: $(".model", panel).value, voice, response_format: stream ? "pcm" : "wav" };
  if (stream) body.stream_format = "audio";
  const response = await fetch("v1/audio/speech", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) {
    panel.dataset.state = "error";
    status.textContent = `error: ${await problem(response)}`;
    return;
  }
  const { blob, first } = stream ? await playStream(response, panel, began) : { blob: await response.blob(), first: null };
  const took = (performance.now() - began) / 1000;
  if (audio.src) URL.revokeObjectURL(audio.src);
  audio.src = URL.createObjectURL(blob);
  const seconds = Number(response.headers.get("X-Audio-Seconds")) || (blob.size - 44) / 2 / RATE;
  status.textContent = `${seconds.toFixed(2)} s of audio in ${took.toFixed(2)} s` +
    (first === null ? "" : `, first audio after ${first.toFixed(2)} s`) +
    ` (${body.model}, voice ${response.headers.get("X-Voice") || voice})`;
  panel.dataset.state = "done";
  if (!stream) audio.play().catch(() => {}); // autoplay may be refused; the controls are there
}

$("#speak").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#error").textContent = "";
  $("#go").disabled = true;
  const request = { input: $("#text").value, language: $("#language").value,
                    seed: Number($("#seed").value), speed: Number($("#speed").value) };
  try {
    // One after the other: the server generates one request at a time anyway.
    for (const panel of document.querySelectorAll(".panel")) await speak(panel, request, $("#stream").checked);
  } catch (err) {
    $("#error").textContent = String(err);
  } finally {
    $("#go").disabled = false;
  }
});

load().catch((err) => { $("#error").textContent = `cannot list the voices: ${err.message}`; });
