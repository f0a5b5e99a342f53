"""Time facegate's /identify over real HTTP against the face_recognition package in-process.

Run from the repository root (needs the LFW photos in ../shared/data/faces and the
face_recognition package, installed with
`.venv/bin/pip install --no-deps face_recognition==1.3.0`):

    .venv/bin/python -m bench.service                   # readable table
    .venv/bin/python -m bench.service --json            # one JSON object on stdout
    .venv/bin/python -m bench.service --requests 50     # a quick run

facegate side: `facegate serve` (the app.cli code path, uvicorn) runs as a subprocess on
127.0.0.1 with a free port and a temporary FACEGATE_DATA_DIR. The benchmark enrolls 10 LFW
identities with 1 photo each, then sends POST /identify (multipart field `image`) with other
250x250 LFW photos. Each of `c` worker threads owns one httpx client and sends requests back
to back. Latency is per request on the client: upload, multipart parsing, decode, detection,
alignment, embedding, gallery search and the JSON response.

face_recognition side: in this process, on the same photo bytes and the same 10 enrolled
photos, `load_image_file` (from memory), `face_locations` (HOG, upsampled once, its default),
`face_encodings` (5-point landmarks, 1 jitter, its defaults) and `face_distance` against the 10
enrolled encodings. At c=1 the calls run one after another; at c=4 a ThreadPoolExecutor of 4
runs them, which gains only where dlib releases the GIL.

Each level starts with untimed warm-up calls and then runs until --requests calls are done or
--max-seconds have passed. photos/s counts successful calls over the wall time of the level.
The server, the HTTP client and face_recognition share this machine's cores, so other load on
the machine shows up in every number.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import itertools
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import DEFAULT_LFW_ROOT, REPO_ROOT

LFW_DIR = DEFAULT_LFW_ROOT / "lfw-deepfunneled"
FACE_RECOGNITION_PIP = ".venv/bin/pip install --no-deps face_recognition==1.3.0"
ENROLLED_IDENTITIES = 10
MIN_PHOTOS_PER_IDENTITY = 6  # enrolled identities need spare photos to serve as probes
FACE_RECOGNITION_TOLERANCE = 0.6  # face_recognition's default match distance (compare_faces)
# Model settings that reach the server from this environment. Every other FACEGATE_ variable
# is dropped, so a developer's API keys or database path cannot leak into the run.
PASSED_SETTINGS = ("FACEGATE_EMBEDDER", "FACEGATE_EMBEDDER_WEIGHTS", "FACEGATE_DEVICE", "FACEGATE_NUM_THREADS")


@dataclass
class Photo:
    path: Path
    identity: str
    data: bytes


@dataclass
class Outcome:
    ok: bool
    faces: int = 0
    identity: str | None = None  # best match above the threshold, else None
    timings_ms: dict[str, float] | None = None  # the server's stage timings (facegate only)
    error: str | None = None


@dataclass
class LevelResult:
    name: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: list[tuple[Photo, Outcome]] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        successes = [(photo, outcome) for photo, outcome in self.outcomes if outcome.ok]
        latencies = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        known = [(photo, outcome) for photo, outcome in successes if photo.identity != ""]
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "requests": len(self.outcomes),
            "photos_per_s": len(successes) / self.wall_s if self.wall_s else 0.0,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p95_ms": float(np.percentile(latencies, 95)),
            "errors": self.errors,
            "first_error": self.first_error,
            "wall_s": self.wall_s,
            "faces_per_photo": float(np.mean([o.faces for _, o in successes])) if successes else 0.0,
            "photos_without_face": sum(1 for _, o in successes if o.faces == 0),
            # Probes of enrolled people whose best match is that person (a check that both sides
            # do the same work, not an accuracy figure: 1 enrolled photo, default thresholds).
            "enrolled_probes": len(known),
            "enrolled_probes_identified": sum(1 for p, o in known if o.identity == p.identity),
        }


# photos


def pick_identities(rng: random.Random) -> tuple[list[str], list[str]]:
    """Return (enrolled, strangers): LFW identity folders, sorted, then sampled with `rng`."""
    folders = sorted(path for path in LFW_DIR.iterdir() if path.is_dir())
    with_spares = [path.name for path in folders if len(list(path.glob("*.jpg"))) >= MIN_PHOTOS_PER_IDENTITY]
    enrolled = sorted(rng.sample(with_spares, ENROLLED_IDENTITIES))
    strangers = [path.name for path in folders if path.name not in enrolled]
    rng.shuffle(strangers)
    return enrolled, strangers


def single_face_probes(
    face_recognition: types.ModuleType, enrolled: list[str], strangers: list[str], count: int, rng: random.Random
) -> list[Photo]:
    """Pick `count` LFW photos in which HOG finds exactly one face, half of them of enrolled
    people (their photos after the first 3, which are kept for enrollment) and half of others."""
    own = [(name, path) for name in enrolled for path in sorted((LFW_DIR / name).glob("*.jpg"))[3:]]
    rng.shuffle(own)
    others = [(name, sorted((LFW_DIR / name).glob("*.jpg"))[0]) for name in strangers]

    probes: list[Photo] = []
    candidates = itertools.chain.from_iterable(itertools.zip_longest(own, others))
    for candidate in candidates:
        if candidate is None:
            continue
        name, path = candidate
        if sum(1 for probe in probes if probe.identity) >= count // 2 and name in enrolled:
            continue  # enough probes of enrolled people, fill up with strangers
        data = path.read_bytes()
        image = face_recognition.load_image_file(io.BytesIO(data))
        if len(face_recognition.face_locations(image)) != 1:
            continue
        probes.append(Photo(path, name if name in enrolled else "", data))
        if len(probes) == count:
            return probes
    sys.exit(f"Only {len(probes)} single-face LFW photos found; {count} were requested with --photos.")


# face_recognition


def import_face_recognition() -> types.ModuleType:
    """Import face_recognition, bridging its models package's use of pkg_resources.

    face_recognition_models 0.3.0 imports `pkg_resources.resource_filename`, which the
    installed setuptools 84 lacks, and face_recognition 1.3.0 then calls quit(). Only for this benchmark,
    a stand-in `pkg_resources` module in sys.modules resolves `resource_filename` into the
    installed face_recognition_models folder.
    """
    if importlib.util.find_spec("face_recognition") is None:
        sys.exit(f"The face_recognition package is not installed. Install it with: {FACE_RECOGNITION_PIP}")
    models_spec = importlib.util.find_spec("face_recognition_models")
    if models_spec is None or not models_spec.submodule_search_locations:
        sys.exit("face_recognition_models is not installed; it is part of the dev extra (pip install -e '.[dev]').")
    if importlib.util.find_spec("pkg_resources") is None:
        models_dir = Path(list(models_spec.submodule_search_locations)[0])

        def resource_filename(package: str, resource: str) -> str:
            if package != "face_recognition_models":
                raise ValueError(f"the pkg_resources stand-in only serves face_recognition_models, not {package!r}")
            return str(models_dir / resource)

        stand_in = types.ModuleType("pkg_resources")
        stand_in.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stand_in

    import face_recognition

    return face_recognition


def face_recognition_identify(
    face_recognition: types.ModuleType, known: np.ndarray, names: list[str]
) -> Callable[[Photo], Outcome]:
    """Return a call doing /identify's work with face_recognition: decode, detect, encode, match."""

    def identify(photo: Photo) -> Outcome:
        image = face_recognition.load_image_file(io.BytesIO(photo.data))
        locations = face_recognition.face_locations(image)  # (top, right, bottom, left) px
        # Largest face first, as facegate orders them; the outcome names the largest face's match.
        locations.sort(key=lambda box: (box[2] - box[0]) * (box[1] - box[3]), reverse=True)
        encodings = face_recognition.face_encodings(image, locations)
        matches = []
        for encoding in encodings:
            distances = face_recognition.face_distance(known, encoding)  # (10,)
            best = int(np.argmin(distances))
            matches.append(names[best] if distances[best] <= FACE_RECOGNITION_TOLERANCE else None)
        return Outcome(ok=True, faces=len(encodings), identity=matches[0] if matches else None)

    return identify


