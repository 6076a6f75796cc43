"""Train vectors on the shipped corpus, compare two methods, and export a control vector.

Run from the repository root: ``python examples/02_train.py``. The first run captures the
corpus into the activation store (a few minutes on 2 cores); later runs reuse it.
"""

from __future__ import annotations

from pathlib import Path

import amygdala

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    corpus = amygdala.Corpus.load(ROOT / "paired")
    session = amygdala.open_session(amygdala.TrainConfig())
    layers = tuple(range(8, 24, 3))
    trained: dict[str, amygdala.SteeringVectorSet] = {}
    for method in ("paired", "unpaired"):
        config = amygdala.TrainConfig(method=method, layers=layers)
        result = amygdala.train(corpus, config=config, session=session,
                                out=ROOT / "runs" / f"example_{method}")
        vectors = trained[method] = result.vectors
        nearest = vectors.cosine_matrix(layers[-1])[vectors.concept_index("afraid")]
        order = [vectors.concepts[i] for i in nearest.argsort()[::-1][1:4]]
        print(f"{method:>9}: {len(vectors.concepts)} concepts; nearest to 'afraid' at layer "
              f"{layers[-1]}: {', '.join(order)}")
    evaluation = amygdala.evaluate(result.data, corpus, methods=["paired", "probe"])
    for method in evaluation.methods:
        layer, accuracy = evaluation.best_layer(method)
        print(f"nested held-out accuracy {method}: {accuracy:.3f}; recommended layer {layer} "
              f"(bag-of-words {evaluation.bag_of_words:.3f}, chance {evaluation.chance:.3f})")
    # The paired vectors, at the default band (5 layers around the middle one) and strength.
    path = amygdala.vectors.export_gguf(trained["paired"], ROOT / "runs" / "afraid.gguf",
                                        "afraid")
    print(f"llama.cpp control vector (paired): {path}")


if __name__ == "__main__":
    main()
