"""Audio sent over HTTP while it is generated: generation runs in a worker thread (it holds the GPU and
torch's random generator), and its chunks reach the event loop through a queue as XTTS decodes them.

The worker, not the response, owns the generation slot: it frees it when generation ends, however the
response ends (finished, client gone, server stopping), so a dropped connection never leaks a slot. A
client that goes away stops generation at the next chunk.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import numpy as np

from .audio_formats import pcm16, wav_stream_header

log = logging.getLogger(__name__)


class AudioStream:
    """Chunks of float audio from `make_chunks()` (run in a worker thread), handed over as they come."""

    def __init__(self, make_chunks: Callable[[], Iterator[np.ndarray]], on_done: Callable[[], None]):
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._stop = threading.Event()
        self.started = time.perf_counter()
        self.first_chunk_s: float | None = None
        self.samples = 0
        future = self._loop.run_in_executor(None, self._work, make_chunks)
        future.add_done_callback(lambda _: on_done())

    def _put(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server stopping): nobody reads any more
            self._stop.set()

    def _work(self, make_chunks) -> None:
        chunks = None
        try:
            chunks = make_chunks()
            for chunk in chunks:
                self._put(("chunk", chunk))
                if self._stop.is_set():
                    break
        except Exception as err:  # noqa: BLE001 - handed to the response, which ends the stream with it
            self._put(("error", err))
        else:
            self._put(("done", None))
        finally:
            if chunks is not None and hasattr(chunks, "close"):
                chunks.close()  # a generator stopped early frees the generation lock here

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        try:
            while True:
                kind, item = await self._queue.get()
                if kind == "done":
                    return
                if kind == "error":
                    log.error("stream: generation failed after %d samples: %s", self.samples, item)
                    raise item  # the connection is cut without the final chunk: the client sees a broken stream
                if self.first_chunk_s is None:
                    self.first_chunk_s = time.perf_counter() - self.started
                self.samples += len(item)
                yield item
        finally:
            self._stop.set()


async def wav_body(stream: AudioStream, sample_rate: int) -> AsyncIterator[bytes]:
    """A WAV of unknown length: the header first, then 16-bit samples as they are generated."""
    yield wav_stream_header(sample_rate)
    async for chunk in stream.chunks():
        yield pcm16(chunk)


async def pcm_body(stream: AudioStream) -> AsyncIterator[bytes]:
    async for chunk in stream.chunks():
        yield pcm16(chunk)


async def sse_body(stream: AudioStream, fmt: str, sample_rate: int) -> AsyncIterator[bytes]:
    """OpenAI's speech SSE: `speech.audio.delta` events with base64 audio, then `speech.audio.done`."""

    def event(payload: dict) -> bytes:
        return f"data: {json.dumps(payload)}\n\n".encode()

    head = wav_stream_header(sample_rate) if fmt == "wav" else b""
    async for chunk in stream.chunks():
        yield event({"type": "speech.audio.delta", "audio": base64.b64encode(head + pcm16(chunk)).decode("ascii")})
        head = b""
    yield event({"type": "speech.audio.done", "audio_seconds": round(stream.samples / sample_rate, 3)})