def enrolled_encodings(face_recognition: types.ModuleType, photos: list[Photo]) -> np.ndarray:
    """Encode the one face of each enrolled photo: (10, 128)."""
    encodings = []
    for photo in photos:
        image = face_recognition.load_image_file(io.BytesIO(photo.data))
        found = face_recognition.face_encodings(image, face_recognition.face_locations(image))
        encodings.append(found[0])
    return np.stack(encodings)


# facegate server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def facegate_server(*, startup_timeout_s: float) -> Iterator[str]:
    """Run `facegate serve` on a free loopback port with a temporary data dir; yield its URL.

    The server runs with the temporary dir as working directory, so neither ./var nor a .env
    file of the checkout is used. It is stopped by its pid on exit, also after errors.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="facegate-bench-") as data_dir:
        env = {key: value for key, value in os.environ.items() if not key.startswith("FACEGATE_")}
        env.update({key: os.environ[key] for key in PASSED_SETTINGS if key in os.environ})
        env.update(
            {
                "FACEGATE_DATA_DIR": data_dir,
                "FACEGATE_LOG_LEVEL": "WARNING",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        log_path = Path(data_dir) / "server.log"
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        with log_path.open("wb") as log:
            server = subprocess.Popen(command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, server, log_path, startup_timeout_s)
            yield url
        finally:
            server.terminate()  # SIGTERM: uvicorn finishes open requests, then exits
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_ready(url: str, server: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                sys.exit(f"facegate exited with code {server.returncode} during start-up:\n{tail(log_path)}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.5)
    sys.exit(f"facegate was not ready within {timeout_s:.0f} s (GET /readyz):\n{tail(log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def enroll(url: str, face_recognition: types.ModuleType, enrolled: list[str]) -> list[Photo]:
    """Enroll each identity with the first of its first 3 photos that has one HOG face and
    passes facegate's enrollment gates; return the enrolled photos."""
    photos = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for name in enrolled:
            for path in sorted((LFW_DIR / name).glob("*.jpg"))[:3]:
                data = path.read_bytes()
                image = face_recognition.load_image_file(io.BytesIO(data))
                if len(face_recognition.face_locations(image)) != 1:
                    continue
                response = client.post(
                    "/enroll", files={"images": (path.name, data, "image/jpeg")}, data={"name": name}
                )
                if response.status_code == 201:
                    photos.append(Photo(path, name, data))
                    break
                if response.status_code != 422:
                    sys.exit(f"POST /enroll failed with {response.status_code}: {response.text}")
            else:
                sys.exit(f"None of the first 3 photos of {name} could be enrolled by both sides.")
    return photos


