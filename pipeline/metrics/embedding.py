"""2-D t-SNE of image embeddings and the single-colour grouping of multi-label studies used to plot it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.metrics.classification import ArrayLike, finite_scores, positives

BACKGROUND_LABELS = ("No Finding",)
NONE_GROUP = "No Finding / none"


def tsne_perplexity(n: int, perplexity: float) -> float:
    """Perplexity clamped to (N − 1) / 3, where the 3·perplexity nearest neighbours still exist."""
    return min(perplexity, (n - 1) / 3)


def tsne_2d(
    features: ArrayLike,
    seed: int = 0,
    perplexity: float = 30.0,
    max_iter: int = 1000,
    threads: int | None = 1,
) -> np.ndarray:
    """t-SNE embedding [N, 2] (sklearn Barnes–Hut, Euclidean, PCA init) that is deterministic given `seed`.

    Perplexity is clamped for small N (`tsne_perplexity`). The PCA init and Barnes–Hut gradient use no
    randomness, so `seed` only matters for 1-D features, which fall back to a seeded random init because
    PCA needs two dimensions. N < 3 is a ValueError. `threads` caps the OpenMP/BLAS pools:
    one thread keeps the gradient's reductions in a fixed order (bit-identical reruns) and avoids
    oversubscription on busy hosts; None uses every core.
    """
    x = finite_scores(features, 2, "features")
    n, d = x.shape
    if n < 3 or d < 1:
        raise ValueError(f"t-SNE needs N >= 3 and D >= 1, got features {x.shape}")
    if not perplexity > 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    # Imported here: sklearn.manifold costs about a second and only this function needs it.
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(
        n_components=2,
        perplexity=tsne_perplexity(n, perplexity),
        init="pca" if d >= 2 else "random",
        random_state=seed,
        max_iter=max_iter,
    )
    with threadpool_limits(limits=threads):
        return tsne.fit_transform(x).astype(np.float64)


def label_groups(
    labels: ArrayLike, names: Sequence[str], background: Sequence[str] = BACKGROUND_LABELS
) -> tuple[np.ndarray, list[str]]:
    """One group per study for colouring: its first positive label in `names` order.

    Labels in `background` are skipped, so a study with no positive pathology falls into the last group,
    `NONE_GROUP`. Returns (group index [N], group names); positive means == 1.
    """
    pos = positives(labels, 2, "labels")
    names = list(names)
    if pos.shape[1] != len(names):
        raise ValueError(f"labels have {pos.shape[1]} columns but {len(names)} names were given")
    keep = [c for c, name in enumerate(names) if name not in background]
    groups = [names[c] for c in keep] + [NONE_GROUP]
    kept = np.c_[pos[:, keep], np.ones(len(pos), dtype=bool)]
    index = np.argmax(kept, axis=1)
    return index.astype(np.int64), groups
