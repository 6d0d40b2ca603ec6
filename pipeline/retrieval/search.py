"""Top-k search of a stored gallery, block by block, with the method's own score.

`GalleryScorer` prepares a gallery once for the method's score — unit vectors for cosine (CLIP-style
methods), normalised μ with squared norms and Σσ² for PCME++'s CSD, μ and σ² for MedProbCLIP's ELK — so a
query does not redo per-gallery work (normalising 200k × 512 vectors costs more than the product itself).
Each formula is the one of `pipeline.losses` (`cosine_similarity`, `csd_distance`, `elk_distance`; a test
checks the scores agree); any other score falls back to ``loss.similarity`` on gallery blocks. Scoring
in row blocks bounds memory to O(Q·block) whatever the gallery size, and the k best survive each block.
Calibration, evaluation and `Retriever` all rank through here, so a threshold is chosen on exactly the
scores a user gets.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.losses.base import ContrastiveLoss, embedding
from pipeline.losses.distances import csd_distance, elk_distance
from pipeline.metrics.ranking import num_rows, stable_topk, take_rows

Embeddings = Mapping[str, Tensor]
GALLERY_BLOCK = 8192  # gallery rows scored at once (cosine / CSD: one matrix product each)
ELK_ELEMENTS = 1 << 22  # Q × rows × D elements of one ELK temporary (16 MiB fp32; fewer, larger ops)
QUERY_BLOCK = 64
TIE_RTOL = 1e-5  # relative: fp32 scores of one pair through different block shapes agree far closer


class GalleryScorer:
    """A gallery prepared for one method's retrieval score (higher = closer)."""

    def __init__(self, loss: ContrastiveLoss, gallery: Embeddings) -> None:
        self.loss, self.n = loss, num_rows(gallery, "gallery")
        distance = getattr(type(loss), "distance_fn", None)
        with torch.no_grad():
            if not loss.probabilistic and type(loss).similarity is ContrastiveLoss.similarity:
                self.kind = "cosine"
                self.unit = F.normalize(embedding(gallery).float(), dim=-1)
            elif distance is csd_distance:
                self.kind = "csd"
                mu, logvar = loss.prepare(gallery)
                self.mu, self.sq = mu.float(), mu.float().pow(2).sum(-1)
                self.var_sum = logvar.float().exp().sum(-1)
            elif distance is elk_distance:
                self.kind = "elk"
                mu, logvar = loss.prepare(gallery)
                self.mu, self.var = mu.float().contiguous(), logvar.float().exp().contiguous()
            else:
                self.kind, self.gallery = "generic", gallery

    @torch.no_grad()
    def scores(self, query: Embeddings, start: int = 0, stop: int | None = None) -> Tensor:
        """Scores [Q, stop − start] of the queries against gallery rows start:stop."""
        rows = slice(start, self.n if stop is None else stop)
        if self.kind == "cosine":
            return F.normalize(embedding(query).float(), dim=-1) @ self.unit[rows].T
        if self.kind == "csd":
            mu, logvar = self.loss.prepare(query)
            mu = mu.float()
            sq = mu.pow(2).sum(-1, keepdim=True) + self.sq[rows] - 2.0 * (mu @ self.mu[rows].T)
            return -(sq.clamp_min(0.0) + logvar.float().exp().sum(-1, keepdim=True) + self.var_sum[rows])
        if self.kind == "elk":
            return -self._elk(query, rows)
        return self.loss.similarity(query, take_rows(self.gallery, rows)).float()

    def _elk(self, query: Embeddings, rows: slice) -> Tensor:
        """½ Σ_d [(μq − μg)² / (σq² + σg²) + log(σq² + σg²)], in cache-sized row chunks, in place."""
        mu_q, logvar_q = self.loss.prepare(query)
        mu_q, var_q = mu_q.float(), logvar_q.float().exp()
        mu_g, var_g = self.mu[rows], self.var[rows]
        n_q, n_g, dim = mu_q.shape[0], mu_g.shape[0], mu_g.shape[1]
        out = mu_q.new_empty(n_q, n_g)
        step = max(1, ELK_ELEMENTS // max(1, n_q * dim))
        for s in range(0, n_g, step):
            total = var_g[None, s : s + step] + var_q[:, None]
            diff = (mu_g[None, s : s + step] - mu_q[:, None]).square_().div_(total)
            out[:, s : s + step] = diff.add_(total.log_()).sum(-1).mul_(0.5)
        return out


def merge_topk(score: Tensor | None, index: Tensor | None, new_score: Tensor, new_index: Tensor, k: int):
    """Top k of two candidate lists; the first's indices are all lower, so a stable sort keeps lower
    indices first among equal scores (the order `stable_topk` gives)."""
    if score is None or index is None:
        return new_score, new_index
    score, index = torch.cat([score, new_score], 1), torch.cat([index, new_index], 1)
    order = score.argsort(dim=1, descending=True, stable=True)[:, :k]
    return score.gather(1, order), index.gather(1, order)


@torch.no_grad()
def topk_search(
    scorer: GalleryScorer, queries: Embeddings, k: int, block: int = GALLERY_BLOCK
) -> tuple[Tensor, Tensor]:
    """(scores, gallery indices) [Q, min(k, G)] by descending score, lower index first on ties."""
    k = min(k, scorer.n)
    top_score = top_index = None
    for start in range(0, scorer.n, block):
        scores = scorer.scores(queries, start, start + block)
        s, i = stable_topk(scores, min(k, scores.shape[1]))
        top_score, top_index = merge_topk(top_score, top_index, s, i + start, k)
    assert top_score is not None and top_index is not None
    return top_score, top_index


@torch.no_grad()
def pair_scores(
    loss: ContrastiveLoss, queries: Embeddings, partners: Embeddings, block: int = QUERY_BLOCK
) -> Tensor:
    """score(query i, partner i) [Q] by the same formulas, from small diagonal blocks."""
    n = num_rows(queries, "queries")
    parts = []
    for s in range(0, n, block):
        rows = slice(s, s + block)
        parts.append(
            GalleryScorer(loss, take_rows(partners, rows)).scores(take_rows(queries, rows)).diagonal()
        )
    return torch.cat(parts)


@torch.no_grad()
def ranks_against_gallery(
    scorer: GalleryScorer,
    queries: Embeddings,
    own: Embeddings,
    exclude: Tensor,
    k: int = 2,
    block: int = GALLERY_BLOCK,
) -> tuple[Tensor, Tensor]:
    """Query i's own item (``own`` row i) is added to the gallery and any copy of it (gallery row
    ``exclude[i]``, −1 for none) removed: returns its 0-based rank among the other gallery items (ties,
    within `TIE_RTOL`, counted against it, as `pipeline.metrics.ranking`) and the top-k scores [Q, k] of
    that gallery.

    This is the protocol of calibration and evaluation: a validation study's report is in the default
    gallery (its copy is replaced by itself), a test study's is not (added), so both face the same
    distractors up to one item.
    """
    own_score = pair_scores(scorer.loss, queries, own)
    # The own item is scored through a different block shape than the gallery (and the BLAS kernel can
    # differ by device), so an exact duplicate of it may land an ulp above or below. Counting "ties against"
    # within a relative tolerance makes the rank independent of blocks and devices.
    tie = own_score - TIE_RTOL * own_score.abs().clamp_min(1.0)
    count = torch.zeros(own_score.shape[0], dtype=torch.long)
    rows = torch.arange(own_score.shape[0])
    top = own_score[:, None]
    for start in range(0, scorer.n, block):
        scores = scorer.scores(queries, start, start + block)
        local = exclude - start
        inside = (local >= 0) & (local < scores.shape[1])
        scores[rows[inside], local[inside]] = -torch.inf
        count += (scores >= tie[:, None]).sum(1)
        s, _ = stable_topk(scores, min(k, scores.shape[1]))
        top = torch.cat([top, s], 1).sort(dim=1, descending=True).values[:, :k]
    return count, top
