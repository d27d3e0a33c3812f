"""``python -m bench plates``: can the edge read a fire-lane car's plate and a courier's company words?

Plates are rendered at run time (``bench/plate_render.py``: real formats and colours, random valid
numbers, nothing stored) onto the vehicles the detector finds in real frames of the shared car
clips, turned up to ±25° in perspective, 12-48 px high, then blurred, noised, darkened to dusk and
JPEG-compressed at quality 30-90 like a camera at night; each seed of ``SEEDS`` renders its own plates
and words, and the report pools them. Per height bucket: the exact-read rate
and the character accuracy of one frame, and the exact and wrong rates after the node's vote
(:func:`~gridwatch.edge.reading.plates.read_voted`: three frames, up to five when those leave the
number undecided; fresh noise and compression each, the car standing still). False plates: the reader
on every vehicle box of the unmodified clips, whose real plates are too small to read, must
report none. Cost: one reading (locate + recognise) as a ratio to the detector's time per frame,
and per incident (three frames at its start, three before its end). The same for the company
words (美团外卖, 饿了么, 顺丰速运, 京东物流) on the person boxes of the worker clip, and the
person boxes of the unmodified clip must name no company.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from bench.common import interleaved, median, sampled_frames, spread, table
from bench.detector import detector_for
from bench.plate_render import COMPANY_PRINT, plate_scene, random_plate, words_scene
from bench.transforms import blur, brightness, chain, jpeg, noise
from gridwatch.edge.perception.detect import OnnxDetector
from gridwatch.edge.reading.engine import TextEngine
from gridwatch.edge.reading.logos import COMPANY_WORDS, WordReader
from gridwatch.edge.reading.plate_format import PlateColour
from gridwatch.edge.reading.plates import FIRST_VOTE_FRAMES, MAX_VOTE_FRAMES, PlateReader, read_voted

CAR_CLIPS = ("car-detection.mp4", "person-bicycle-car-detection.gif")
WORKER_CLIP = "worker-zone-detection.gif"
VEHICLES = ("car", "truck", "bus")
PLATE_BUCKETS = ((12, 16), (16, 20), (20, 28), (28, 36), (36, 48))
WORD_BUCKETS = ((12, 20), (20, 28), (28, 48))
PLATES_PER_BUCKET = 48
WORDS_PER_BUCKET = 12
MIN_CARRIER_PX = 24  # vehicle/person boxes smaller than this carry no rendered plate
# Each seed renders its own plates and words; the report pools them. One seed's 48 plates a bucket swing
# by a few plates (seed 23: 89.6 % at >= 28 px, seed 7: 97.9 %), so the default is two seeds' worth.
SEEDS = (23, 7)
UNMODIFIED_FPS = 5.0  # every frame a camera samples, for the false plates and words


@dataclass
class Bucket:
    low: int
    high: int
    samples: int = 0
    exact: int = 0
    characters: int = 0
    characters_right: int = 0
    unreadable: int = 0
    voted_exact: int = 0
    voted_wrong: int = 0

    def row(self) -> list[object]:
        n = max(1, self.samples)
        return [f"{self.low}-{self.high} px", self.samples, f"{self.exact / n:.0%}",
                f"{self.characters_right / max(1, self.characters):.0%}", f"{self.unreadable / n:.0%}",
                f"{self.voted_exact / n:.0%}", f"{self.voted_wrong / n:.0%}"]


@dataclass
class PlatesReport:
    plates: list[Bucket]
    words: list[Bucket]
    vehicle_boxes: int
    false_plates: list[str]
    person_boxes: int
    false_words: list[str]
    read_s: list[float] = field(default_factory=list)
    reads_per_vote: list[int] = field(default_factory=list)
    words_s: list[float] = field(default_factory=list)
    detect_s: list[float] = field(default_factory=list)
    wrong_reads: list[str] = field(default_factory=list)  # "height px: plate -> what the vote read"

    def bucket(self, low: int) -> Bucket:
        return next(b for b in self.plates if b.low == low)

    def exact_share(self, low: int, high: int, voted: bool = True) -> float:
        chosen = [b for b in self.plates if b.low >= low and b.high <= high]
        hits = sum(b.voted_exact if voted else b.exact for b in chosen)
        return hits / max(1, sum(b.samples for b in chosen))


def carriers(detector: OnnxDetector, clips: tuple[str, ...], classes: tuple[str, ...], fps: float,
             min_px: int = MIN_CARRIER_PX) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, box) of every detected object of ``classes`` at least ``min_px`` high in the clips' frames."""
    found = []
    for clip in clips:
        for frame in sampled_frames(clip, fps):
            detections = detector.detect(frame)
            for box, class_id in zip(detections.boxes, detections.class_ids, strict=True):
                if detector.class_names[class_id] in classes and box[3] - box[1] >= min_px:
                    found.append((frame, box))
    return found


