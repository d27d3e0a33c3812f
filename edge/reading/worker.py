"""Reading off the camera's thread: a background worker the pipeline hands reading jobs to and never waits for.

A plate read costs several detector frames and a person's words one or two (``python -m bench
plates``), so neither can sit on the detection path. The pipeline (or the courier rule) submits a
job (a few crops of the vehicle, or a copy of a person's box) and goes on; the worker reads (and
votes), and the submitter collects finished results on a later frame. The queue is bounded: when
reading falls behind, a new job is refused (and counted), never queued without end and never
waited for.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass

import numpy as np

from gridwatch.edge.reading.logos import WordReader, WordsRead
from gridwatch.edge.reading.plates import PlateRead, PlateReader, read_voted

log = logging.getLogger(__name__)
MAX_PENDING = 8
PLATE_CROP_MARGIN = 0.25  # of the plate's height, around it, in the stored crop
READER_NICE = 19          # the lowest CPU priority: reading may wait, the camera's detection may not


@dataclass(frozen=True)
class PlateJob:
    """Crops of one vehicle (each with the vehicle's box in its pixels), all to be read and voted on."""

    key: str
    crops: tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class PlateResult:
    key: str
    read: PlateRead          # the vote's outcome
    frames: int              # crops read (the first three, more only when those left the number undecided)
    crop: np.ndarray | None  # the plate, cut from the frame that read it best (None when unreadable)


@dataclass(frozen=True)
class WordsJob:
    """A copy of one person's box (with a margin) and the box in its pixels, to be read for a company's words."""

    key: str
    image: np.ndarray
    box: np.ndarray


@dataclass(frozen=True)
class WordsResult:
    key: str
    read: WordsRead


class ReadingWorker:
    """One background reading thread; it reads plates with ``plates`` and words with ``words`` (whichever
    its owner gives it: a job of a kind it has no reader for is a programming error)."""

    def __init__(self, plates: PlateReader | None = None, words: WordReader | None = None,
                 max_pending: int = MAX_PENDING) -> None:
        self.plates, self.words = plates, words
        self._jobs: queue.Queue[PlateJob | WordsJob | None] = queue.Queue(max_pending)
        self._results: queue.Queue[PlateResult | WordsResult] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._busy = threading.Event()
        self.refused = 0

    def submit(self, job: PlateJob | WordsJob) -> bool:
        """Queue ``job`` without waiting; False (and counted) when the worker is that far behind."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="reader", daemon=True)
            self._thread.start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self.refused += 1
            log.warning("reading behind: job %s refused (%d so far)", job.key, self.refused)
            return False
        return True

    def finished(self) -> list[PlateResult | WordsResult]:
        """The results ready now (never waits)."""
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every submitted job is read (a replay's end, a test); False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        threading.Thread(target=lambda: (self._jobs.join(), done.set()), daemon=True).start()
        return done.wait(timeout_s)

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        _lower_priority()
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                self._results.put(self._read(job) if isinstance(job, PlateJob) else self._read_words(job))
            except Exception:  # a bad crop must not end reading for the node
                log.exception("reading failed for %s", job.key if job else "?")
            finally:
                self._jobs.task_done()

    def _read(self, job: PlateJob) -> PlateResult:
        assert self.plates is not None, "this worker reads no plates"
        result, reads = read_voted(self.plates, job.crops)
        crop = None
        if result.readable:
            # the vote is per character: the frame that read the voted number, else the surest frame with a strip
            best, image = max(((r, i) for r, i in reads if r.quad is not None),
                              key=lambda ri: (ri[0].plate == result.plate, ri[0].confidence))
            crop = plate_crop(image, best.quad)
        return PlateResult(job.key, result, len(reads), crop)


    def _read_words(self, job: WordsJob) -> WordsResult:
        assert self.words is not None, "this worker reads no words"
        return WordsResult(job.key, self.words.read(job.image, job.box))


def _lower_priority() -> None:
    """Make this (the reading) thread the one the OS starves first when the box is busy: detection comes first.

    On Linux a thread has its own nice value (setpriority on its thread id); elsewhere reading just shares
    the CPU. The OCR sessions run one intra-op thread, in this thread, so the whole reading is niced."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)
    except (AttributeError, OSError) as exc:
        log.info("reading runs at normal priority (%s)", exc)


def box_crop(image: np.ndarray, box: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``box`` with ``margin`` (a share of its size) around it, and the box in the copy's pixels: what a
    job carries, since the camera reuses its frame while the worker reads."""
    x1, y1, x2, y2 = (float(v) for v in box)
    pad_x, pad_y = margin * (x2 - x1), margin * (y2 - y1)
    cx1, cy1 = max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y))
    cx2, cy2 = min(image.shape[1], int(x2 + pad_x) + 1), min(image.shape[0], int(y2 + pad_y) + 1)
    return image[cy1:cy2, cx1:cx2].copy(), np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1], np.float32)


def plate_crop(image: np.ndarray, quad: np.ndarray | None) -> np.ndarray | None:
    """The plate's bounding box in ``image``, with a margin, copied."""
    if quad is None:
        return None
    x1, y1 = quad.min(axis=0)
    x2, y2 = quad.max(axis=0)
    pad = PLATE_CROP_MARGIN * (y2 - y1)
    x1, y1 = max(0, int(x1 - pad)), max(0, int(y1 - pad))
    x2, y2 = min(image.shape[1], int(x2 + pad) + 1), min(image.shape[0], int(y2 + pad) + 1)
    return image[y1:y2, x1:x2].copy() if x2 > x1 and y2 > y1 else None
