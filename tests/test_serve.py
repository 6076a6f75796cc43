"""`amygdala serve` on the real default model, in a subprocess, talked to by real clients.

One server for the whole file (one model load): a small run (3 concepts, layers 9
and 15), an API key, a queue of one and small limits so each limit can be hit
cheaply. Requests generate at most 8 tokens, except the disconnect one, which
asks for 128 and must be stopped long before.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from amygdala.intervene._monitor import EVENT_FORMAT, Monitor
from amygdala.intervene._readout import read
from amygdala.intervene._steer import steered_generate

pytestmark = pytest.mark.smollm
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

KEY = "test-key-16"
NAME = "live-test"
LIMITS = {"--max-tokens": "128", "--max-prompt-tokens": "80", "--max-queue": "1",
          "--max-body-bytes": "4096", "--top-k": "2", "--max-alpha": "1.0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(smollm_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.live_helpers import build_run

    backend = smollm_factory("torch")
    run_dir = build_run(backend, Path(tmp_path_factory.mktemp("serve")))
    port = _free_port()
    args = ["serve", str(run_dir), "--port", str(port), "--api-key", KEY, "--name", NAME,
            "--layer", "9", "--layer", "15"] + [x for kv in LIMITS.items() for x in kv]
    log = Path(tmp_path_factory.mktemp("log")) / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from amygdala.cli import main; raise SystemExit(main())",
             *args], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not come up:\n{log.read_text()}")
        time.sleep(0.5)
    monitor = Monitor(run_dir, backend, layers=[9, 15])
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=120)
    try:
        yield SimpleNamespace(base=base, backend=backend, monitor=monitor, client=client,
                              run_dir=run_dir, headers={"Authorization": f"Bearer {KEY}"})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _health(live: Any) -> dict[str, Any]:
    return dict(httpx.get(f"{live.base}/health", timeout=10).json())


def test_streamed_chat_equals_greedy_generation_and_read(live: Any) -> None:
    prompt = "Describe your morning in one sentence."
    stream = live.client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": prompt}], max_tokens=8,
        temperature=0, stream=True, extra_body={"amygdala": {"top_k": None}})
    chunks = list(stream)
    extras = [c.model_extra["amygdala"] for c in chunks]
    assert extras[0]["type"] == "start" and extras[0]["format"] == EVENT_FORMAT
    assert extras[0]["layers"] == [9, 15] and extras[-1]["type"] == "end"
    records = [x for x in extras if x["type"] == "token"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = steered_generate(live.backend, prompt, max_new_tokens=8, chat=True)
    assert text == expected.text
    generated = list(expected.token_ids[expected.prompt_len:])
    assert [r["token_id"] for r in records] == generated[:len(records)]
    assert len(records) == 8 or generated[len(records)] == live.backend.tokenizer.eos_token_id
    # The read-out of each streamed token equals `read` of the whole text at each layer.
    tok = live.backend.tokenizer
    ids = list(expected.token_ids[:expected.prompt_len]) + [r["token_id"] for r in records]
    whole_text = tok.decode(ids)
    assert tok(whole_text, add_special_tokens=True)["input_ids"] == ids  # round-trips
    z = np.asarray([r["z"] for r in records], float)  # [tokens, layers, concepts]
    for li, layer in enumerate((9, 15)):
        whole = read(live.backend, live.monitor.vectors, whole_text, layer=layer,
                     stats=live.monitor.stats)
        np.testing.assert_allclose(z[:, li], whole.z[expected.prompt_len:], atol=5e-3)


def test_completion_without_streaming_carries_the_table(live: Any) -> None:
    prompt = "The weather today is"
    out = live.client.completions.create(model=NAME, prompt=prompt, max_tokens=6,
                                         temperature=0)
    expected = steered_generate(live.backend, prompt, max_new_tokens=6)
    assert out.choices[0].text == expected.text
    table = out.model_extra["amygdala"]
    assert table["concepts"] == list(live.monitor.concepts)
    assert len(table["z"]) == out.usage.completion_tokens == 6
    assert np.asarray(table["z"]).shape == (6, 2, len(live.monitor.concepts))


def test_steering_through_the_api_matches_steered_generate(live: Any) -> None:
    prompt = "Describe your morning."
    steer = {"joyful": 0.5}
    out = live.client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": prompt}], max_tokens=8,
        temperature=0, extra_body={"amygdala": {"steer": steer, "steer_layers": [9]}})
    expected = steered_generate(live.backend, prompt, vectors=live.monitor.vectors,
                                alphas=steer, layers=[9], max_new_tokens=8, chat=True)
    plain = steered_generate(live.backend, prompt, max_new_tokens=8, chat=True)
    assert out.choices[0].message.content == expected.text
    assert expected.text != plain.text  # steering changed the output


def test_read_endpoint_equals_read(live: Any) -> None:
    text = "I was so happy when the letter came."
    got = httpx.post(f"{live.base}/v1/amygdala/read", headers=live.headers, timeout=60,
                     json={"text": text, "layers": [15], "concepts": ["joyful", "calm"]}).json()
    whole = read(live.backend, live.monitor.vectors, text, layer=15, stats=live.monitor.stats)
    columns = [live.monitor.vectors.concepts.index(c) for c in ("joyful", "calm")]
    assert got["tokens"] == list(whole.tokens) and got["sink"][:3] == [True, True, False]
    z = np.asarray(got["z"][2:], float)[:, 0]
    np.testing.assert_allclose(z, whole.z[2:, columns], atol=1e-3)


def _chat(content: str = "Hi", **extra: Any) -> dict[str, Any]:
    return {"model": NAME, "messages": [{"role": "user", "content": content}],
            "max_tokens": 2, **extra}


BAD_REQUESTS = [
    ("malformed JSON", "/v1/chat/completions", b'{"messages": [', 400, "invalid_json", "JSON"),
    ("not an object", "/v1/chat/completions", [1, 2], 400, "invalid_value", "JSON object"),
    ("no messages", "/v1/chat/completions", {"model": NAME}, 400, "invalid_value",
     "messages must be"),
    ("bad role", "/v1/chat/completions",
     {"messages": [{"role": "robot", "content": "x"}]}, 400, "invalid_value", "role one of"),
    ("unknown model", "/v1/chat/completions", _chat(model="gpt-9"), 404, "model_not_found",
     NAME),
    ("unknown concept", "/v1/chat/completions",
     _chat(amygdala={"steer": {"bliss": 0.1}}), 400, "unknown_concept", "joyful"),
    ("alpha out of range", "/v1/chat/completions",
     _chat(amygdala={"steer": {"joyful": 5}}), 400, "alpha_out_of_range", "-1.0 to 1.0"),
    ("alpha not a number", "/v1/chat/completions",
     _chat(amygdala={"steer": {"joyful": "lots"}}), 400, "invalid_value", "must be a number"),
    ("unknown layer", "/v1/chat/completions",
     _chat(amygdala={"layers": [3]}), 400, "unknown_layer", "layers 9, 15"),
    ("unknown read concept", "/v1/chat/completions",
     _chat(amygdala={"concepts": ["bliss"]}), 400, "unknown_concept", "joyful"),
    ("unknown extension field", "/v1/chat/completions",
     _chat(amygdala={"colour": "red"}), 400, "invalid_value", "known:"),
    ("max_tokens too big", "/v1/chat/completions", _chat(max_tokens=1000), 400,
     "invalid_value", "at most 128"),
    ("max_tokens not an int", "/v1/chat/completions", _chat(max_tokens="5"), 400,
     "invalid_value", "must be an integer"),
    ("temperature out of range", "/v1/chat/completions", _chat(temperature=9), 400,
     "invalid_value", "between 0.0 and 2.0"),
    ("top_p unsupported", "/v1/chat/completions", _chat(top_p=0.5), 400, "invalid_value",
     "omit it"),
    ("prompt too long", "/v1/chat/completions", _chat("word " * 120), 400, "prompt_too_long",
     "at most 80"),
    ("body too large", "/v1/chat/completions", _chat("x" * 5000), 413, "body_too_large",
     "4096"),
    ("empty completion prompt", "/v1/completions", {"prompt": ""}, 400, "invalid_value",
     "non-empty string"),
    ("read without text", "/v1/amygdala/read", {"layers": [9]}, 400, "invalid_value",
     "text must be"),
    ("unknown view", "/v1/chat/completions", _chat(amygdala={"view": "raw"}), 400,
     "invalid_value", "amygdala.view must be one of z, relative, both, got 'raw' ('raw' is "
     "the old name of 'z')"),
    ("unknown events_on", "/v1/chat/completions", _chat(amygdala={"events_on": "both"}),
     400, "invalid_value", "amygdala.events_on must be one of z, relative, got 'both'"),
    ("unknown read view", "/v1/amygdala/read", {"text": "Hi there", "view": ["z"]}, 400,
     "invalid_value", "view must be one of"),
    ("unknown route", "/v1/embeddings", {"input": "x"}, 404, "not_found", "routes:"),
]


@pytest.mark.parametrize(("path", "body", "status", "code", "says"),
                         [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_json_errors_that_say_what_is_expected(
        live: Any, path: str, body: Any, status: int, code: str, says: str) -> None:
    before = _health(live)["completed"]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{live.base}{path}", content=raw, timeout=30,
                          headers={**live.headers, "Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and says in error["message"]
    assert _health(live)["completed"] == before  # nothing was generated


def test_wrong_method_is_405(live: Any) -> None:
    response = httpx.get(f"{live.base}/v1/chat/completions", headers=live.headers)
    assert response.status_code == 405 and "not allowed" in response.json()["error"]["message"]


def test_auth(live: Any) -> None:
    url = f"{live.base}/v1/models"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "--api-key" in wrong.json()["error"]["message"]
    listed = live.client.models.list()
    assert listed.data[0].id == NAME
    assert httpx.get(f"{live.base}/health").status_code == 200  # health needs no key
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live.base}/v1", api_key="nope",
                      max_retries=0).models.list()


def test_binding_beyond_loopback_needs_a_key(live: Any, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from amygdala.cli import main

    monkeypatch.delenv("AMYGDALA_API_KEY", raising=False)
    assert main(["serve", str(live.run_dir), "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_queue_limit_and_disconnect_stop_generation(live: Any) -> None:
    before = _health(live)
    body = _chat("Tell me a long story about a lighthouse.", max_tokens=128, stream=True)
    waiting: dict[str, Any] = {}
    with httpx.Client(timeout=120, headers=live.headers) as client:
        with client.stream("POST", f"{live.base}/v1/chat/completions", json=body) as stream:
            lines = stream.iter_lines()
            first = [next(lines) for _ in range(3)]  # start chunk, blank, first token
            assert first[0].startswith("data: ") and '"type":"start"' in first[0]

            def queued_request() -> None:
                waiting["response"] = httpx.post(
                    f"{live.base}/v1/chat/completions", headers=live.headers, timeout=120,
                    json=_chat("Say hi.", max_tokens=2))

            thread = threading.Thread(target=queued_request)
            thread.start()
            deadline = time.monotonic() + 30
            while _health(live)["queued"] < 1:
                assert time.monotonic() < deadline, "the second request never queued"
                time.sleep(0.05)
            full = httpx.post(f"{live.base}/v1/chat/completions", headers=live.headers,
                              json=_chat("Hello?"), timeout=30)
            assert full.status_code == 429 and full.headers["retry-after"] == "1"
            assert full.json()["error"]["code"] == "queue_full"
        # Leaving the `with` closed the connection mid-stream: the server must stop it.
        thread.join(timeout=120)
    # A server that kept generating for the gone client serves the queued request only
    # after all 128 tokens (or never, within the timeout): the checks below fail.
    assert "response" in waiting, (
        "the queued request was not served: did the disconnected client's stream keep "
        "generating?")
    assert waiting["response"].status_code == 200
    after = _health(live)
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["rejected_queue_full"] == before["rejected_queue_full"] + 1
    queued_tokens = waiting["response"].json()["usage"]["completion_tokens"]
    streamed = after["tokens_generated"] - before["tokens_generated"] - queued_tokens
    assert 1 <= streamed < 128
    assert after["running"] == 0 and after["queued"] == 0


def _relative_by_hand(live: Any, text: str, layer: int, concepts: list[str]) -> np.ndarray:
    """``[tokens, concepts]``: `read`'s z of all the run's concepts, minus their mean."""
    whole = read(live.backend, live.monitor.vectors, text, layer=layer, stats=live.monitor.stats)
    columns = [live.monitor.vectors.concepts.index(c) for c in concepts]
    return np.asarray((whole.z - whole.z.mean(axis=1, keepdims=True))[:, columns])


def test_relative_view_through_the_api(live: Any) -> None:
    prompt, concepts = "The weather today is", ["calm", "joyful"]
    ext = {"top_k": None, "view": "both", "concepts": concepts, "events_on": "relative"}
    body = {"model": NAME, "prompt": prompt, "max_tokens": 5, "temperature": 0,
            "stream": True, "amygdala": ext}
    with httpx.stream("POST", f"{live.base}/v1/completions", json=body, timeout=120,
                      headers=live.headers) as response:
        assert response.status_code == 200
        extras = [json.loads(line[6:])["amygdala"] for line in response.iter_lines()
                  if line.startswith("data: {")]
    assert extras[0]["view"] == "both" and extras[0]["events_on"] == "relative"
    records = [x for x in extras if x["type"] == "token"]
    expected = steered_generate(live.backend, prompt, max_new_tokens=5)
    n = expected.prompt_len
    assert [r["token_id"] for r in records] == list(expected.token_ids[n:])
    text = live.backend.tokenizer.decode(list(expected.token_ids))
    rel = np.asarray([r["relative"] for r in records], float)  # [tokens, layers, concepts]
    for li, layer in enumerate((9, 15)):
        np.testing.assert_allclose(rel[:, li], _relative_by_hand(live, text, layer,
                                                                 concepts)[n:], atol=5e-3)
    z = np.asarray([r["z"] for r in records], float)
    assert z.shape == rel.shape == (5, 2, 2)
    # Events ran on the relative view: the smoothed state follows its layer average.
    np.testing.assert_allclose(records[0]["smoothed"], rel[0].mean(axis=0), atol=2e-3)
    # Non-streaming: the table carries only the view asked for.
    out = httpx.post(f"{live.base}/v1/completions", headers=live.headers, timeout=120,
                     json={**body, "stream": False,
                           "amygdala": {"view": "relative", "concepts": concepts}}).json()
    table = out["amygdala"]
    assert "z" not in table and table["view"] == "relative"
    np.testing.assert_allclose(np.asarray(table["relative"], float), rel, atol=2e-3)
    # /v1/amygdala/read gives the same rule without generating. On this run the concepts'
    # z nearly sum to zero (relative differs from z by ~0.005), hence the tight tolerance.
    got = httpx.post(f"{live.base}/v1/amygdala/read", headers=live.headers, timeout=60,
                     json={"text": prompt, "layers": [15], "concepts": concepts,
                           "view": "both"}).json()
    assert got["relative"][0] is None and got["sink"][0]  # sinks stay out
    np.testing.assert_allclose(np.asarray(got["relative"][2:], float)[:, 0],
                               _relative_by_hand(live, prompt, 15, concepts)[2:], atol=3e-4)
    assert len(got["z"]) == len(got["relative"])
