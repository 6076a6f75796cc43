"""Live read-out benchmarks, registered by ``run.py``: monitor overhead and a server load run.

Both use a small real run on SmolLM2 (three concepts, layers 9 and 13-21, trained by
``tests/live_helpers.build_run`` on a tiny corpus), built once per process in a
temporary directory; the vectors' content does not change the cost measured. Layers
13-21 are the band the shipped corpus's evaluation recommends for the default (probe)
read-out, which `Monitor.from_run`, ``watch`` and ``serve`` now read by default.
"""

from __future__ import annotations

import functools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The read-out band `amygdala evaluate` recommends for probe on the shipped corpus.
BAND = tuple(range(13, 22))
PROMPTS = ("Describe your morning.", "Tell me about a walk by the sea.",
           "Write a note to a friend who moved away.", "What do you think of rain?",
           "Describe a kitchen at night.", "Tell me about your favourite book.",
           "Explain how a bicycle works.", "Write about a crowded train.")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@functools.cache
def _setup() -> tuple[Any, Path]:
    """Load SmolLM2 (torch backend) and build the small run once."""
    sys.path.insert(0, str(ROOT))
    from tests.live_helpers import build_run

    from amygdala import get_backend, load_model

    backend = get_backend("torch", load_model())
    run_dir = build_run(backend, Path(tempfile.mkdtemp(prefix="amygdala-live-bench-")),
                        layers=(9, *BAND))
    return backend, run_dir


