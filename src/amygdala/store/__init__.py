"""Stage 3, the activation store: pooled activations on disk, content-addressed and resumable."""

from amygdala.store._store import Activations, ActivationStore, text_hash

__all__ = ["ActivationStore", "Activations", "text_hash"]
