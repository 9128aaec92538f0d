"""Prediction-based (black-box) attribution methods: Occlusion, RISE, Sobol and HSIC. FORGrad (arXiv
2307.09591) never filters them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import Score, _check_positive_int, _groups, copy_scores, model_scores, Attribution


class Occlusion(Attribution):
    """Sliding-window occlusion (Zeiler & Fergus 2014), as Captum's ``Occlusion``: every window of
    ``window x window`` pixels (all channels) at ``stride`` is set to ``baseline``; a pixel's attribution is
    the mean, over the windows covering it, of ``y(x) - y(x_occluded)`` (0 where no window covers it).

    Defaults: ``window = ceil(min(H, W) / 8)`` (4 px at 28, 28 px at 224) and ``stride = window`` (Xplique's
    default stride equals the patch size; Xplique's 3-pixel patch would cost 5,600 passes at 224).

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    window : int or None
        Window side in pixels (default ``ceil(min(H, W) / 8)``).
    stride : int or None
        Step between windows (default ``window``).
    baseline : float
        The occluded pixels' value (0).

    References
    ----------
    .. [1] M. D. Zeiler, R. Fergus, "Visualizing and understanding convolutional networks", ECCV 2014,
       arXiv 1311.2901.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> x = torch.rand(1, 1, 4, 4)
    >>> res = Occlusion(net, window=1, score="logit").attribute(x, target=0)
    >>> torch.allclose(res.maps.flatten(), x.flatten() * net[1].weight[0], atol=1e-6)  # linear: y(x) - y(x - pixel)
    True
    """

    kind = "prediction"
    name = "occlusion"

    def __init__(self, model: nn.Module, *, window: int | None = None, stride: int | None = None,
                 baseline: float = 0.0, **kw: Any) -> None:
        super().__init__(model, **kw)
        self.window = None if window is None else _check_positive_int(window, "window")
        self.stride = None if stride is None else _check_positive_int(stride, "stride")
        self.baseline = float(baseline)

    def windows(self, h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
        """Window indicator maps ``(n_windows, h, w)`` in Captum's order (row-major over offsets)."""
        k = self.window or math.ceil(min(h, w) / 8)
        s = self.stride or k
        if k > min(h, w):
            raise ValueError(f"window {k} is larger than the image {h}x{w}")
        ys = torch.arange(0, h - k + 1, s, device=device)
        xs = torch.arange(0, w - k + 1, s, device=device)
        rows = (torch.arange(h, device=device)[None, :] - ys[:, None])
        cols = (torch.arange(w, device=device)[None, :] - xs[:, None])
        in_r = (rows >= 0) & (rows < k)
        in_c = (cols >= 0) & (cols < k)
        return (in_r[:, None, :, None] & in_c[None, :, None, :]).flatten(0, 1).float()

    def _attribute(self, x, t, idx):
        n, c, h, w = x.shape
        masks = self.windows(h, w, x.device).to(x.dtype)
        with torch.no_grad():
            base = model_scores(self.model(x), t, self.score)
            diffs = []
            for grp in _groups(masks.shape[0], n, self.internal_batch_size):
                m = masks[grp.start:grp.stop][None, :, None]
                s = copy_scores(self.model, x[:, None] * (1 - m) + self.baseline * m, t, self.score)
                diffs.append(base[:, None] - s)
            d = torch.cat(diffs, 1)
        counts = masks.sum(0)
        attr = (d @ masks.flatten(1)).view(n, 1, h, w)
        return torch.where(counts > 0, attr / counts.clamp(min=1), torch.zeros_like(attr))


class RISE(Attribution):
    """RISE (Petsiuk et al. 2018, Eq. 6): ``S = 1/(N p) sum_m y(x * M_m) M_m`` over ``n_masks`` random masks:
    a ``grid x grid`` binary grid (cells kept with probability ``p``), upsampled bilinearly to
    ``(grid + 1) * cell`` and cropped at a random shift. Paper defaults: 4,000 masks, grid 7, p = 0.5, the
    softmax score. One mask set (seeded by ``seed``) serves every image, as in the paper, so numbers do
    not depend on batching.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    n_masks : int >= 1
        Random masks (4,000, the paper's).
    grid : int >= 1
        Cells per side of a mask (7).
    p : float in (0, 1]
        Probability that a cell is kept (0.5).
    seed : int
        Seeds the mask set.
    score : {"softmax", "logit", "log_softmax"}
        What is explained (the target's softmax probability, the paper's).

    References
    ----------
    .. [1] V. Petsiuk, A. Das, K. Saenko, "RISE: randomized input sampling for explanation of black-box
       models", BMVC 2018, arXiv 1806.07421.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> res = RISE(net, n_masks=16, grid=3).attribute(x, target=0)
    >>> tuple(res.maps.shape), bool((res.maps >= 0).all())  # a weighted mean of probabilities
    ((2, 1, 8, 8), True)
    """

    kind = "prediction"
    name = "rise"

    def __init__(self, model: nn.Module, *, n_masks: int = 4000, grid: int = 7, p: float = 0.5, seed: int = 0,
                 score: Score = "softmax", **kw: Any) -> None:
        super().__init__(model, score=score, **kw)
        self.n_masks = _check_positive_int(n_masks, "n_masks")
        self.grid = _check_positive_int(grid, "grid")
        if not 0 < p <= 1:
            raise ValueError(f"p (the keep probability) must lie in (0, 1], got {p}")
        self.p = float(p)
        self.seed = int(seed)

    def masks(self, h: int, w: int, sel: range, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> Tensor:
        """Masks ``sel`` of the seeded set, ``(len(sel), 1, h, w)``; the random grid and shifts of the
        whole set are drawn first, so any slice gives the same masks."""
        g = torch.Generator().manual_seed(self.seed)
        cells = (torch.rand(self.n_masks, 1, self.grid, self.grid, generator=g) < self.p).to(dtype)
        ch, cw = math.ceil(h / self.grid), math.ceil(w / self.grid)
        dy = torch.randint(0, ch, (self.n_masks,), generator=g)
        dx = torch.randint(0, cw, (self.n_masks,), generator=g)
        sub = list(sel)
        up = F.interpolate(cells[sub].to(device), size=((self.grid + 1) * ch, (self.grid + 1) * cw),
                           mode="bilinear", align_corners=False)
        rows = (dy[sub][:, None] + torch.arange(h)[None]).to(device)
        cols = (dx[sub][:, None] + torch.arange(w)[None]).to(device)
        m = torch.arange(len(sub), device=device)
        return up[m[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]

    def _attribute(self, x, t, idx):
        n, c, h, w = x.shape
        out = torch.zeros(n, 1, h, w, device=x.device, dtype=x.dtype)
        with torch.no_grad():
            for grp in _groups(self.n_masks, n, self.internal_batch_size):
                m = self.masks(h, w, grp, x.device, x.dtype)  # (g, 1, h, w)
                s = copy_scores(self.model, x[:, None] * m[None], t, self.score)
                out += torch.einsum("ng,ghw->nhw", s, m[:, 0])[:, None]
        return out / (self.n_masks * self.p)


# --------------------------------------------------------------------------- global sensitivity analysis
# Sobol and HSIC (the black-box family of arXiv 2307.09591 with Occlusion and RISE), read against Xplique's
# ``xplique/attributions/global_sensitivity_analysis/`` (deel-ai/xplique); the estimators are module
# functions so that tests can check them on hand-computed cases.

SOBOL_MAX_GRID = 102
"""``2 * grid^2`` must not exceed the 21,201 dimensions of ``torch.quasirandom.SobolEngine``."""


def sobol_design(grid: int, n_design: int, seed: int = 0) -> Tensor:
    """Xplique's replicated design (``replicated_designs.py``, ``ReplicatedSampler``) as ``(n (D + 2), g, g)``
    float64 cell masks, ``D = g^2``: ``A`` (n rows), ``B`` (n rows), then ``C^1 ... C^D`` (n rows each), where
    ``C^i`` is ``A`` with column ``i`` taken from ``B``. ``[A | B]`` are the ``n`` first points of a
    ``2D``-dimensional scrambled Sobol sequence (``SobolEngine(2D, scramble=True, seed=seed)``; Xplique's
    ``TFSobolSequenceRS`` draws the unscrambled sequence, ``tf.math.sobol_sample``). Cells are row-major."""
    d = grid * grid
    ab = torch.quasirandom.SobolEngine(2 * d, scramble=True, seed=seed).draw(n_design, dtype=torch.float64)
    a, b = ab[:, :d], ab[:, d:]
    swap = torch.eye(d, dtype=torch.float64)[:, None, :]  # (D, 1, D): replication i swaps column i
    c = a[None] * (1 - swap) + b[None] * swap  # (D, n, D)
    return torch.cat([a, b, c.flatten(0, 1)]).view(-1, grid, grid)


def jansen_total_indices(y_a: Tensor, y_c: Tensor) -> Tensor:
    """Jansen's estimator of the total-order Sobol indices (Jansen 1999; Xplique ``sobol_estimators.py``,
    ``JansenEstimator``): ``S_Ti = sum_k (f(A_k) - f(C^i_k))^2 / (2 n Var f(A))``, with the unbiased
    (``n - 1``) variance of the ``n`` outputs on ``A``, floored at 1e-12 as Xplique does.

    ``y_a`` : ``(N, n)`` outputs on design A; ``y_c`` : ``(N, D, n)`` outputs on ``C^1 ... C^D``.
    Returns ``(N, D)``."""
    n = y_a.shape[-1]
    var = (y_a - y_a.mean(-1, keepdim=True)).square().sum(-1) / max(n - 1, 1)
    var = var.clamp_min(1e-12)
    return (y_a[:, None, :] - y_c).square().sum(-1) / (2 * n * var[:, None])


def binary_latin_hypercube(dim: int, n_design: int, seed: int = 0) -> Tensor:
    """``(n_design, dim)`` float64 masks in {0, 1}: a Latin hypercube sample rounded to the nearest integer
    (Xplique ``samplers.py``, ``LatinHypercube(binary=True)``: scipy's ``qmc.LatinHypercube`` then
    ``np.round``). Column ``j`` is ``(perm_j + u_j) / n`` for a random permutation ``perm_j`` of ``0..n-1``
    and uniform jitter ``u_j``; so with an even ``n`` every cell is kept in exactly half of the designs."""
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.rand(dim, n_design, generator=g, dtype=torch.float64).argsort(1)
    u = (perm + torch.rand(dim, n_design, generator=g, dtype=torch.float64)) / n_design
    return u.T.round()


def hsic_binary(masks: Tensor, outputs: Tensor) -> Tensor:
    """HSIC between each mask column and the output, ``tr(K_i H L H) / (n - 1)^2`` (Novello et al. 2022; Gretton
    et al. 2005), with Xplique's ``BinaryEstimator`` kernels (``hsic_estimators.py``, ``kernels.py``):

    * input: ``k(m, m') = 1 + (0.5 - (m - m')^2)`` (1.5 if equal, 0.5 if not: the Dirac kernel plus a
      constant). Centring removes every term that depends on one of ``m, m'`` only, so
      ``H K_i H = 2 m~ m~^T`` with ``m~ = m - mean(m)`` and the estimate is ``2 m~^T L m~ / (n - 1)^2``,
      computed so (no ``n x n`` Gram matrix per cell);
    * output: RBF ``l(y, y') = exp(-(y - y')^2 / (2 w^2))``, ``w`` the median of the ``n`` outputs of the
      image (Xplique: ``tfp.stats.percentile(Y, 50)``, the outputs' median, not that of their distances);
      ``2 w^2`` is floored at the smallest positive float (a zero median, where Xplique divides by 0, gives
      the Dirac kernel on the outputs).

    Xplique's code divides ``tr(K H L H)`` by ``n``; we use the paper's ``(n - 1)^2`` (also in Xplique's docs):
    a constant factor ``n / (n - 1)^2`` apart.

    ``masks`` : ``(n, D)``; ``outputs`` : ``(N, n)``. Returns ``(N, D)``."""
    n = masks.shape[0]
    if n < 2:
        raise ValueError(f"HSIC needs at least 2 designs, got {n}")
    mc = masks - masks.mean(0, keepdim=True)
    width = outputs.quantile(0.5, dim=1)  # linear interpolation, as np.percentile / tfp's 'linear'
    two_w2 = (2 * width.square()).clamp_min(torch.finfo(outputs.dtype).tiny)
    per = max(1, 2 ** 24 // (n * n))  # images per chunk: at most 2^24 Gram entries in memory
    out = []
    for s in range(0, outputs.shape[0], per):
        y = outputs[s:s + per]
        gram = torch.exp(-(y[:, :, None] - y[:, None, :]).square() / two_w2[s:s + per, None, None])
        out.append(2 * (mc * (gram @ mc)).sum(1))
    return torch.cat(out) / (n - 1) ** 2


PERTURBATIONS = ("inpainting",)
"""Perturbations of Sobol / HSIC. Xplique's ``blurring`` and ``amplitude`` are not implemented."""


class _GlobalSensitivity(Attribution):
    """Shared machinery of :class:`Sobol` and :class:`HSIC` (Xplique's ``GSABaseAttributionMethod``).

    * The design is a set of ``grid x grid`` cell masks, drawn once from ``seed`` (``self.design``,
      float64 on the CPU) and shared by every image, so numbers do not depend on batching.
    * Perturbation ``"inpainting"`` (Xplique ``perturbations.py``): ``x * M + (1 - M) * 0``: a cell mask of 1
      keeps the pixels, 0 sets them to 0 (in the model's input units), values between scale them; all
      channels alike.
    * Cell masks are upsampled to the image by nearest neighbour (Xplique ``gsa_attribution_method.py``:
      ``tf.image.resize(masks, (H, W), method="nearest")``, half-pixel centres, i.e. ``"nearest-exact"``), and
      the grid of estimates back to the image bicubically (Xplique: ``cv2.resize(..., INTER_CUBIC)``, i.e.
      ``F.interpolate(..., "bicubic", align_corners=False)``, the same ``a = -0.75`` kernel and half-pixel
      centres; Xplique passes ``(H, W)`` where cv2 expects ``(W, H)``, the same for square images).
    * Xplique explains the raw output ``f(x)[y]`` (the logit); as :class:`RISE`, the default here is the
      target's ``softmax`` probability (``score="logit"`` gives Xplique's).
    """

    kind = "prediction"

    def __init__(self, model: nn.Module, *, grid: int, n_design: int, perturbation: str, seed: int,
                 score: Score, **kw: Any) -> None:
        super().__init__(model, score=score, **kw)
        self.grid = _check_positive_int(grid, "grid")
        self.n_design = _check_positive_int(n_design, "n_design")
        if self.n_design < 2:
            raise ValueError(f"n_design must be at least 2 (a variance needs two designs), got {n_design!r}")
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"perturbation must be one of {', '.join(map(repr, PERTURBATIONS))} (Xplique's default; "
                             f"its 'blurring' and 'amplitude' are not implemented), got {perturbation!r}")
        self.perturbation = perturbation
        self.seed = int(seed)

    def _evaluated(self) -> Tensor:  # pragma: no cover
        """The cell masks the model is evaluated on, ``(M, g, g)`` float64."""
        raise NotImplementedError

    def _estimate(self, outputs: Tensor) -> Tensor:  # pragma: no cover
        """``(N, M)`` outputs on :meth:`_evaluated` -> ``(N, g^2)`` per-cell estimates."""
        raise NotImplementedError

    def _outputs(self, x: Tensor, t: Tensor) -> Tensor:
        """Scores of the inpainted images, ``(N, M)``, ``internal_batch_size`` model inputs per pass."""
        n, c, h, w = x.shape
        g = self.grid
        if g > min(h, w):
            raise ValueError(f"grid {g} is larger than the image {h}x{w}")
        cells = self._evaluated()
        out = []
        with torch.no_grad():
            for grp in _groups(cells.shape[0], n, self.internal_batch_size):
                lo = cells[grp.start:grp.stop, None].to(device=x.device, dtype=x.dtype)
                m = F.interpolate(lo, size=(h, w), mode="nearest-exact")  # (G, 1, h, w)
                # inpainting with 0: x * M + (1 - M) * 0
                out.append(copy_scores(self.model, x[:, None] * m[None], t, self.score))
        return torch.cat(out, 1)

    def _cells(self, x: Tensor, t: Tensor) -> Tensor:
        return self._estimate(self._outputs(x, t)).view(x.shape[0], self.grid, self.grid)

    def cell_scores(self, inputs: Tensor, target: Tensor | int | Sequence[int] | None = None) -> Tensor:
        """The per-cell estimates, ``(N, grid, grid)``, before the bicubic upsampling of
        :meth:`attribute` (row ``r``, column ``c`` is the cell over image rows ``r H/g .. (r+1) H/g``)."""
        return self._batched(lambda x, t, idx: self._cells(x, t), inputs, target, None)

    def _attribute(self, x, t, idx):
        return F.interpolate(self._cells(x, t)[:, None], size=x.shape[-2:], mode="bicubic", align_corners=False)


class Sobol(_GlobalSensitivity):
    """Sobol attribution method (Fel et al. 2021, "Look at the Variance!", NeurIPS), as Xplique's
    ``SobolAttributionMethod`` (``sobol_attribution_method.py``): for cell masks ``M_i ~ U[0, 1]``
    independent, the total-order Sobol index of each cell,
    ``S_Ti = E_{M~i}[Var_{M_i}(f(x * M) | M~i)] / Var(f(x * M))``,
    estimated by Jansen's estimator (:func:`jansen_total_indices`, Xplique's default ``JansenEstimator``)
    on the replicated design of :func:`sobol_design` (Xplique's ``TFSobolSequenceRS``).

    Defaults are Xplique's constructor's: ``grid=8`` (its ``grid_size``), ``nb_design=32`` (a power of two, asserted there
    and here). Deviations: the Sobol sequence is scrambled and seeded by ``seed`` (Xplique's is the
    unscrambled ``tf.math.sobol_sample``, one fixed design); the ``n_design`` outputs on design ``B``, which
    Jansen's estimator does not use, are not computed: ``n_design * (grid^2 + 1)`` forward passes per image
    (2,080 at the defaults; Xplique runs ``n_design * (grid^2 + 2)`` = 2,112), the same numbers.
    Perturbation, upsampling and score: see :class:`_GlobalSensitivity` (inpainting with 0, nearest up, bicubic
    back, target softmax by default).

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    grid : int >= 1
        Cells per side (8, Xplique's ``grid_size``).
    n_design : int, a power of two
        Designs (32, Xplique's ``nb_design``).
    perturbation : {"inpainting"}
        How a mask perturbs the image.
    seed : int
        Seeds the (scrambled) Sobol sequence.
    score : {"softmax", "logit", "log_softmax"}
        What is explained (softmax by default).

    References
    ----------
    .. [1] T. Fel, R. Cadene, M. Chalvidal, M. Cord, D. Vigouroux, T. Serre, "Look at the variance!
       Efficient black-box explanations with Sobol-based sensitivity analysis", NeurIPS 2021,
       arXiv 2111.04138.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> tuple(Sobol(net, grid=2, n_design=4).attribute(x, target=0).maps.shape)
    (2, 1, 8, 8)
    """

    name = "sobol"

    def __init__(self, model: nn.Module, *, grid: int = 8, n_design: int = 32, perturbation: str = "inpainting",
                 seed: int = 0, score: Score = "softmax", **kw: Any) -> None:
        super().__init__(model, grid=grid, n_design=n_design, perturbation=perturbation, seed=seed,
                         score=score, **kw)
        if self.n_design & (self.n_design - 1):
            raise ValueError(f"n_design must be a power of two (a Sobol sequence's balanced sizes; Xplique asserts "
                             f"it), got {n_design!r}")
        if self.grid > SOBOL_MAX_GRID:
            raise ValueError(f"grid must be at most {SOBOL_MAX_GRID} (2 grid^2 Sobol dimensions, "
                             f"SobolEngine's limit 21201), got {grid!r}")
        # Xplique's mask layout [A; B; C^1 .. C^D], (n_design (D + 2), g, g)
        self.design = sobol_design(self.grid, self.n_design, self.seed)

    def _evaluated(self) -> Tensor:
        n = self.n_design
        return torch.cat([self.design[:n], self.design[2 * n:]])  # A and the C^i (B's outputs are unused)

    def _estimate(self, outputs: Tensor) -> Tensor:
        n, d = self.n_design, self.grid ** 2
        return jansen_total_indices(outputs[:, :n], outputs[:, n:].view(-1, d, n))


class HSIC(_GlobalSensitivity):
    """HSIC attribution method (Novello, Fel & Vigouroux 2022, "Making Sense of Dependence", NeurIPS), as
    Xplique's ``HsicAttributionMethod`` (``hsic_attribution_method.py``): the Hilbert-Schmidt independence
    criterion between each cell's binary mask ``M_i`` and the output, ``HSIC(M_i, f(x * M)) ~
    tr(K_i H L H) / (n - 1)^2`` (``K_i``, ``L`` the Gram matrices of the input and output kernels over the
    ``n`` designs, ``H = I - 1 1^T / n``), with Xplique's ``BinaryEstimator`` kernels (:func:`hsic_binary`:
    Dirac kernel on the mask, RBF on the output with the outputs' median as bandwidth).

    Design: :func:`binary_latin_hypercube` (the paper's sampler, Xplique's ``LatinHypercube(binary=True)``),
    seeded by ``seed``. Defaults ``grid=7`` (Xplique's ``grid_size``), ``n_design=1500`` with the binary Latin hypercube: the
    paper's setting and the version Xplique's documentation recommends (``docs/api/attributions/methods/
    hsic.md``: ``HsicAttributionMethod(model, grid_size=7, nb_design=1500, sampler=LatinHypercube(binary=True))``);
    Xplique's bare constructor defaults are ``grid_size=8``, ``nb_design=500`` and a rounded unscrambled Sobol
    sequence, ``TFSobolSequence(binary=True)`` (because LHS requires scipy 1.7).
    Normalisation ``(n - 1)^2`` as the paper (Xplique's code divides by ``n``: its values are ours times
    ``(n - 1)^2 / n``). ``n_design`` forward passes per image (1,500 at the defaults). Perturbation,
    upsampling and score: see :class:`_GlobalSensitivity`.

    Parameters
    ----------
    model : nn.Module or callable
        Takes ``(N, C, H, W)`` images, returns ``(N, classes)``; frozen during :meth:`attribute`.
    **kw
        ``batch_size``, ``internal_batch_size``, ``score``: see :class:`Attribution`.
    grid : int >= 1
        Cells per side (7).
    n_design : int >= 2
        Designs (1,500).
    perturbation : {"inpainting"}
        How a mask perturbs the image.
    seed : int
        Seeds the Latin hypercube.
    score : {"softmax", "logit", "log_softmax"}
        What is explained (softmax by default).

    References
    ----------
    .. [1] P. Novello, T. Fel, D. Vigouroux, "Making sense of dependence: efficient black-box explanations
       using dependence measure", NeurIPS 2022, arXiv 2206.06219.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.LazyLinear(10))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> tuple(HSIC(net, grid=2, n_design=8).attribute(x, target=0).maps.shape)
    (2, 1, 8, 8)
    """

    name = "hsic"

    def __init__(self, model: nn.Module, *, grid: int = 7, n_design: int = 1500, perturbation: str = "inpainting",
                 seed: int = 0, score: Score = "softmax", **kw: Any) -> None:
        super().__init__(model, grid=grid, n_design=n_design, perturbation=perturbation, seed=seed,
                         score=score, **kw)
        # the binary cell masks, (n_design, g, g)
        self.design = binary_latin_hypercube(self.grid ** 2, self.n_design, self.seed).view(
            -1, self.grid, self.grid)

    def _evaluated(self) -> Tensor:
        return self.design

    def _estimate(self, outputs: Tensor) -> Tensor:
        return hsic_binary(self.design.flatten(1).to(device=outputs.device, dtype=outputs.dtype), outputs)
