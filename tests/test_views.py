"""One vocabulary of read-out views (``z``, ``relative``; ``both`` as a display) across
evaluation, the bundle, ``read``, the monitor, ``watch`` and ``serve``; old files that
spelled the z view ``raw`` still read; the live path takes its defaults from the run's
``evaluation.json``.

The fixtures under tests/data/views were written by the code before the rename (commit
f95e65f): ``evaluation_format3.json`` by ``evaluate`` on the planted corpus of
tests/test_evaluate.py (``planted(n_scenarios=6, signal=(0.3, 1.2), noise=0.6, seed=6)``,
methods paired and probe, folds=3, bands=(3,)), and ``bundle_format2`` by
``SteeringVectorSet.readout_bundle(..., view="raw").save``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amygdala._views import check_display, check_view, view_from_file
from amygdala.backends._registry import Backend
from amygdala.diagnose._evaluate import FORMAT_VERSION, Evaluation
from amygdala.errors import VectorFileError, ViewError
from amygdala.intervene._monitor import Monitor, live_defaults
from amygdala.intervene._readout import compute_stats, recommended_read
from amygdala.vectors._bundle import BUNDLE_FORMAT, ReadoutBundle
from amygdala.vectors._run import RunContext
from tests.test_steer import tiny_vectors

DATA = Path(__file__).parent / "data" / "views"
NEUTRAL = ["The kettle clicked off and the water settled.",
           "A bus left the depot at nine and turned left onto the main road.",
           "The library opens at ten on weekdays and closes at six."]
PROMPT = "The cat"


# ----- the vocabulary ------------------------------------------------------------------
def test_views_and_displays_refuse_other_names_with_the_fix() -> None:
    assert check_view("z") == "z" and check_display("both") == "both"
    with pytest.raises(ViewError, match=r"one of z, relative, got 'raw' \('raw' is the old "
                                        r"name of 'z'\)"):
        check_view("raw", "--view")
    with pytest.raises(ViewError, match=r"one of z, relative, both, got 'raw' .*old name"):
        check_display("raw")
    with pytest.raises(ViewError, match=r"got \['z'\]$"):  # unhashable: no crash
        check_display(["z"])
    with pytest.raises(ViewError, match="one of z, relative, got 'both'"):
        check_view("both")  # a display, not a view
    assert issubclass(ViewError, ValueError)
    assert [view_from_file(v) for v in ("raw", "z", "relative", "both", None, 3)] == [
        "z", "z", "relative", None, None, None]


# ----- evaluation.json -----------------------------------------------------------------
def test_a_format_3_evaluation_reads_with_z_for_raw(tmp_path: Path) -> None:
    old = json.loads((DATA / "evaluation_format3.json").read_text())
    assert old["format_version"] == 3
    ev = Evaluation.from_json(old)
    for method in ("paired", "probe"):
        result = ev.results[method]
        assert set(result.detection) == {"z", "relative"}
        file_views = old["results"][method]["readout"]
        assert file_views["recommended_view"] == "raw"
        assert result.recommended_view == "z"
        assert result.detection["z"].value == file_views["detection"]["raw"]["auc"]
        assert result.detection["relative"].value == file_views["detection"]["relative"]["auc"]
    new = ev.to_json()
    assert new["format_version"] == FORMAT_VERSION == 4
    assert set(new["results"]["paired"]["readout"]["detection"]) == {"z", "relative"}
    assert {m: r["view"] for m, r in new["recommended_read"].items()} == {
        "paired": "z", "probe": "z"}
    # Everything but the renamed view is carried over unchanged.
    renamed = json.loads(json.dumps(new).replace('"z"', '"raw"'))
    renamed["format_version"] = 3
    assert renamed == old
    # recommended_read (read, the bundle, the monitor) maps the old name too.
    shutil.copy(DATA / "evaluation_format3.json", tmp_path / "evaluation.json")
    rec = recommended_read(tmp_path, "paired")
    assert (rec.view, rec.view_named) == ("z", True)
    assert rec.layers == (list(old["recommended_read"]["paired"]["band"])
                          or [old["recommended_read"]["paired"]["layer"]])


def test_recommended_read_of_a_bad_or_missing_view_is_z_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "evaluation.json").write_text(json.dumps(
        {"recommended_read": {"paired": {"layer": 2, "band": [], "view": "bogus"}}}))
    rec = recommended_read(tmp_path, "paired")
    assert (rec.layer, rec.view, rec.view_named) == (2, "z", False)
    (tmp_path / "evaluation.json").write_text(json.dumps(
        {"recommended_read": {"paired": {"layer": 2, "band": [], "view": "relative"}}}))
    assert recommended_read(tmp_path, "paired").view == "relative"


# ----- readout.json --------------------------------------------------------------------
def test_a_format_2_bundle_loads_with_z_and_saves_as_format_3(tmp_path: Path) -> None:
    old_meta = json.loads((DATA / "bundle_format2" / "readout.json").read_text())
    assert (old_meta["format_version"], old_meta["recommended_view"]) == (2, "raw")
    bundle = ReadoutBundle.load(DATA / "bundle_format2")
    assert bundle.view == "z"
    # The numbers came through: z by hand from the file's readers and statistics.
    h = {1: np.array([[1.0, -2.0, 0.5, 3.0]], np.float32),
         2: np.array([[0.0, 1.0, -1.0, 2.0]], np.float32)}
    by_hand = np.mean([(bundle.readers[x] @ h[x][0] + bundle.offsets[x]
                        - np.asarray(old_meta["neutral"][str(x)]["mean"]))
                       / np.asarray(old_meta["neutral"][str(x)]["std"]) for x in (1, 2)], axis=0)
    np.testing.assert_allclose(bundle.zscores(h, layers=[1, 2])[0], by_hand, rtol=1e-5)
    bundle.save(tmp_path)
    meta = json.loads((tmp_path / "readout.json").read_text())
    assert (meta["format_version"], meta["recommended_view"]) == (BUNDLE_FORMAT, "z")
    assert BUNDLE_FORMAT == 3
    assert {k: v for k, v in meta.items() if k not in ("format_version", "recommended_view")} \
        == {k: v for k, v in old_meta.items() if k not in ("format_version", "recommended_view")}
    assert ReadoutBundle.load(tmp_path).view == "z"


def test_a_bundle_refuses_a_view_it_does_not_know(tmp_path: Path) -> None:
    bundle = ReadoutBundle.load(DATA / "bundle_format2")
    with pytest.raises(ViewError, match="old name of 'z'"):
        bundle.__class__(**{**_fields(bundle), "view": "raw"})
    shutil.copytree(DATA / "bundle_format2", tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "readout.json").read_text())
    meta["recommended_view"] = "sideways"
    (tmp_path / "b" / "readout.json").write_text(json.dumps(meta))
    with pytest.raises(VectorFileError, match=r"recommended_view 'sideways'.*z or relative"):
        ReadoutBundle.load(tmp_path / "b")
    meta["format_version"] = 1
    (tmp_path / "b" / "readout.json").write_text(json.dumps(meta))
    with pytest.raises(VectorFileError, match="reads 2 and 3"):
        ReadoutBundle.load(tmp_path / "b")


def _fields(bundle: ReadoutBundle) -> dict[str, Any]:
    import attrs

    return {f.name: getattr(bundle, f.name) for f in attrs.fields(type(bundle))}


# ----- the live path: defaults from evaluation.json ------------------------------------
def _run(tmp_path: Path, backend: Backend, evaluation: dict[str, Any] | None) -> RunContext:
    if evaluation is not None:
        (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    return RunContext(run_dir=tmp_path, vectors=tiny_vectors(), backend=backend, config={})


def _read(layer: int, band: list[int], view: str) -> dict[str, Any]:
    return {"recommended_layer": {"paired": 0},
            "recommended_read": {"paired": {"layer": layer, "band": band, "view": view}}}


def test_monitor_defaults_follow_the_recommended_read_out(tiny_backend: Backend,
                                                          tmp_path: Path) -> None:
    vs = tiny_vectors()
    stats = compute_stats(tiny_backend, vs, NEUTRAL)
    # The band and the view the evaluation recommends (not the paired task's layer 0,
    # not the middle layer 1).
    ctx = _run(tmp_path, tiny_backend, _read(2, [1, 2], "relative"))
    monitor = Monitor(ctx, stats=stats)
    assert monitor.layers == (1, 2)
    assert (monitor.events_on, monitor.view) == ("relative", "relative")
    assert "recommended read-out band 1-2" in monitor.layers_from
    assert "evaluation.json" in monitor.layers_from
    assert "recommended view" in monitor.events_on_from
    assert monitor.header()["layers_from"] == monitor.layers_from
    line = monitor.describe()
    assert line.startswith("layers 1, 2 (mean z) from the recommended read-out band 1-2")
    assert "events on relative from the recommended view" in line
    # Explicit values win.
    chosen = Monitor(ctx, stats=stats, layers=[0], events_on="z", view="both")
    assert (chosen.layers, chosen.events_on, chosen.view) == ((0,), "z", "both")
    assert chosen.layers_from == chosen.events_on_from == "given by the caller"
    # A single recommended layer, the old spelling of z.
    (tmp_path / "evaluation.json").write_text(json.dumps(_read(2, [], "raw")))
    single = Monitor(ctx, stats=stats)
    assert (single.layers, single.events_on, single.view) == ((2,), "z", "z")
    # An older evaluation: the paired task's layer, z.
    (tmp_path / "evaluation.json").write_text(json.dumps({"recommended_layer": {"paired": 0}}))
    older = Monitor(ctx, stats=stats)
    assert (older.layers, older.events_on) == ((0,), "z")
    assert "older evaluation" in older.layers_from
    # No evaluation.json: today's defaults (the middle layer, z).
    (tmp_path / "evaluation.json").unlink()
    plain = Monitor(ctx, stats=stats)
    assert (plain.layers, plain.events_on, plain.view) == ((1,), "z", "z")
    assert plain.layers_from == "the middle layer (no evaluation.json)"
    # Read-out layers the vectors lack: the run's best layer, and the reason.
    (tmp_path / "evaluation.json").write_text(json.dumps(_read(7, [6, 7, 8], "relative")))
    missing = live_defaults(vs, tmp_path)
    assert missing.layers == (0,) and "[6, 7, 8] are not all among" in missing.layers_from
    assert missing.view == "relative"


def test_monitor_refuses_unknown_views(tiny_backend: Backend) -> None:
    vs = tiny_vectors()
    stats = compute_stats(tiny_backend, vs, NEUTRAL)
    with pytest.raises(ViewError, match="events_on must be one of z, relative, got 'raw'"):
        Monitor(vs, tiny_backend, stats=stats, events_on="raw")  # type: ignore[arg-type]
    with pytest.raises(ViewError, match="view must be one of z, relative, both"):
        Monitor(vs, tiny_backend, stats=stats, view="all")  # type: ignore[arg-type]
    record = Monitor(vs, tiny_backend, stats=stats).run(PROMPT, max_new_tokens=2).records[-1]
    with pytest.raises(ViewError, match="old name of 'z'"):
        record.to_json(view="raw")  # type: ignore[arg-type]


def _patch_run(monkeypatch: pytest.MonkeyPatch, backend: Backend, run_dir: Path) -> None:
    """`Monitor.from_run` on the tiny model: its run context and neutral statistics."""
    import amygdala.intervene._monitor as monitor_module

    vs = tiny_vectors()
    stats = compute_stats(backend, vs, NEUTRAL)
    monkeypatch.setattr(monitor_module, "open_run", lambda run, **_: RunContext(
        run_dir=Path(run), vectors=vs, backend=backend, config={}))
    monkeypatch.setattr(monitor_module, "load_or_compute_stats", lambda *_, **__: stats)


def test_watch_takes_its_defaults_from_the_evaluation(
        tiny_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from amygdala.cli import main

    _patch_run(monkeypatch, tiny_backend, tmp_path)
    (tmp_path / "evaluation.json").write_text(json.dumps(_read(2, [1, 2], "relative")))
    args = ["watch", str(tmp_path), PROMPT, "--no-chat", "--max-new-tokens", "3",
            "--jsonl", "-"]
    assert main(args) == 0
    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines()]
    start, token = lines[0], lines[3]
    assert (start["layers"], start["events_on"], start["view"]) == ([1, 2], "relative",
                                                                    "relative")
    assert "recommended read-out band 1-2" in start["layers_from"]
    assert "relative" in token and "z" not in token  # the recommended view is shown
    assert "reading layers 1, 2 (mean z) from the recommended read-out" in out.err
    assert "showing relative" in out.err
    # Flags win over the evaluation.
    assert main([*args, "--layer", "0", "--events-on", "z", "--view", "both"]) == 0
    out = capsys.readouterr()
    start = json.loads(out.out.splitlines()[0])
    assert (start["layers"], start["events_on"], start["view"]) == ([0], "z", "both")
    assert start["layers_from"] == "--layer"
    assert "layer 0 from --layer; events on z from --events-on" in out.err
    # No evaluation: today's defaults.
    (tmp_path / "evaluation.json").unlink()
    assert main(args) == 0
    start = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (start["layers"], start["events_on"], start["view"]) == ([1], "z", "z")


def test_serve_startup_line_and_default_view(
        tiny_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    import amygdala.serve as serve_module
    from amygdala.cli import main
    from amygdala.serve import ServeConfig, create_app

    _patch_run(monkeypatch, tiny_backend, tmp_path)
    (tmp_path / "evaluation.json").write_text(json.dumps(_read(2, [1, 2], "relative")))
    served: dict[str, Any] = {}
    monkeypatch.setattr(serve_module, "serve",
                        lambda monitor, config, **_: served.update(monitor=monitor))
    assert main(["serve", str(tmp_path)]) == 0
    line = capsys.readouterr().out
    assert "reading layers 1, 2 (mean z) from the recommended read-out band 1-2" in line
    assert "events on relative from the recommended view" in line
    assert "view relative by default" in line
    monitor = served["monitor"]
    client = TestClient(create_app(monitor, ServeConfig(max_tokens=4)))
    # No view asked for: the run's recommended view; one asked for wins.
    read = client.post("/v1/amygdala/read", json={"text": PROMPT}).json()
    assert read["view"] == "relative" and "relative" in read and "z" not in read
    asked = client.post("/v1/amygdala/read", json={"text": PROMPT, "view": "z"}).json()
    assert asked["view"] == "z" and "z" in asked and "relative" not in asked
    done = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2,
                                                "amygdala": {"top_k": None}}).json()
    table = done["amygdala"]
    assert table["view"] == "relative" and "z" not in table
    assert table["layers"] == [1, 2] and "recommended read-out" in table["layers_from"]
    listed = client.get("/v1/models").json()["data"][0]["amygdala"]
    assert (listed["default_layers"], listed["default_view"], listed["default_events_on"]) == (
        [1, 2], "relative", "relative")
    assert "recommended read-out band 1-2" in listed["layers_from"]
    bad = client.post("/v1/completions", json={"prompt": PROMPT,
                                               "amygdala": {"view": "raw"}})
    assert bad.status_code == 400
    assert "'raw' is the old name of 'z'" in bad.json()["error"]["message"]
    bad = client.post("/v1/completions", json={"prompt": PROMPT,
                                               "amygdala": {"events_on": "both"}})
    assert bad.status_code == 400
    assert "amygdala.events_on must be one of z, relative" in bad.json()["error"]["message"]


def test_read_refuses_the_old_view_name(capsys: pytest.CaptureFixture[str]) -> None:
    from amygdala.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["read", "RUN", "text", "--view", "raw"])
    assert exit_info.value.code == 2
    assert "'raw' is the old name of 'z': pass --view z" in capsys.readouterr().err


def test_watch_on_a_trained_run_reads_where_its_evaluation_says(
        tiny_run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end, nothing patched: ``amygdala train`` wrote evaluation.json; ``watch``
    opens the run by path and reads its recommended read-out."""
    from amygdala.cli import main

    evaluation = json.loads((tiny_run_copy / "evaluation.json").read_text())
    method = json.loads((tiny_run_copy / "vectors.json").read_text())["method"]
    rec = evaluation["recommended_read"][method]
    assert main(["watch", str(tiny_run_copy), PROMPT, "--no-chat", "--max-new-tokens", "2",
                 "--jsonl", "-", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    start = json.loads(out.out.splitlines()[0])
    assert start["layers"] == (rec["band"] or [rec["layer"]])
    assert start["events_on"] == start["view"] == rec["view"]
    assert str(tiny_run_copy / "evaluation.json") in start["layers_from"]
    assert "from the recommended read-out" in out.err


def test_a_readout_names_its_view() -> None:
    from amygdala.intervene._readout import Readout

    z = np.zeros((2, 2))
    plain = Readout(tokens=["a", "b"], concepts=["x", "y"], layer=1, z=z)
    rel = Readout(tokens=["a", "b"], concepts=["x", "y"], layer=1, z=z, relative=True)
    assert (plain.view, plain.to_json()["view"]) == ("z", "z")
    assert (rel.view, rel.to_json()["view"], rel.to_json()["relative"]) == (
        "relative", "relative", True)