def facegate_identify(url: str, clients: list[httpx.Client]) -> Callable[[Photo], Outcome]:
    """Return a call sending one POST /identify; each worker thread gets its own client."""
    local = threading.local()
    lock = threading.Lock()

    def identify(photo: Photo) -> Outcome:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=60)
            with lock:
                clients.append(client)
        try:
            response = client.post("/identify", files={"image": (photo.path.name, photo.data, "image/jpeg")})
        except httpx.HTTPError as error:
            return Outcome(ok=False, error=f"{type(error).__name__}: {error}")
        if response.status_code != 200:
            return Outcome(ok=False, error=f"HTTP {response.status_code}: {response.text[:200]}")
        body = response.json()
        identity = body["faces"][0]["identity"] if body["faces"] else None
        return Outcome(
            ok=True,
            faces=len(body["faces"]),
            identity=identity["name"] if identity else None,
            timings_ms=body["timings_ms"],
        )

    return identify


# load loop


def run_level(
    name: str,
    call: Callable[[Photo], Outcome],
    photos: list[Photo],
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    max_seconds: float,
) -> LevelResult:
    """Run `call` over `photos` (cycled) from `concurrency` threads, each back to back.

    The level ends when `requests` calls are done or `max_seconds` have passed. Warm-up calls
    are not recorded.
    """
    result = LevelResult(name, concurrency)
    counter = itertools.count()
    lock = threading.Lock()
    stop = threading.Event()  # set when the main thread is interrupted, so the workers end

    def worker(deadline: float) -> None:
        while not stop.is_set():
            with lock:
                index = next(counter)
            if index >= requests or time.perf_counter() > deadline:
                return
            photo = photos[index % len(photos)]
            started = time.perf_counter()
            try:
                outcome = call(photo)
            except Exception as error:  # a benchmark counts any failure of the peer library and goes on
                outcome = Outcome(ok=False, error=f"{type(error).__name__}: {error}")
            elapsed_ms = (time.perf_counter() - started) * 1000
            with lock:
                result.outcomes.append((photo, outcome))
                if outcome.ok:
                    result.latencies_ms.append(elapsed_ms)
                else:
                    result.errors += 1
                    result.first_error = result.first_error or outcome.error

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        try:
            # Warm-up spread over the pool, so every thread has its HTTP connection open.
            list(pool.map(call, [photos[-1 - i % len(photos)] for i in range(max(warmup, concurrency))]))
            started = time.perf_counter()
            futures = [pool.submit(worker, started + max_seconds) for _ in range(concurrency)]
            for future in futures:
                future.result()
            result.wall_s = time.perf_counter() - started
        except BaseException:
            stop.set()
            raise
    return result


