"""Monitor: live per-token read-out equals `read`, works with steering and the KV cache,
events with hysteresis, sinks left out, cancellation removes every hook."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from amygdala.backends._registry import Backend
from amygdala.intervene._display import color_limit, relative, sink_mask
from amygdala.intervene._events import EMA, EventRule, EventTracker
from amygdala.intervene._monitor import EVENT_FORMAT, Monitor
from amygdala.intervene._readout import compute_stats, read, read_generation
from amygdala.intervene._steer import steered_generate
from tests.test_steer import tiny_vectors

NEUTRAL = ["The kettle clicked off and the water settled.",
           "A bus left the depot at nine and turned left onto the main road.",
           "The library opens at ten on weekdays and closes at six."]
PROMPT = "The cat"


def _monitor(backend: Backend, **kwargs: Any) -> Monitor:
    vs = tiny_vectors()
    return Monitor(vs, backend, stats=compute_stats(backend, vs, NEUTRAL), **kwargs)


def test_records_equal_read_and_read_generation(tiny_backend: Backend) -> None:
    monitor = _monitor(tiny_backend, layers=[1, 2])
    result = monitor.run(PROMPT, max_new_tokens=6, include_prompt=True)
    records = result.records
    plain = steered_generate(tiny_backend, PROMPT, max_new_tokens=6)
    assert result.generation.token_ids == plain.token_ids
    assert [r.token_id for r in records] == list(plain.token_ids)
    assert result.finish_reason == "length"
    for li, layer in enumerate((1, 2)):
        z = np.stack([r.z[li] for r in records])
        # Prompt tokens: exactly what `read` gives for the prompt text (sinks excepted).
        prompt = read(tiny_backend, monitor.vectors, PROMPT, layer=layer, stats=monitor.stats)
        n = len(prompt.tokens)
        np.testing.assert_allclose(z[2:n], prompt.z[2:], atol=1e-4)
        # Generated tokens: what `read_generation` (one full trace) gives for the same text.
        _, whole = read_generation(tiny_backend, monitor.vectors, PROMPT, layer=layer,
                                   stats=monitor.stats, max_new_tokens=7)
        np.testing.assert_allclose(z[2:], whole.z[2:len(records)], atol=1e-4)
    # The attention-sink positions carry no scores and do not feed the smoothed state.
    assert [r.sink for r in records[:3]] == [True, True, False]
    assert np.isnan(records[0].z).all() and not np.isnan(records[2].z).any()


def test_kv_cache_and_uncached_give_the_same_records() -> None:
    from amygdala.backends._registry import get_backend
    from tests.conftest import tiny_llama

    backend = get_backend("torch", tiny_llama())  # TransformerLens decodes uncached by design
    monitor = _monitor(backend, layers=[0, 2])
    cached = monitor.run(PROMPT, max_new_tokens=5, use_cache=True, include_prompt=True)
    uncached = monitor.run(PROMPT, max_new_tokens=5, use_cache=False, include_prompt=True)
    assert cached.generation.token_ids == uncached.generation.token_ids
    np.testing.assert_allclose(np.stack([r.z for r in cached.records[2:]]),
                               np.stack([r.z for r in uncached.records[2:]]), atol=1e-4)


def test_steering_changes_tokens_as_steered_generate_does(tiny_backend: Backend) -> None:
    monitor = _monitor(tiny_backend, layers=[1])
    kwargs: dict[str, Any] = {"max_new_tokens": 6}
    plain = monitor.run(PROMPT, **kwargs)
    steered = monitor.run(PROMPT, steer={"a": 8.0}, steer_layers=[0], **kwargs)
    library = steered_generate(tiny_backend, PROMPT, vectors=monitor.vectors,
                               alphas={"a": 8.0}, layers=[0], **kwargs)
    assert steered.generation.token_ids == library.token_ids
    assert steered.generation.token_ids != plain.generation.token_ids
    # Pushing along "a" at layer 1 itself shows in the read-out of "a" at layer 1.
    pushed = monitor.run(PROMPT, steer={"a": 4.0}, steer_layers=[1], **kwargs)
    mean_a = [np.mean([r.z[0, 0] for r in res.records]) for res in (plain, pushed)]
    assert mean_a[1] > mean_a[0] + 1.0


def test_closing_the_stream_cancels_and_removes_hooks(tiny_backend: Backend) -> None:
    monitor = _monitor(tiny_backend, layers=[1])
    before = tiny_backend.logits([PROMPT])
    stream = monitor.stream(PROMPT, max_new_tokens=50, steer={"a": 8.0}, steer_layers=[0])
    got = [next(stream), next(stream)]
    stream.close()
    assert [r.step for r in got] == [0, 1]
    torch.testing.assert_close(tiny_backend.logits([PROMPT]), before)  # no hook left
    again = monitor.run(PROMPT, max_new_tokens=3)  # the lock was released
    assert again.finish_reason == "length" and len(again.records) == 3


def test_cancel_event_stops_generation(tiny_backend: Backend) -> None:
    import threading

    monitor = _monitor(tiny_backend)
    cancel = threading.Event()
    seen: list[int] = []

    def on_record(record: Any) -> None:
        seen.append(record.step)
        if record.step == 2:
            cancel.set()

    result = monitor.run(PROMPT, max_new_tokens=40, on_record=on_record, cancel=cancel)
    assert result.finish_reason == "cancelled" and seen == [0, 1, 2]
    assert len(result.generation.token_ids) - result.generation.prompt_len == 3


def test_stop_token_ends_with_stop(tiny_backend: Backend) -> None:
    monitor = _monitor(tiny_backend)
    eos = tiny_backend.tokenizer.eos_token_id  # type: ignore[attr-defined]
    model = tiny_backend.loaded.model  # type: ignore[attr-defined]
    third = steered_generate(tiny_backend, PROMPT, max_new_tokens=3).token_ids[-1]
    with torch.no_grad():  # the stop token now outscores the greedy third token (or sooner)
        model.lm_head.weight[eos] = 10 * model.lm_head.weight[third]
    plain = steered_generate(tiny_backend, PROMPT, max_new_tokens=30)
    assert eos in plain.token_ids[plain.prompt_len:]
    result = monitor.run(PROMPT, max_new_tokens=30)
    assert result.generation.token_ids == plain.token_ids
    assert result.finish_reason == "stop"
    # Every token before the stop token has a record; the stop token is never fed back.
    assert [r.token_id for r in result.records] == list(plain.token_ids[plain.prompt_len:-1])


def test_unknown_layer_and_concept_name_the_fix(tiny_backend: Backend) -> None:
    from amygdala.errors import UnknownConceptError, UnknownSiteError

    with pytest.raises(UnknownSiteError, match="layers 0, 1, 2"):
        _monitor(tiny_backend, layers=[7])
    with pytest.raises(UnknownConceptError, match="a, b"):
        _monitor(tiny_backend, concepts=["joyful"])


def test_records_are_versioned_json(tiny_backend: Backend) -> None:
    monitor = _monitor(tiny_backend, layers=[1, 2], concepts=["b"])
    record = monitor.run(PROMPT, max_new_tokens=2).records[0]
    full = json.loads(json.dumps(record.to_json(raw=True)))
    assert full["format"] == EVENT_FORMAT and full["type"] == "token"
    assert full["concepts"] == ["b"] and np.asarray(full["z"]).shape == (2, 1)
    top = record.to_json(top_k=1)
    assert "z" not in top and top["top"][0]["concept"] == "b"
    assert monitor.header()["rule"] == {"on": 2.0, "off": 1.0, "min_tokens": 2}


def test_ema_matches_the_recurrence() -> None:
    values = np.array([[1.0, -2.0], [3.0, 0.0], [0.0, 4.0], [2.0, 2.0]])
    alpha = 2 / (3 + 1)
    expected, state = [], values[0]
    for x in values:
        state = x if not expected else alpha * x + (1 - alpha) * state
        expected.append(state)
    ema = EMA(3)
    np.testing.assert_allclose([ema.update(x) for x in values], expected)


def test_hysteresis_by_hand() -> None:
    tracker = EventTracker(["x", "y"], EventRule(on=2.0, off=1.0, min_tokens=2))
    xs = [2.5, 1.5, 2.1, 2.2, 1.5, 0.9, 1.2, 0.5, 0.4]
    ys = [0.0] * len(xs)
    out = [[(e.kind, e.concept, e.step, e.since) for e in tracker.update([x, y])]
           for x, y in zip(xs, ys, strict=True)]
    # 2.5 alone is one token (no enter); 2.1, 2.2 enter at step 3; 1.5 holds (between off
    # and on); 0.9 then 1.2 is not two in a row below 1; 0.5, 0.4 leave at step 8.
    assert [e for step in out for e in step] == [("enter", "x", 3, 2), ("leave", "x", 8, 7)]
    assert tracker.active_concepts() == ()


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-5, 5), min_size=1, max_size=60),
       on=st.floats(0.5, 3), gap=st.floats(0, 2), k=st.integers(1, 4))
def test_events_alternate_and_are_earned(values: list[float], on: float, gap: float,
                                         k: int) -> None:
    rule = EventRule(on=on, off=on - gap, min_tokens=k)
    tracker = EventTracker(["c"], rule)
    events = [e for v in values for e in tracker.update([v])]
    kinds = [e.kind for e in events]
    assert kinds == ["enter", "leave"] * (len(kinds) // 2) + ["enter"] * (len(kinds) % 2)
    for e in events:
        window = values[e.step - k + 1: e.step + 1]
        assert len(window) == k and e.since == e.step - k + 1
        assert all(v >= on for v in window) if e.kind == "enter" else all(
            v < rule.off for v in window)
    steps = [e.step for e in events]
    assert all(b - a >= k for a, b in itertools.pairwise(steps))


def test_rule_and_window_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="off <= on"):
        EventRule(on=1.0, off=2.0)
    with pytest.raises(ValueError, match="window"):
        EMA(0.5)


def test_display_rules_leave_sinks_out() -> None:
    z = np.array([[-100.0, -90.0], [-40.0, 2.0], [1.0, -2.0], [2.5, 0.5], [0.2, 1.0]])
    mask = sink_mask(len(z))
    assert mask.tolist() == [True, True, False, False, False]
    cells = np.abs(z[2:]).ravel()
    assert color_limit(z, mask=mask, floor=0.0) == pytest.approx(np.percentile(cells, 98))
    assert color_limit(z, mask=mask) == 3.0  # the floor
    assert color_limit(z, floor=0.0) > 80  # what an unmasked scale would do
    np.testing.assert_allclose(relative(z[2:]), z[2:] - z[2:].mean(axis=1, keepdims=True))


@pytest.mark.smollm
def test_smollm_monitor_equals_read_on_the_same_text(
        smollm_factory: Any, tmp_path_factory: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tests.live_helpers import build_run

    backend = smollm_factory("torch")
    run_dir = build_run(backend, Path(tmp_path_factory.mktemp("live")))
    monitor = Monitor(run_dir, backend, layers=[9, 15])
    result = monitor.run("The weather today is", max_new_tokens=6)
    text = backend.tokenizer.decode(list(result.generation.token_ids))  # type: ignore[attr-defined]
    ids = backend.tokenizer(text)["input_ids"]  # type: ignore[attr-defined,operator]
    assert tuple(ids) == result.generation.token_ids  # the text round-trips
    n = result.generation.prompt_len
    for li, layer in enumerate((9, 15)):
        whole = read(backend, monitor.vectors, text, layer=layer, stats=monitor.stats)
        z = np.stack([r.z[li] for r in result.records])
        np.testing.assert_allclose(z, whole.z[n:], rtol=1e-3, atol=2e-3)
    # `amygdala watch --jsonl -` writes the same versioned records, start to end.
    from amygdala.cli import main
    from amygdala.intervene import _monitor, _steer

    real_open = _steer.open_run
    monkeypatch.setattr(_monitor, "open_run", lambda d, **_k: real_open(d, backend=backend))
    assert main(["watch", str(run_dir), "The weather today is", "--no-chat", "--layer", "9",
                 "--max-new-tokens", "3", "--jsonl", "-"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["type"] for x in lines] == ["start", "token", "token", "token", "end"]
    assert [x["token_id"] for x in lines[1:4]] == list(result.generation.token_ids[n:n + 3])
    np.testing.assert_allclose(np.asarray(lines[1]["z"], float), result.records[0].z[:1],
                               atol=1e-3)


# ----- relative view ------------------------------------------------------------------

def _three_concepts(d: int = 32, layers: int = 3) -> Any:
    from amygdala.vectors._set import SteeringVectorSet

    rng = np.random.default_rng(7)
    return SteeringVectorSet(
        concepts=["a", "b", "c"], layers=list(range(layers)),
        directions=rng.standard_normal((3, layers, d)).astype(np.float32),
        raw_norm=np.ones((3, layers), np.float32), resid_norm=np.full(layers, 2.0, np.float32),
        mean=np.zeros((layers, d), np.float32), std=np.ones((layers, d), np.float32),
        method="paired", normalisation="raw",
        provenance={"model_fingerprint": "tiny", "corpus_hash": "x"})


def test_relative_view_is_z_minus_the_mean_over_all_concepts(tiny_backend: Backend) -> None:
    vs = _three_concepts()
    stats = compute_stats(tiny_backend, vs, NEUTRAL)
    # Only "b" and "c" reported: the mean still runs over all three of the run's concepts.
    monitor = Monitor(vs, tiny_backend, stats=stats, layers=[1, 2], concepts=["c", "b"])
    result = monitor.run(PROMPT, max_new_tokens=5, include_prompt=True)
    records = result.records
    for li, layer in enumerate((1, 2)):
        # z of all three concepts at every fed token, from one traced generation.
        z_all = read_generation(tiny_backend, vs, PROMPT, layer=layer, stats=stats,
                                max_new_tokens=6)[1].z
        expected = (z_all - z_all.sum(axis=1, keepdims=True) / 3)[:, [2, 1]]
        got = np.stack([r.relative[li] for r in records[:len(z_all)]])
        np.testing.assert_allclose(got[2:], expected[2:], atol=1e-4)
        assert np.isnan(got[:2]).all()  # sinks carry no relative scores either
    record = records[4]
    assert record.relative_band == pytest.approx(record.relative.mean(axis=0))
    # JSON: each view shows its own tables; top entries carry the layer-averaged values.
    both = json.loads(json.dumps(record.to_json(view="both")))
    np.testing.assert_allclose(both["relative"], record.relative, atol=1e-3)
    np.testing.assert_allclose(both["z"], record.z, atol=1e-3)
    only = record.to_json(view="relative")
    assert "z" not in only and "relative" in only and "relative" not in record.to_json()
    top = record.to_json(top_k=2, view="both")["top"]
    j = record.concepts.index(top[0]["concept"])
    assert top[0]["relative"] == pytest.approx(record.relative[:, j].mean(), abs=1e-3)
    assert top[0]["z"] == pytest.approx(record.z[:, j].mean(), abs=1e-3)
    assert "z" not in record.to_json(top_k=2, view="relative")["top"][0]
    assert records[0].to_json(view="relative")["relative"] is None  # a sink
    with pytest.raises(ValueError, match="z, relative, both"):
        record.to_json(view="raw")  # type: ignore[arg-type]


@pytest.mark.parametrize("events_on", ["z", "relative"])
def test_smoothing_and_events_run_on_the_chosen_view(tiny_backend: Backend,
                                                     events_on: Any) -> None:
    vs = _three_concepts()
    rule = EventRule(on=0.3, off=0.0, min_tokens=1)
    monitor = Monitor(vs, tiny_backend, stats=compute_stats(tiny_backend, vs, NEUTRAL),
                      layers=[1, 2], window=3, rule=rule, events_on=events_on)
    assert monitor.header()["events_on"] == events_on
    records = monitor.run(PROMPT, max_new_tokens=8).records
    table = np.stack([r.relative if events_on == "relative" else r.z for r in records])
    bands = table.mean(axis=1)  # [tokens, concepts]
    if events_on == "relative":  # z minus the mean over all concepts, by hand
        z_bands = np.stack([r.z for r in records]).mean(axis=1)
        np.testing.assert_allclose(bands, z_bands - z_bands.mean(axis=1, keepdims=True),
                                   atol=1e-5)
    alpha, state, events = 2 / (3 + 1), bands[0], []
    active = np.zeros(3, bool)
    for i, (record, band) in enumerate(zip(records, bands, strict=True)):
        state = band if i == 0 else alpha * band + (1 - alpha) * state
        np.testing.assert_allclose(record.smoothed, state, atol=1e-5)
        flip = np.where(active, state < rule.off, state >= rule.on)  # min_tokens=1
        for j in np.flatnonzero(flip):
            active[j] = not active[j]
            events.append(("enter" if active[j] else "leave", "abc"[j], i))
    assert [(e.kind, e.concept, e.step) for r in records for e in r.events] == events
    assert events  # the thresholds were set so that something happens


def test_events_on_refuses_an_unknown_view(tiny_backend: Backend) -> None:
    with pytest.raises(ValueError, match="events_on must be one of z, relative"):
        _monitor(tiny_backend, events_on="raw")


def test_watch_jsonl_carries_the_view_asked_for(
        tiny_backend: Backend, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from amygdala.cli import main

    vs = _three_concepts()
    stats = compute_stats(tiny_backend, vs, NEUTRAL)
    opened: dict[str, Any] = {}

    def from_run(run_dir: Any, backend: Any = None, **options: Any) -> Monitor:
        opened.update(options, run_dir=run_dir)
        keep = ("layers", "concepts", "window", "rule", "events_on")
        return Monitor(vs, tiny_backend, stats=stats, **{k: options[k] for k in keep})

    monkeypatch.setattr(Monitor, "from_run", staticmethod(from_run))
    args = ["watch", "RUN", PROMPT, "--no-chat", "--layer", "1", "--layer", "2",
            "--max-new-tokens", "4", "--jsonl", "-"]
    assert main([*args, "--relative", "--events-on", "relative", "--concepts", "a,c"]) == 0
    assert opened["events_on"] == "relative" and opened["concepts"] == ["a", "c"]
    assert opened["run_dir"] == "RUN" and opened["layers"] == [1, 2]
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["view"] == "both" and lines[0]["events_on"] == "relative"
    tokens = [x for x in lines if x["type"] == "token"]
    assert len(tokens) == 4
    # Check the JSON against z of all three concepts, by hand.
    full = Monitor(vs, tiny_backend, stats=stats, layers=[1, 2]).run(
        PROMPT, max_new_tokens=4).records
    for line, record in zip(tokens, full, strict=True):
        z = record.z.astype(np.float64)
        expected = (z - z.mean(axis=1, keepdims=True))[:, [0, 2]]
        np.testing.assert_allclose(line["relative"], expected, atol=2e-3)
        np.testing.assert_allclose(line["z"], z[:, [0, 2]], atol=2e-3)
    # Without --view the records carry z only; --view relative carries relative only.
    assert main(args) == 0
    plain = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert plain[0]["view"] == "z" and "relative" not in plain[1] and "z" in plain[1]
    assert main([*args, "--view", "relative"]) == 0
    rel = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert "z" not in rel[1] and "relative" in rel[1]
