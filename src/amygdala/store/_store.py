"""An on-disk, content-addressed store of pooled activations.

Layout: ``ROOT/<model fingerprint>/<pooling key>/`` (``<pooling key>-float16`` for
float16 stores) holds ``store.json`` and shard files. The fingerprint covers the
model's weights and their dtype, so float32 and bfloat16 captures of one checkpoint
never share a directory, and neither do float16 and float32 stores. Each shard is
one safetensors file written by one capture batch: one tensor per site (pooled
activations) and one ``token_norm.<site>`` per site (each text's median token
norm, float32), rows in the order of the text hashes listed in its metadata. A
shard appears only by an atomic rename once complete, so a run killed at any
moment leaves either whole shards or none; the next run reads which (text, site)
pairs exist and captures only the rest.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, final

import attrs
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

# Re-exported for code that imports the writer from here; it lives in amygdala._io.
from amygdala._io import write_atomic as write_atomic
from amygdala._types import Pooling, Site
from amygdala.backends._registry import Backend
from amygdala.errors import NonFiniteError, StoreError, UnknownSiteError

__all__ = ["ActivationStore", "Activations", "text_hash"]

_FORMAT = 1
_NORM_PREFIX = "token_norm."
_SAFETENSORS_DTYPE = {"float32": "F32", "float16": "F16"}
StoreDtype = Literal["float32", "float16"]


def text_hash(text: str) -> str:
    """Return the content address of a text (sha256 of its UTF-8 bytes, 32 hex digits)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@attrs.frozen(kw_only=True)
class Activations:
    """Pooled activations for labelled texts: ``data[site]`` is ``[n_texts, width]``.

    Attributes:
        ids: one label per row (usually corpus-relative file paths).
        data: float32 numpy arrays per site.
    """

    ids: tuple[str, ...]
    data: dict[Site, np.ndarray]

    def __attrs_post_init__(self) -> None:
        for site, array in self.data.items():
            if array.shape[0] != len(self.ids):
                raise StoreError(f"{site}: {array.shape[0]} rows for {len(self.ids)} ids")

    def torch(self, site: Site) -> torch.Tensor:
        """Return one site's activations as a float32 torch tensor."""
        return torch.from_numpy(self[site])

    def __getitem__(self, site: Site) -> np.ndarray:
        if site not in self.data:
            raise UnknownSiteError(f"no activations for {site}; have {sorted(map(str, self.data))}")
        return self.data[site]

    def rows(self, ids: Iterable[str]) -> list[int]:
        """Row indices of ``ids``."""
        index = {id_: i for i, id_ in enumerate(self.ids)}
        return [index[i] for i in ids]


