"""`amygdala watch RUN_DIR PROMPT`: tokens as they are generated, with a live concept strip."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from amygdala._views import DISPLAYS
from amygdala.cli._common import add_device_options, add_monitor_options, event_rule, open_monitor

NAME = "watch"
HELP = ("Generate from a prompt and watch concepts token by token: a live strip of the top "
        "concepts, events inline, --jsonl records for scripts, --steer to watch steering act.")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the watch options to ``parser``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory from `amygdala train`")
    add_device_options(parser)
    parser.add_argument("prompt", metavar="PROMPT", help="the prompt (a user message)")
    add_monitor_options(parser)
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--no-chat", action="store_true",
                        help="feed the prompt raw instead of through the chat template")
    parser.add_argument("--steer", action="append", default=[], metavar="CONCEPT=ALPHA",
                        help="steer while generating (repeat for several concepts)")
    parser.add_argument("--steer-layer", type=int, action="append", default=None,
                        help="layer(s) to steer (default: the run's best layer)")
    parser.add_argument("--top", type=int, default=3, help="concepts in the live strip")
    parser.add_argument("--view", choices=DISPLAYS, default=None,
                        help="what the records and the strip show: z against neutral text, "
                        "the relative view (z minus the mean over concepts, as `amygdala "
                        "read --view relative`), or both; default: the view evaluation.json "
                        "recommends, else z")
    parser.add_argument("--relative", dest="view", action="store_const", const="both",
                        help="the relative view beside z (the same as --view both)")
    parser.add_argument("--jsonl", metavar="FILE",
                        help="write the versioned records (start, token..., end) as JSON "
                        "lines; '-' for stdout (then nothing else is printed there)")
    parser.add_argument("--plain", action="store_true",
                        help="no live display: print tokens and events as plain text")


def parse_steer(items: list[str]) -> dict[str, float]:
    """Parse ``["joyful=0.2", ...]`` into ``{"joyful": 0.2}``.

    Raises:
        ValueError: an item is not CONCEPT=NUMBER.

    >>> parse_steer(["joyful=0.2", "afraid=-0.1"])
    {'joyful': 0.2, 'afraid': -0.1}
    """
    out = {}
    for item in items:
        concept, sep, value = item.partition("=")
        try:
            out[concept.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not concept.strip():
            raise ValueError(f"--steer expects CONCEPT=ALPHA (e.g. joyful=0.2), got {item!r}")
    return out


def _event_mark(record: Any) -> str:
    return "".join(f"[{'+' if e.kind == 'enter' else '-'}{e.concept}]" for e in record.events)


def run(args: argparse.Namespace) -> int:
    """Generate and display the read-out live."""
    try:
        steer = parse_steer(args.steer)
        rule = event_rule(args)
    except ValueError as exc:
        print(f"amygdala watch: error: {exc}", file=sys.stderr)
        return 2
    monitor = open_monitor(args, rule)
    view = args.view or monitor.view  # --view, else the run's recommended view
    print(f"amygdala watch: reading {monitor.describe()}; showing {view}", file=sys.stderr,
          flush=True)
    options = {"max_new_tokens": args.max_new_tokens, "chat": not args.no_chat,
               "steer": steer or None, "steer_layers": args.steer_layer}
    sink: TextIO | None = None
    if args.jsonl == "-":
        sink = sys.stdout
    elif args.jsonl:
        sink = open(args.jsonl, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        live = sink is not sys.stdout and not args.plain and sys.stdout.isatty()
        show = _LiveView(monitor, args.top, view) if live else None
        if sink is not None:
            sink.write(json.dumps({**monitor.header(args.prompt), "view": view}) + "\n")
        stream = monitor.stream(args.prompt, **options)
        result = None
        try:
            if show is not None:
                show.start()
            while True:
                try:
                    record = next(stream)
                except StopIteration as stop:
                    result = stop.value
                    break
                if sink is not None:
                    sink.write(json.dumps(record.to_json(raw=True, view=view)) + "\n")
                    sink.flush()
                if show is not None:
                    show.add(record)
                elif sink is not sys.stdout:
                    print(record.text + _event_mark(record), end="", flush=True)
        finally:
            stream.close()
            if show is not None:
                show.stop()
        if sink is not None and result is not None:
            sink.write(json.dumps(result.footer()) + "\n")
        if sink is not sys.stdout and result is not None:
            if show is None:
                print()
            events = [e for r in result.records for e in r.events]
            print(f"[{result.finish_reason}; {len(result.records)} tokens; "
                  f"layers {', '.join(map(str, monitor.layers))}; "
                  f"{len(events)} events: "
                  + (", ".join(f"{e.kind} {e.concept} @{e.step}" for e in events) or "none")
                  + "]")
    finally:
        if sink is not None and sink is not sys.stdout:
            sink.close()
    return 0


class _LiveView:
    """A rich Live display: the text with events inline, and bars of the top concepts.

    Bars show the smoothed state (of the view events run on); beside them, the token's
    layer-averaged z and/or relative value, as ``--view`` asks.
    """

    def __init__(self, monitor: Any, top: int, view: str) -> None:
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError as exc:
            from amygdala.errors import MissingDependencyError

            raise MissingDependencyError(
                "the live display needs rich: pip install 'amygdala[serve]' "
                "(or use --plain / --jsonl)") from exc
        self.monitor, self.top, self.view = monitor, top, view
        self.parts: list[tuple[str, str]] = []
        self.bands: list[Any] = []
        self.last: Any = None
        self.live = Live(self._render(), console=Console(), refresh_per_second=12,
                         transient=False)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.update(self._render())
        self.live.stop()

    def add(self, record: Any) -> None:
        self.last = record
        style = ""
        if record.active:
            style = "bold"
        self.parts.append((record.text, style))
        for e in record.events:
            self.parts.append((f"⟦{'+' if e.kind == 'enter' else '−'}{e.concept}⟧",
                               "green" if e.kind == "enter" else "red"))
        if not record.sink:  # sinks never set the scale
            relative = self.monitor.events_on == "relative"
            self.bands.append(record.relative_band if relative else record.band)
        self.live.update(self._render())

    def _render(self) -> Any:
        import numpy as np
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from amygdala.intervene._display import color_limit

        text = Text()
        for chunk, style in self.parts:
            text.append(chunk, style=style)
        table = Table.grid(padding=(0, 1))
        last = self.last
        if last is not None and last.smoothed is not None:
            limit = color_limit(np.asarray(self.bands)) if self.bands else 3.0
            order = np.argsort(-last.smoothed)[: self.top]
            heads = ["", f"smoothed {self.monitor.events_on}"]
            heads += ["z"] if self.view != "relative" else []
            heads += ["relative"] if self.view != "z" else []
            table.add_row(*(Text(h, style="dim") for h in heads))
            for j in order:
                value = float(last.smoothed[j])
                width = round(20 * min(1.0, max(0.0, value) / limit))
                colour = "green" if last.concepts[j] in last.active else "cyan"
                cells = [Text(f"{last.concepts[j]:>14}"),
                         Text("█" * width + "·" * (20 - width) + f" {value:+.1f}",
                              style=colour)]
                if not last.sink:
                    if self.view != "relative":
                        cells.append(Text(f"{float(last.band[j]):+.1f}"))
                    if self.view != "z":
                        cells.append(Text(f"{float(last.relative_band[j]):+.1f}"))
                table.add_row(*cells)
        return Group(text, Text(""), table)