def camera_at_dusk(rng: np.random.Generator) -> tuple[float, float, float, int]:
    """(brightness, blur sigma, noise sigma, JPEG quality) of one frame, drawn in the issue's ranges."""
    return float(rng.uniform(0.4, 1.0)), float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 6.0)), \
        int(rng.integers(30, 91))


def degrade(image: np.ndarray, settings: tuple[float, float, float, int], seed: int) -> np.ndarray:
    light, sigma, grain, quality = settings
    steps = [brightness(light), noise(grain, seed), jpeg(quality)]
    if sigma > 0.05:
        steps.insert(1, blur(sigma))
    return chain(*steps)(image)


def _characters_right(truth: str, read: str | None) -> int:
    return 0 if read is None or len(read) != len(truth) else sum(a == b for a, b in zip(truth, read, strict=True))


def measure_plates(reader: PlateReader, cars: list[tuple[np.ndarray, np.ndarray]], report: PlatesReport,
                   rng: np.random.Generator, per_bucket: int) -> None:
    colours = list(PlateColour)
    for bucket in report.plates:
        for n in range(per_bucket):
            frame, box = cars[int(rng.integers(len(cars)))]
            colour = colours[n % len(colours)]
            plate = random_plate(rng, colour)
            height = int(rng.integers(bucket.low, bucket.high))
            scene = plate_scene(frame, box, plate, colour, height, float(rng.uniform(-25, 25)),
                                float(rng.uniform(-3, 3)), rng)
            settings = camera_at_dusk(rng)
            seeds = [int(rng.integers(1 << 30)) for _ in range(FIRST_VOTE_FRAMES)]
            extra = np.random.default_rng(seeds[0])  # the frames read only when undecided: the scenes stay the same
            seeds += [int(extra.integers(1 << 30)) for _ in range(MAX_VOTE_FRAMES - FIRST_VOTE_FRAMES)]
            crops = [(degrade(scene.image, settings, seed=seed), scene.vehicle_box) for seed in seeds]
            started = time.perf_counter()
            voted, reads = read_voted(reader, crops)
            report.read_s.append((time.perf_counter() - started) / len(reads))
            report.reads_per_vote.append(len(reads))
            first = reads[0][0]
            bucket.samples += 1
            bucket.exact += first.plate == plate
            bucket.unreadable += not first.readable
            bucket.characters += len(plate)
            bucket.characters_right += _characters_right(plate, first.plate)
            bucket.voted_exact += voted.plate == plate
            if voted.readable and voted.plate != plate:
                bucket.voted_wrong += 1
                report.wrong_reads.append(f"{height} px {colour.value}: {plate} -> {voted.plate}")


