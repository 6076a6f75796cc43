"""Readout: per-token z-scores against neutral statistics, views, caching, generation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amygdala.backends._registry import Backend
from amygdala.intervene import _readout
from amygdala.intervene._readout import (
    STATS_FILE,
    NeutralTextsError,
    ReadoutStats,
    compute_stats,
    load_or_compute_stats,
    neutral_texts,
    read,
    read_generation,
)
from amygdala.intervene._steer import steer
from tests.test_steer import tiny_vectors

NEUTRAL = ["The kettle clicked off and the water settled.",
           "A bus left the depot at nine and turned left onto the main road.",
           "The library opens at ten on weekdays and closes at six."]


def test_neutral_tokens_have_zero_mean_unit_spread(tiny_backend: Backend) -> None:
    vs = tiny_vectors()
    stats = compute_stats(tiny_backend, vs, NEUTRAL)
    z = np.concatenate([read(tiny_backend, vs, t, layer=1, stats=stats).z[2:] for t in NEUTRAL])
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-3)
    assert stats.n_tokens == len(z)


def test_read_shapes_views_and_files(tiny_backend: Backend, tmp_path: Path) -> None:
    vs = tiny_vectors()
    stats = compute_stats(tiny_backend, vs, NEUTRAL)
    r = read(tiny_backend, vs, "Rain again.", layer=2, stats=stats)
    assert r.z.shape == (len(r.tokens), 2)
    assert "".join(r.tokens) == "Rain again."
    assert [len(t) for t in r.top(1)] == [1] * len(r.tokens)
    plain, coloured = r.render(top=2, color=False), r.render(top=2, color=True)
    assert "\x1b[" not in plain and "\x1b[48;5;" in coloured
    assert "'again'" in plain.replace("' again'", "'again'") or "again" in plain
    html = r.save_html(tmp_path / "r.html").read_text()
    # Raw and relative tables (header + 2 concepts each); the 2 sink tokens are blank cells.
    assert html.count("<table>") == 2 and html.count("<tr>") == 6 and "z=" in html
    assert html.count("class='sink'") == 2 * 2 * 2
    assert json.loads(json.dumps(r.to_json()))["concepts"] == ["a", "b"]
    pytest.importorskip("matplotlib")
    png = r.save_png(tmp_path / "r.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_stats_round_trip_and_cache(tiny_backend: Backend, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    vs = tiny_vectors()
    monkeypatch.setattr(_readout, "neutral_texts", lambda *_a, **_k: NEUTRAL)
    first = load_or_compute_stats(tmp_path, tiny_backend, vs)
    assert (tmp_path / STATS_FILE).is_file()
    again = ReadoutStats.from_json(json.loads((tmp_path / STATS_FILE).read_text()))
    np.testing.assert_allclose(again.std[1], first.std[1], rtol=1e-6)

    def fail(*_a: Any, **_k: Any) -> None:
        raise AssertionError("statistics must come from the cache")

    monkeypatch.setattr(_readout, "compute_stats", fail)
    cached = load_or_compute_stats(tmp_path, tiny_backend, vs)
    np.testing.assert_allclose(cached.mean[2], first.mean[2], rtol=1e-6)


def test_missing_corpus_names_the_fix() -> None:
    with pytest.raises(NeutralTextsError, match="--corpus"):
        neutral_texts(tiny_vectors(), "/nonexistent/corpus")


def test_generation_readout_matches_reading_the_text(tiny_backend: Backend) -> None:
    vs = tiny_vectors()
    stats = compute_stats(tiny_backend, vs, NEUTRAL)
    generation, r = read_generation(tiny_backend, vs, "The cat", layer=1, stats=stats,
                                    max_new_tokens=5)
    assert r.start == generation.prompt_len
    assert len(r.tokens) == len(generation.token_ids) - 1
    # The prompt pass of generation reads exactly what reading the prompt reads.
    prompt = read(tiny_backend, vs, "The cat", layer=1, stats=stats)
    np.testing.assert_allclose(r.z[: r.start], prompt.z, atol=1e-4)
    # Steering around the call shows in the readout of the steered concept.
    with steer(tiny_backend, vs, {"a": 4.0}, layers=[1]):
        _, steered = read_generation(tiny_backend, vs, "The cat", layer=1, stats=stats,
                                     max_new_tokens=5)
    assert steered.z[:, 0].mean() > r.z[:, 0].mean()


def _write_small_stats(run: Any) -> None:
    """Cheap neutral statistics (3 texts) so CLI tests skip the 48-text pass."""
    from amygdala.vectors._set import SteeringVectorSet

    vs = SteeringVectorSet.load(run.run_dir)
    texts = [t.text for t in run.corpus.neutral[:3]]
    stats = compute_stats(run.session.backend, vs, texts)
    (Path(run.run_dir) / STATS_FILE).write_text(json.dumps(stats.to_json()))


@pytest.mark.smollm
def test_smollm_read_command(small_run_copy: Any, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from amygdala.cli import main
    from amygdala.intervene import _steer

    run = small_run_copy  # the statistics are written into this test's own copy
    _write_small_stats(run)
    real_open = _steer.open_run
    monkeypatch.setattr(_steer, "open_run", lambda d, **_k: real_open(
        d, backend=run.session.backend))
    text = "She laughed and hugged everyone at the door."
    assert main(["read", str(run.run_dir), text, "--layer", "15", "--top", "2",
                 "--html", str(tmp_path / "r.html"), "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "layer 15" in out and "' laughed'" in out and (tmp_path / "r.html").is_file()


def test_readout_stats_file_is_byte_identical_through_the_codec() -> None:
    """tests/data/codec/readout_stats.json was written by the hand-written ``to_json``
    (before the codec): reading and writing it again gives the same bytes, as
    `load_or_compute_stats` writes them."""
    path = Path(__file__).parent / "data" / "codec" / "readout_stats.json"
    text = path.read_text()
    stats = ReadoutStats.from_json(json.loads(text))
    assert stats.mean[9].dtype == np.float32 and list(stats.mean) == [9, 15]
    assert (stats.skip, stats.skip_source, stats.n_tokens) == (4, "run pooling mean_skip4", 1234)
    assert json.dumps(stats.to_json()) + "\n" == text
    # Layers are written in order whatever order they were given in.
    reordered = ReadoutStats(concepts=stats.concepts, mean={15: stats.mean[15], 9: stats.mean[9]},
                             std={15: stats.std[15], 9: stats.std[9]}, n_tokens=stats.n_tokens,
                             key=stats.key, skip=stats.skip, skip_source=stats.skip_source)
    assert json.dumps(reordered.to_json()) + "\n" == text
    # An older file without skip fields reads with the defaults.
    old = json.loads(text)
    del old["skip"], old["skip_source"]
    assert (ReadoutStats.from_json(old).skip, ReadoutStats.from_json(old).skip_source) == (
        2, "default 2")