@final
class ActivationStore:
    """Pooled activations keyed by (model fingerprint, text hash, site, pooling).

    >>> store = ActivationStore(tmp_path, fingerprint="abc", pooling=Pooling())  # doctest: +SKIP
    >>> store.ensure(backend, texts, sites)  # doctest: +SKIP
    >>> acts = store.load(texts, sites)  # doctest: +SKIP
    """

    def __init__(
        self, root: Path | str, *, fingerprint: str, pooling: Pooling,
        dtype: StoreDtype = "float32",
    ) -> None:
        if dtype not in _SAFETENSORS_DTYPE:
            raise StoreError(f"store dtype must be float32 or float16, got {dtype!r}")
        self.pooling = pooling
        self.fingerprint = fingerprint
        self.dtype: StoreDtype = dtype
        leaf = pooling.key if dtype == "float32" else f"{pooling.key}-{dtype}"
        self.path = Path(root) / fingerprint / leaf
        self.path.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "fingerprint": fingerprint, "pooling": pooling.key,
                "dtype": dtype}
        meta_path = self.path / "store.json"
        if meta_path.exists():
            found = json.loads(meta_path.read_text())
            found.setdefault("dtype", "float32")  # stores written before dtype was recorded
            if {k: found.get(k) for k in meta} != meta:
                raise StoreError(
                    f"{meta_path} describes {found}, expected {meta}; this directory belongs to "
                    "another model or format: pass a different --store directory"
                )
        else:
            write_atomic(meta_path, (json.dumps(meta, indent=2) + "\n").encode())
        self._index: dict[tuple[str, Site], tuple[Path, int]] = {}
        self._norms: dict[tuple[str, Site], tuple[Path, int]] = {}
        self._seen: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Read the headers of shards written since the last look (by this or another run).

        Shards whose activations are not in this store's dtype (float16 shards that an
        older amygdala wrote next to float32 ones) are ignored: their texts are captured
        again rather than mixed.
        """
        want = _SAFETENSORS_DTYPE[self.dtype]
        for shard in sorted(self.path.glob("shard-*.safetensors")):
            if shard.name in self._seen:
                continue
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    meta = handle.metadata() or {}
                    hashes = json.loads(meta["texts"])
                    keys = list(handle.keys())
                    sites = [Site.parse(k) for k in keys if not k.startswith(_NORM_PREFIX)]
                    norm_sites = [Site.parse(k[len(_NORM_PREFIX):]) for k in keys
                                  if k.startswith(_NORM_PREFIX)]
                    foreign = any(handle.get_slice(str(s)).get_dtype() != want for s in sites)
            except Exception as exc:  # a foreign or damaged file must not poison the store
                raise StoreError(
                    f"cannot read shard {shard}: {exc}; delete that file and rerun (its texts "
                    "will be captured again)"
                ) from exc
            self._seen.add(shard.name)
            if foreign:
                continue
            for index, found in ((self._index, sites), (self._norms, norm_sites)):
                for site in found:
                    for row, digest in enumerate(hashes):
                        index[(digest, site)] = (shard, row)

    def has(self, text: str, site: Site) -> bool:
        """Whether the store holds ``text`` at ``site``."""
        return (text_hash(text), site) in self._index

    def missing(self, texts: Sequence[str], sites: Sequence[Site]) -> list[int]:
        """Indices of texts lacking at least one of ``sites``."""
        return [i for i, t in enumerate(texts)
                if any((text_hash(t), s) not in self._index for s in sites)]

    def ensure(
        self, backend: Backend, texts: Sequence[str], sites: Sequence[Site], *,
        batch_size: int = 16, progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Capture whatever is missing, one shard per batch; return texts captured.

        Batches are sorted by token length and each text is tokenised once. Each
        shard also holds every text's median token norm per site (`token_norms`), so
        a warm store needs no forward pass for the typical residual norm. Peak memory
        is one batch's activations, whatever the corpus size.
        """
        todo = self.missing(texts, sites)
        unique: dict[str, str] = {}
        for i in todo:
            unique.setdefault(text_hash(texts[i]), texts[i])
        pending = list(unique.values())
        done = 0
        # The backend tokenises each text once and forms length-sorted batches.
        for batch in backend.capture_batches(pending, sites, self.pooling,
                                             batch_size=batch_size):
            chunk = [pending[i] for i in batch.indices]
            self._write_shard(chunk, batch.pooled, batch.token_norm)
            done += len(chunk)
            if progress is not None:
                progress(done, len(pending))
        return done

    def _write_shard(self, texts: Sequence[str], captured: dict[Site, torch.Tensor],
                     token_norm: dict[Site, torch.Tensor] | None = None) -> None:
        torch_dtype = torch.float16 if self.dtype == "float16" else torch.float32
        tensors = {}
        for site, values in captured.items():
            if not torch.isfinite(values).all():
                raise NonFiniteError(
                    f"captured activations at {site} contain NaN/inf; the model produced "
                    "non-finite values (check its dtype: float16 on CPU often overflows)"
                )
            tensors[str(site)] = values.to(torch_dtype).contiguous()
        for site, norms in (token_norm or {}).items():
            tensors[f"{_NORM_PREFIX}{site}"] = norms.to(torch.float32).contiguous()
        hashes = [text_hash(t) for t in texts]
        shard = self.path / f"shard-{uuid.uuid4().hex}.safetensors"
        # One batch is a few MB: serialise in memory, then the one atomic writer.
        write_atomic(shard, save(tensors, metadata={"texts": json.dumps(hashes),
                                                    "format": str(_FORMAT)}))
        self._seen.add(shard.name)
        for index, sites in ((self._index, captured), (self._norms, token_norm or {})):
            for site in sites:
                for row, digest in enumerate(hashes):
                    index[(digest, site)] = (shard, row)

    def token_norms(self, texts: Sequence[str], sites: Sequence[Site]) -> np.ndarray:
        """``[texts, sites]`` median token norm of each text (NaN where not stored).

        The median runs over the tokens the store's pooling averages (positions from
        ``pooling.skip`` on); the capture records it next to the activations.
        """
        out = np.full((len(texts), len(sites)), np.nan, dtype=np.float32)
        by_shard: dict[Path, list[tuple[int, int, int]]] = {}
        for i, text in enumerate(texts):
            digest = text_hash(text)
            for j, site in enumerate(sites):
                where = self._norms.get((digest, site))
                if where is not None:
                    by_shard.setdefault(where[0], []).append((i, j, where[1]))
        for shard, wanted in by_shard.items():
            with safe_open(str(shard), framework="pt") as handle:
                blocks: dict[int, np.ndarray] = {}
                for i, j, row in wanted:
                    if j not in blocks:
                        name = f"{_NORM_PREFIX}{sites[j]}"
                        blocks[j] = handle.get_tensor(name).float().numpy()
                    out[i, j] = blocks[j][row]
        return out

    def put_token_norms(self, texts: Sequence[str], norms: dict[Site, torch.Tensor]) -> None:
        """Store median token norms (``{site: [texts]}``) without activations."""
        self._write_shard(texts, {}, norms)

    def load(self, texts: Sequence[str], sites: Sequence[Site],
             ids: Sequence[str] | None = None) -> Activations:
        """Load activations for ``texts`` at ``sites`` (all must be present).

        Args:
            texts: the texts, in the order of the rows wanted.
            sites: the sites to load.
            ids: row labels (default: the text hashes).

        Raises:
            StoreError: a (text, site) pair is missing; run `ensure` first.
        """
        hashes = [text_hash(t) for t in texts]
        data: dict[Site, np.ndarray] = {}
        by_shard: dict[Path, list[tuple[int, int, Site]]] = {}
        for site in sites:
            for i, digest in enumerate(hashes):
                where = self._index.get((digest, site))
                if where is None:
                    raise StoreError(
                        f"text {texts[i][:40]!r} has no activations at {site} in {self.path}; "
                        "call ActivationStore.ensure (or rerun `amygdala train`) first"
                    )
                by_shard.setdefault(where[0], []).append((i, where[1], site))
        widths: dict[Site, int] = {}
        for shard, wanted in by_shard.items():
            with safe_open(str(shard), framework="pt") as handle:
                for site in {w[2] for w in wanted}:
                    block = handle.get_tensor(str(site)).float().numpy()
                    if site not in data:
                        widths[site] = block.shape[1]
                        data[site] = np.empty((len(texts), block.shape[1]), dtype=np.float32)
                    for i, row, s in wanted:
                        if s == site:
                            data[site][i] = block[row]
        return Activations(ids=tuple(ids) if ids is not None else tuple(hashes), data=data)

    def size_bytes(self) -> int:
        """Bytes on disk of all shards."""
        return sum(p.stat().st_size for p in self.path.glob("shard-*.safetensors"))

    def __len__(self) -> int:
        return len({digest for digest, _ in self._index})