def measure_words(reader: WordReader, people: list[tuple[np.ndarray, np.ndarray]], report: PlatesReport,
                  rng: np.random.Generator, per_bucket: int) -> None:
    words = list(COMPANY_PRINT)
    company = {word: c for c, ws in COMPANY_WORDS.items() for word in ws}
    for bucket in report.words:
        for n in range(per_bucket):
            frame, box = people[int(rng.integers(len(people)))]
            word = words[n % len(words)]
            height = int(rng.integers(bucket.low, bucket.high))
            image, person = words_scene(frame, box, word, height, float(rng.uniform(-20, 20)), rng)
            image = degrade(image, camera_at_dusk(rng), seed=int(rng.integers(1 << 30)))
            started = time.perf_counter()
            read = reader.read(image, person)
            report.words_s.append(time.perf_counter() - started)
            bucket.samples += 1
            bucket.exact += read.company == company[word]
            bucket.unreadable += read.company is None
            bucket.voted_wrong += read.company is not None and read.company != company[word]
            bucket.characters += len(word)
            bucket.characters_right += max((sum(a == b for a, b in zip(word, line[i:i + len(word)], strict=False))
                                            for line in read.lines for i in range(max(1, len(line) - len(word) + 1))),
                                           default=0)


def measure(per_bucket: int = PLATES_PER_BUCKET, words_per_bucket: int = WORDS_PER_BUCKET,
            fps: float = 2.0) -> PlatesReport:
    detector = detector_for(1)
    engine = TextEngine(threads=1)
    plates, words = PlateReader(engine), WordReader(engine)
    cars = carriers(detector, CAR_CLIPS, VEHICLES, fps)
    people = carriers(detector, (WORKER_CLIP,), ("person",), fps)
    all_cars = carriers(detector, CAR_CLIPS, VEHICLES, UNMODIFIED_FPS, min_px=0)
    all_people = carriers(detector, (WORKER_CLIP,), ("person",), UNMODIFIED_FPS, min_px=0)
    report = PlatesReport([Bucket(*b) for b in PLATE_BUCKETS], [Bucket(*b) for b in WORD_BUCKETS],
                          len(all_cars), [], len(all_people), [])
    # false plates and words: every box of the unmodified clips
    for frame, box in all_cars:
        read = plates.read(frame, box)
        if read.readable:
            report.false_plates.append(read.plate or "")
        started = time.perf_counter()
        detector.detect(frame)
        report.detect_s.append(time.perf_counter() - started)
    for frame, box in all_people:
        read = words.read(frame, box)
        if read.company:
            report.false_words.append(f"{read.company}:{read.word}")
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        measure_plates(plates, cars, report, rng, per_bucket)
        measure_words(words, people, report, rng, words_per_bucket)
    return report


def main() -> None:
    report = measure()
    headers = ["height", "n", "exact (1 frame)", "characters", "unreadable", "exact (vote of 3-5)", "wrong (vote)"]
    print("plates: rendered on vehicles of", ", ".join(CAR_CLIPS), "(±25° perspective, blur, noise, dusk, JPEG 30-90)")
    print(table(headers, [b.row() for b in report.plates]))
    print(f"exact after the vote: {report.exact_share(28, 48):.1%} at >= 28 px, {report.exact_share(20, 28):.1%} "
          f"at 20-28 px (acceptance: >= 90 % and >= 50 %)")
    print(f"wrong voted reads: {len(report.wrong_reads)} {'; '.join(report.wrong_reads)}")
    print(f"false plates on {report.vehicle_boxes} unmodified vehicle boxes: {len(report.false_plates)} "
          f"{report.false_plates or ''}")
    read_s, detect_s = median(report.read_s), median(report.detect_s)
    per_incident = 2 * float(np.mean(report.reads_per_vote))  # a vote when it starts, another before it ends
    print(f"one plate reading: {read_s * 1000:.0f} ms = {read_s / detect_s:.1f} x a detector frame "
          f"({detect_s * 1000:.0f} ms); per incident ({per_incident:.1f} readings on average, "
          f"{FIRST_VOTE_FRAMES}-{MAX_VOTE_FRAMES} per vote): {per_incident * read_s / detect_s:.1f} detector frames, "
          f"off the detection path")
    print()
    print("company words: rendered on the person boxes of", WORKER_CLIP, "(±20°, blur, noise, dusk, JPEG 30-90)")
    word_rows = [[f"{b.low}-{b.high} px", b.samples, f"{b.exact / max(1, b.samples):.0%}",
                  f"{b.characters_right / max(1, b.characters):.0%}", f"{b.unreadable / max(1, b.samples):.0%}",
                  f"{b.voted_wrong / max(1, b.samples):.0%}"] for b in report.words]
    print(table(["height", "n", "company right", "characters", "nothing read", "wrong company"], word_rows))
    print(f"false companies on {report.person_boxes} unmodified person boxes: {len(report.false_words)} "
          f"{report.false_words or ''}")
    print(f"one person's words: {median(report.words_s) * 1000:.0f} ms = "
          f"{median(report.words_s) / detect_s:.1f} x a detector frame")