# report


def profile(level: LevelResult) -> dict[str, dict[str, float]]:
    """Split facegate's per-request latency into the server's stage timings and the rest.

    `decode_wait_other` is the server's total minus its timed stages: image decoding, the wait
    for the pipeline lock (one analysis runs at a time, so this grows with concurrency) and
    building the response dict. `http_and_framework` is the client latency minus the server's
    total: upload, multipart parsing, the wait for a worker thread, response validation, JSON
    and the client itself.
    """
    rows: dict[str, list[float]] = {}
    successes = [outcome for _, outcome in level.outcomes if outcome.ok and outcome.timings_ms]
    for outcome, latency in zip(successes, level.latencies_ms):
        timings = outcome.timings_ms or {}
        stages = {stage: timings.get(stage, 0.0) for stage in ("detect", "align", "embed", "search")}
        stages["decode_wait_other"] = timings["total"] - sum(stages.values())
        stages["server_total"] = timings["total"]
        stages["http_and_framework"] = latency - timings["total"]
        stages["client_latency"] = latency
        for stage, value in stages.items():
            rows.setdefault(stage, []).append(value)
    mean_latency = float(np.mean(rows["client_latency"])) if rows else float("nan")
    return {
        stage: {
            "mean_ms": float(np.mean(values)),
            "p50_ms": float(np.median(values)),
            "share": float(np.mean(values)) / mean_latency,
        }
        for stage, values in rows.items()
    }


def time_decode(photos: list[Photo]) -> float:
    """Median ms of models.imaging.decode_image on the probe bytes, in this process."""
    from models.imaging import decode_image

    times = []
    for photo in photos * 2:
        started = time.perf_counter()
        decode_image(photo.data)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def machine_info() -> dict[str, Any]:
    import dlib
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch_version": torch.__version__,
        # The server runs with the same torch default unless FACEGATE_NUM_THREADS is set.
        "torch_threads": torch.get_num_threads(),
        "server_num_threads": os.environ.get("FACEGATE_NUM_THREADS"),
        "dlib_version": dlib.__version__,
    }