def _interval(ratios: list[float], *, seed: int = 0, n: int = 2000) -> list[float]:
    """Percentile bootstrap 95% interval of the median."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(n))
    return [round(medians[int(0.025 * n)], 4), round(medians[int(0.975 * n) - 1], 4)]


def live_monitor_overhead(options: Any) -> dict[str, Any]:
    """Monitored generation (per-token scores, smoothing, events) vs plain generation."""
    from amygdala.intervene._monitor import Monitor
    from amygdala.intervene._steer import steered_generate

    backend, run_dir = _setup()
    # --quick: 16 tokens, 4 pairs, layer 15 only (a shared 2-core machine under load runs
    # SmolLM2 at a few tokens/s); full: 32 tokens, 2 x repeats pairs, also layers 9+15.
    tokens = 16 if options.quick else 32
    pairs = 4 if options.quick else max(3, options.repeats) * 2
    result: dict[str, Any] = {"tokens_per_generation": tokens, "pairs": pairs,
                              "backend": "torch", "kv_cache": True, "chat": True,
                              "load_average_start": os.getloadavg()}
    for layers in ([15],) if options.quick else ([15], [9, 15], list(BAND)):
        monitor = Monitor(run_dir, backend, layers=layers)
        prompt = PROMPTS[0]
        steered_generate(backend, prompt, max_new_tokens=4, chat=True)  # warm-up
        monitor.run(prompt, max_new_tokens=4, chat=True)
        ratios, plain_s, monitored_s = [], [], []
        for i in range(pairs):
            # Alternate which side runs first so load from other processes hits both alike.
            order = ("plain", "monitor") if i % 2 == 0 else ("monitor", "plain")
            times: dict[str, float] = {}
            for side in order:
                start = time.perf_counter()
                if side == "plain":
                    g = steered_generate(backend, prompt, max_new_tokens=tokens, chat=True)
                else:
                    m = monitor.run(prompt, max_new_tokens=tokens, chat=True)
                times[side] = time.perf_counter() - start
            assert m.generation.token_ids == g.token_ids[:len(m.generation.token_ids)]
            plain_s.append(times["plain"])
            monitored_s.append(times["monitor"])
            ratios.append(times["monitor"] / times["plain"])
        key = "layers_" + "_".join(map(str, layers))
        result[key] = {
            "ratio_median": round(statistics.median(ratios), 4),
            "ratio_ci95": _interval(ratios), "ratios": [round(r, 4) for r in ratios],
            "plain_s": [round(t, 3) for t in plain_s],
            "monitored_s": [round(t, 3) for t in monitored_s],
            "plain_tokens_per_s": round(tokens / statistics.median(plain_s), 2),
        }
        _log(f"  monitor overhead at layers {layers}: {result[key]['ratio_median']}x")
    result["load_average_end"] = os.getloadavg()
    one = result["layers_15"]
    result["target"] = 1.10
    result["meets_target"] = bool(one["ratio_median"] <= 1.10)
    both = result.get("layers_9_15")
    band = result.get("layers_" + "_".join(map(str, BAND)))
    result["summary"] = (
        f"monitor/plain generation ({tokens} tokens, torch, KV cache, {pairs} pairs): "
        f"layer 15 {one['ratio_median']}x (95% CI {one['ratio_ci95'][0]}-"
        f"{one['ratio_ci95'][1]})" + (f", layers 9+15 {both['ratio_median']}x" if both else "")
        + (f", band 13-21 {band['ratio_median']}x (95% CI {band['ratio_ci95'][0]}-"
           f"{band['ratio_ci95'][1]})" if band else "")
        + "; target <= 1.10")
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


def _one_stream(base: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    import httpx

    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    start = time.perf_counter()
    first = None
    ids, steps, texts, chunk_ids = [], [], [], set()
    status = 0
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as r:
        status = r.status_code
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            chunk_ids.add(chunk["id"])
            extra = chunk.get("amygdala", {})
            if extra.get("type") == "token":
                first = first if first is not None else time.perf_counter() - start
                ids.append(extra["token_id"])
                steps.append(extra["step"])
                texts.append(chunk["choices"][0]["delta"].get("content", ""))
    return {"prompt": prompt, "status": status, "latency_s": time.perf_counter() - start,
            "first_token_s": first, "token_ids": ids, "steps": steps, "text": "".join(texts),
            "chunk_ids": len(chunk_ids)}


def live_serve_load(options: Any) -> dict[str, Any]:
    """Concurrent streaming clients against `amygdala serve` on localhost: latency, tokens/s."""
    import httpx

    from amygdala.intervene._steer import steered_generate

    backend, run_dir = _setup()
    clients, per_client, max_tokens = (4, 2, 8) if options.quick else (8, 5, 16)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="amygdala-serve-log-")) / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", "from amygdala.cli import main; raise SystemExit(main())",
             "serve", str(run_dir), "--port", str(port), "--layer", "15",
             "--max-queue", str(clients * per_client)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()}")
            time.sleep(0.5)
        _one_stream(base, PROMPTS[0], 2)  # warm-up
        results: list[dict[str, Any]] = []
        lock = threading.Lock()

        def client(c: int) -> None:
            for j in range(per_client):
                prompt = PROMPTS[(c + j) % len(PROMPTS)] + f" ({c}-{j})"
                outcome = _one_stream(base, prompt, max_tokens)
                with lock:
                    results.append(outcome)

        _log(f"  load: {clients} clients x {per_client} requests x {max_tokens} tokens")
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        health = httpx.get(f"{base}/health", timeout=10).json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    # Nothing lost or mixed: each stream is the library's greedy generation of its own prompt.
    mismatched = 0
    for r in results:
        expected = steered_generate(backend, r["prompt"], max_new_tokens=max_tokens, chat=True)
        want = list(expected.token_ids[expected.prompt_len:])[:len(r["token_ids"])]
        ok = (r["status"] == 200 and r["token_ids"] == want and r["chunk_ids"] == 1
              and r["steps"] == list(range(len(r["steps"]))) and r["text"] == expected.text)
        mismatched += not ok
    latencies = [r["latency_s"] for r in results]
    firsts = [r["first_token_s"] for r in results if r["first_token_s"] is not None]
    total_tokens = sum(len(r["token_ids"]) for r in results)
    summary = (f"{clients} streaming clients x {per_client} requests x {max_tokens} tokens: "
               f"latency p50 {_percentile(latencies, 50)} s, p95 {_percentile(latencies, 95)} s, "
               f"first token p50 {_percentile(firsts, 50)} s, "
               f"{total_tokens / wall:.1f} tokens/s overall; {mismatched} lost or mixed")
    return {
        "clients": clients, "requests_per_client": per_client, "max_tokens": max_tokens,
        "requests": len(results), "wall_s": round(wall, 2), "tokens": total_tokens,
        "tokens_per_s": round(total_tokens / wall, 2),
        "latency_s": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95),
                      "max": round(max(latencies), 3)},
        "first_token_s": {"p50": _percentile(firsts, 50), "p95": _percentile(firsts, 95)},
        "lost_or_mixed": mismatched, "server_counters": health,
        "load_average_end": os.getloadavg(),
        "meets_target": mismatched == 0, "summary": summary,
        "setup": "amygdala serve (torch backend, read-out at layer 15, one generation at a "
                 "time, the rest queued) on 127.0.0.1; clients are threads using httpx "
                 "streaming; greedy decoding; every stream checked against the library's "
                 "steered_generate of the same prompt",
    }