OVERHEAD_ROUNDS = 5
OVERHEAD_S = 3.0


def _detect_for(detector: OnnxDetector, frames: list[np.ndarray], seconds: float) -> float:
    """Frames/s of the detection path (the detector on the camera's sampled frames) over ``seconds``."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        detector.detect(frames[done % len(frames)])
        done += 1
    return done / (time.perf_counter() - started)


def overhead(rounds: int = OVERHEAD_ROUNDS, seconds: float = OVERHEAD_S) -> dict:
    """The detection path's frame rate alone and while the node's reading worker reads plates without pause,
    in interleaved rounds (``python -m bench overhead`` runs it after the pipeline's own overhead).

    The worker is the node's own (:class:`~gridwatch.edge.reading.worker.ReadingWorker`, fed three-crop jobs
    as fast as it takes them): the worst case, a fire lane that never stops starting incidents. The camera
    thread never waits on it; what this measures is whether the two CPU-bound threads share the box (the
    reading thread runs at nice 19, so the OS gives detection the CPU first)."""
    from gridwatch.edge.reading.worker import PlateJob, ReadingWorker

    detector = detector_for(1)
    frames = sampled_frames(CAR_CLIPS[0])[:60]
    cars = carriers(detector, CAR_CLIPS, VEHICLES, 2.0)
    rng = np.random.default_rng(SEEDS[0])
    scenes = []
    for n in range(6):
        frame, box = cars[n % len(cars)]
        colour = list(PlateColour)[n % 4]
        scene = plate_scene(frame, box, random_plate(rng, colour), colour, 32, 10.0, 0.0, rng)
        scenes.append((scene.image, scene.vehicle_box.astype(np.float32)))
    worker = ReadingWorker(plates=PlateReader(TextEngine(threads=1)), max_pending=2)

    def while_reading() -> tuple[float, int]:
        stop, read = threading.Event(), [0]

        def feed() -> None:
            pending = 0
            while not stop.is_set():
                pending -= len(worker.finished())
                if pending < 1 and worker.submit(PlateJob(f"bench:{read[0]}", tuple(scenes[:3]))):
                    read[0] += 1
                    pending += 1
                time.sleep(0.01)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        rate = _detect_for(detector, frames, seconds)
        stop.set()
        feeder.join()
        worker.wait_idle(30)
        worker.finished()
        return rate, read[0]

    results = interleaved(rounds, {"detection alone": lambda: (_detect_for(detector, frames, seconds), 0),
                                   "detection while plates are read": while_reading})
    worker.close()
    alone = [r for r, _ in results["detection alone"]]
    reading = [r for r, _ in results["detection while plates are read"]]
    ratios = [b / a for a, b in zip(alone, reading, strict=True)]
    jobs = sum(n for _, n in results["detection while plates are read"])
    print(f"\n## Plate reading beside detection: {rounds} interleaved rounds of {seconds:.0f} s; median (min-max)\n")
    print(table(["run", "detector frames/s"], [["detection alone", spread(alone)],
                                               ["detection while plates are read", spread(reading)],
                                               ["ratio, per round", spread(ratios)]]))
    print(f"\nSUMMARY reading overhead: the detection path keeps {median(ratios):.2f}x its frame rate "
          f"({min(ratios):.2f}-{max(ratios):.2f}) while the reading worker read {jobs} incidents' plates "
          f"(3 crops each) without pause; the camera thread never waits on it (submit never blocks)")
    return {"ratio": median(ratios), "ratios": ratios, "jobs": jobs}