def print_report(report: dict[str, Any]) -> None:
    machine = report["machine"]
    print(
        f"{report['photos']} single-face 250x250 LFW photos, {report['enrolled']} enrolled identities, "
        f"up to {report['requests_per_level']} requests per level after {report['warmup']} warm-up; "
        f"{machine['cpus_usable']} CPUs, load {machine['load_average_1min_at_start']}, "
        f"torch {machine['torch_version']} with {machine['torch_threads']} threads, embedder {report['embedder']}"
    )
    print(f"{'side':<22} {'photos/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7} {'faces/photo':>12} {'identified':>11}")
    for row in report["results"]:
        label = f"{row['name']} c={row['concurrency']}"
        identified = f"{row['enrolled_probes_identified']}/{row['enrolled_probes']}"
        print(
            f"{label:<22} {row['photos_per_s']:>9.2f} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
            f"{row['errors']:>7} {row['faces_per_photo']:>12.2f} {identified:>11}"
        )
        if row["first_error"]:
            print(f"  first error: {row['first_error']}")
    for key, ratio in report["ratios"].items():
        print(f"{key}: {ratio:.2f}x")
    target = report["target"]
    if target:
        print(
            f"target (>= 2x the better face_recognition level, facegate p95 < 300 ms at c=4): "
            f"{'met' if target['met'] else 'not met'}"
        )
    for concurrency, stages in report["profile"].items():
        print(f"facegate per request at c={concurrency} (server timings_ms; the rest by difference):")
        print(f"  {'stage':<20} {'mean ms':>8} {'p50 ms':>8} {'share':>6}")
        for stage, numbers in stages.items():
            print(f"  {stage:<20} {numbers['mean_ms']:>8.1f} {numbers['p50_ms']:>8.1f} {numbers['share']:>6.0%}")
    print(f"decode_image alone, in this process, median: {report['decode_ms_in_process']:.2f} ms")


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    if not LFW_DIR.is_dir():
        sys.exit(f"LFW photos not found at {LFW_DIR.resolve()}; this benchmark needs ../shared/data/faces.")
    face_recognition = import_face_recognition()
    machine = machine_info()
    rng = random.Random(0)

    enrolled_names, strangers = pick_identities(rng)
    log(f"Picking {args.photos} single-face probe photos (dlib HOG) ...")
    probes = single_face_probes(face_recognition, enrolled_names, strangers, args.photos, rng)

    results: list[LevelResult] = []
    log("Starting facegate ...")
    with facegate_server(startup_timeout_s=args.startup_timeout) as url:
        enrolled_photos = enroll(url, face_recognition, enrolled_names)
        embedder = httpx.get(f"{url}/readyz", timeout=10).json()["embedder"]
        clients: list[httpx.Client] = []
        try:
            for concurrency in args.concurrency:
                log(f"facegate c={concurrency} ...")
                results.append(
                    run_level(
                        "facegate",
                        facegate_identify(url, clients),
                        probes,
                        concurrency=concurrency,
                        requests=args.requests,
                        warmup=args.warmup,
                        max_seconds=args.max_seconds,
                    )
                )
        finally:
            for client in clients:
                client.close()

    known = enrolled_encodings(face_recognition, enrolled_photos)
    names = [photo.identity for photo in enrolled_photos]
    for concurrency in args.concurrency:
        log(f"face_recognition c={concurrency} ...")
        results.append(
            run_level(
                "face_recognition",
                face_recognition_identify(face_recognition, known, names),
                probes,
                concurrency=concurrency,
                requests=args.requests,
                warmup=args.warmup,
                max_seconds=args.max_seconds,
            )
        )

    summaries = [result.summary() for result in results]
    by_key = {(row["name"], row["concurrency"]): row for row in summaries}
    ratios: dict[str, float] = {}
    target: dict[str, Any] = {}
    facegate_c4 = by_key.get(("facegate", 4))
    if facegate_c4:
        for concurrency in args.concurrency:
            peer = by_key.get(("face_recognition", concurrency))
            if peer and peer["photos_per_s"]:
                ratios[f"facegate c=4 / face_recognition c={concurrency} photos/s"] = (
                    facegate_c4["photos_per_s"] / peer["photos_per_s"]
                )
        peer_best = max(
            (row["photos_per_s"] for row in summaries if row["name"] == "face_recognition"), default=0.0
        )
        if peer_best:
            ratio = facegate_c4["photos_per_s"] / peer_best
            target = {"ratio_vs_best_peer": ratio, "met": ratio >= 2 and facegate_c4["p95_ms"] < 300}

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "embedder": embedder,
        "photos": len(probes),
        "enrolled": len(enrolled_photos),
        "requests_per_level": args.requests,
        "warmup": args.warmup,
        "max_seconds_per_level": args.max_seconds,
        "measured": {
            "facegate": "POST /identify over HTTP to a uvicorn subprocess, client latency per request",
            "face_recognition": "load_image_file + face_locations (HOG) + face_encodings + face_distance "
            "in this process, per photo; c>1 is a ThreadPoolExecutor",
        },
        "results": summaries,
        "ratios": ratios,
        "target": target,
        "profile": {str(r.concurrency): profile(r) for r in results if r.name == "facegate"},
        "decode_ms_in_process": time_decode(probes),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--photos", type=int, default=100, help="distinct probe photos, cycled (default: 100)")
    parser.add_argument(
        "--requests", type=int, default=200, help="timed calls per side and concurrency level (default: 200)"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4], help="concurrency levels (default: 1 4)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before each level (default: 5)")
    parser.add_argument(
        "--max-seconds", type=float, default=180.0, help="time limit of each level, s (default: 180)"
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=300.0, help="time the server may take to load models, s (default: 300)"
    )
    args = parser.parse_args(argv)
    # SIGTERM raises SystemExit like Ctrl-C raises KeyboardInterrupt, so the server is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.photos < 2 or args.requests < 1 or min(args.concurrency) < 1:
        parser.error("--photos must be at least 2, --requests and every --concurrency at least 1")

    report = run_benchmark(args)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
