"""Reconstruction uncertainty as the official release defines it (``step_decoder.py`` and
``step_capability_y.py`` of haotianSustc/deepinfo, reported by ``step_result.py``).

* A decoder ``g_l`` per layer (:class:`FeatureDecoder`, the release's residual decoder shape: 6 residual
  blocks, ``log2(input size / feature size)`` nearest-upsampling stages) maps the clean post-ReLU feature
  back to the ``[0, 1]`` image (MSE, Adam lr 0.01, batch 16: the release's settings), trained until the
  held-out loss stops improving (:func:`train_decoder`; the release trains 5 epochs).
* Its own sigma per (image, layer), optimised like the pixel-wise one (SGD lr 1e-4 on sigma, 100 steps x
  8 samples, sigma_f^2 at sigma0 = 0.01) on ``MSE(h(x'), h(x)) / sigma_f^2 - lambda_t * mean log(2 pi e r^2 + 1e-6)``
  with ``r = g_l(h(x')) - x`` and ``lambda_t = 1e4 * e^{t / T}`` rising (``capability_lambda_init_y``,
  ``capability_lambda_change_ratio``).
* The uncertainty is ``mean log(r^2 + 1e-6)`` at the step whose error is closest to 1.5
  (``step_result.py``), reported beside the same quantity of the decoder on clean features (its own
  error), so the reader sees which dominates.

Deviations (named): the uncertainty averages over all noise samples and colour channels (the release reads
sample 0, channel 0 of the saved residual); the decoder is trained on post-ReLU features, as it is used
(the release trains on the raw feature and validates on the post-ReLU one); it has no output nonlinearity
(the release's decoder file is missing); training stops at a plateau of the held-out loss (the release:
5 epochs); a pair whose loss turns non-finite stops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_images
from .._method import MethodResult, method_call
from .._torch import fork_rng, frozen, model_device
from ..probe import resolve_layers
from ._core import PairForward, features, grid_shape, input_std

LOG_2PI_E = math.log(2.0 * math.pi * math.e)


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class FeatureDecoder(nn.Module):
    """The release's residual decoder shape: a 3x3 stem to ``width`` channels, ``blocks`` (6) residual
    blocks at the feature's resolution, ``round(log2(image size / feature size))`` stages of nearest
    x2 upsampling + 3x3 conv + BN + ReLU, a 3x3 head to the image's channels (resized to the image if the
    stages do not land on it). A vector feature is treated as a ``C x 1 x 1`` map."""

    def __init__(self, feature_shape: Sequence[int], image_shape: Sequence[int], *, width: int = 32,
                 blocks: int = 6) -> None:
        super().__init__()
        self.config = {"feature_shape": [int(v) for v in feature_shape],
                       "image_shape": [int(v) for v in image_shape], "width": int(width), "blocks": int(blocks)}
        C, H, W = (int(v) for v in image_shape)
        fs = [int(v) for v in feature_shape]
        cin, h0 = fs[0], (fs[1] if len(fs) == 3 else 1)
        self.image_hw = (H, W)
        ups = max(0, round(math.log2(H / h0)))
        layers: list[nn.Module] = [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [_ResBlock(width) for _ in range(blocks)]
        for _ in range(ups):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, C, 3, padding=1)

    def forward(self, feature: Tensor) -> Tensor:
        if feature.ndim == 2:
            feature = feature[:, :, None, None]
        z = self.body(feature)
        if tuple(z.shape[-2:]) != self.image_hw:
            z = F.interpolate(z, size=self.image_hw, mode="bilinear", align_corners=False)
        return self.head(z)


def _post_features(model: nn.Module, x: Tensor, layer: str, relu: bool, batch: int = 256) -> Tensor:
    with torch.no_grad():
        out = [features(model, x[i:i + batch], [layer])[layer] for i in range(0, x.shape[0], batch)]
    f = torch.cat(out)
    return F.relu(f) if relu else f


def train_decoder(model: nn.Module, layer: str, images: Tensor, held_out: Tensor, *, relu: bool = True,
                  width: int = 32, blocks: int = 6, lr: float = 0.01, batch_size: int = 16, max_epochs: int = 30,
                  patience: int = 2, min_delta: float = 0.01, seed: int = 0,
                  device: str | torch.device | None = None) -> tuple[FeatureDecoder, dict[str, Any]]:
    """Train a :class:`FeatureDecoder` from ``layer``'s clean (post-ReLU) feature to ``images`` (MSE, Adam
    lr 0.01, batch 16: the release) until the MSE on ``held_out`` has not improved by ``min_delta``
    (relative) for ``patience`` epochs, or ``max_epochs``. Returns the decoder at its best held-out loss
    and its history: ``train_loss``/``val_loss`` per epoch, ``plateau_loss`` (best held-out MSE),
    ``epochs``, ``plateau`` (whether it stopped on the plateau rather than at ``max_epochs``)."""
    images, held_out = check_images(images), check_images(held_out, name="held_out")
    name = resolve_layers(model, layer)
    if len(name) != 1:
        raise ValueError(f"layer must select exactly one layer, got {name}")
    dev = torch.device(device) if device is not None else model_device(model)
    with frozen(model):
        ftr = _post_features(model, images.to(dev), name[0], relu)
        fval = _post_features(model, held_out.to(dev), name[0], relu)
    xtr, xval = images.to(dev), held_out.to(dev)
    with fork_rng(seed):
        dec = FeatureDecoder(ftr.shape[1:], images.shape[1:], width=width, blocks=blocks).to(dev)
    opt = torch.optim.Adam(dec.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    hist: dict[str, Any] = {"train_loss": [], "val_loss": []}
    best, best_state, since = math.inf, None, 0
    n = xtr.shape[0]
    for _ in range(max_epochs):
        dec.train()
        perm, tot = torch.randperm(n, generator=gen).to(dev), 0.0
        for i in range(0, n, batch_size):
            b = perm[i:i + batch_size]
            loss = F.mse_loss(dec(ftr[b]), xtr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * b.numel()
        dec.eval()
        with torch.no_grad():
            val = sum(float(F.mse_loss(dec(fval[i:i + 256]), xval[i:i + 256], reduction="sum"))
                      for i in range(0, xval.shape[0], 256)) / xval.numel()
        hist["train_loss"].append(tot / n)
        hist["val_loss"].append(val)
        if val < best * (1 - min_delta):
            best, since = val, 0
            best_state = {k: v.detach().clone() for k, v in dec.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    if best_state is not None:
        dec.load_state_dict(best_state)
    hist.update(plateau_loss=best, epochs=len(hist["val_loss"]), plateau=since >= patience)
    return dec.eval(), hist


@dataclass
class ReconstructionResult(MethodResult):
    """(N, L) per (image, layer); NaN where a layer has no decoder. ``uncertainty``: ``mean log(r^2 + 1e-6)``
    at the kept step (the release's reported value), ``clean``: the same for the decoder on the clean
    feature (its own error); ``feature_error``, ``selected_step``, ``converged`` (kept error within 10 % of
    tau) as for :class:`infolens.discard.DiscardResult`."""

    layers: list[str]
    indices: list[int]
    uncertainty: Tensor
    clean: Tensor
    feature_error: Tensor
    selected_step: Tensor
    converged: Tensor

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per (image, layer with a decoder): index, layer, depth, uncertainty, clean,
        feature_error, selected_step, converged."""
        rows = []
        for j, i in enumerate(self.indices):
            for l, layer in enumerate(self.layers):
                if math.isnan(float(self.clean[j, l])):
                    continue
                rows.append({"index": i, "layer": layer, "depth": l, "uncertainty": float(self.uncertainty[j, l]),
                             "clean": float(self.clean[j, l]), "feature_error": float(self.feature_error[j, l]),
                             "selected_step": int(self.selected_step[j, l]), "converged": bool(self.converged[j, l])})
        return rows


class ReconstructionUncertainty:
    """Reconstruction uncertainty of the release's ``step_capability_y.py`` (module docstring), batched over
    images and layers: ``mean log(r^2 + 1e-6)`` with ``r = g_l(h_l(x + sigma * eps)) - x`` at the sigma
    that keeps the feature error at ``tau`` (arXiv 1906.04109, Sec. 3.2).

    Parameters
    ----------
    model : nn.Module
        The classifier; frozen during :meth:`measure` (as the decoders), restored after.
    decoders : mapping of str to nn.Module
        Layer name -> a trained decoder of that layer's output back to the image
        (:class:`FeatureDecoder`, :func:`train_decoder`).
    grid, space, relu, n_steps, n_samples, tau, sigma0, seed, internal_batch_size, device
        As :class:`infolens.discard.InformationDiscarding` (grid 16, normalized space, ReLU, 100 steps,
        8 samples, tau 1.5, sigma0 0.01).
    lr : float
        The release's SGD learning rate on sigma (1e-4).
    lam0, lam_ratio : float
        The release's multiplier schedule ``lambda_t = lam0 e^{lam_ratio t / T}`` (1e4 and 1).

    References
    ----------
    .. [1] H. Ma, Y. Zhang, F. Zhou, Q. Zhang, arXiv 1906.04109 (the release: haotianSustc/deepinfo).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.ReLU())
    >>> method = ReconstructionUncertainty(net, {"0": torch.nn.Identity()}, grid=4, n_steps=2, n_samples=2,
    ...                                    relu=False)
    >>> res = method.measure(torch.rand(2, 1, 8, 8))
    >>> tuple(res.uncertainty.shape), sorted(res.to_rows()[0])[:3]
    ((2, 1), ['clean', 'converged', 'depth'])
    """

    def __init__(self, model: nn.Module, decoders: Mapping[str, nn.Module], *, grid: int | tuple[int, int] | None = 16,
                 space: str = "normalized", relu: bool = True, n_steps: int = 100, n_samples: int = 8, tau: float = 1.5,
                 sigma0: float = 0.01, lr: float = 1e-4, lam0: float = 1e4, lam_ratio: float = 1.0, seed: int = 0,
                 internal_batch_size: int | None = None, device: str | torch.device | None = None) -> None:
        if not decoders:
            raise ValueError("decoders is empty; train one per layer with infolens.discard.train_decoder")
        self.model, self.decoders = model, dict(decoders)
        self.layers = resolve_layers(model, list(self.decoders))
        self.grid, self.space, self.relu = grid, space, relu
        self.n_steps, self.n_samples, self.tau, self.sigma0 = n_steps, n_samples, tau, sigma0
        self.lr, self.lam0, self.lam_ratio, self.seed = lr, lam0, lam_ratio, seed
        self.device = torch.device(device) if device is not None else model_device(model)
        self.internal_batch_size = internal_batch_size or (256 if self.device.type == "cpu" else 8192)

    def measure(self, inputs: Tensor, target: Any = None, *,
                indices: Sequence[int] | None = None) -> ReconstructionResult:
        """Reconstruction uncertainty of every image at every layer with a decoder.

        Parameters
        ----------
        inputs : torch.Tensor, shape (N, C, H, W)
            Images in ``[0, 1]``, floating, in the model's dtype.
        target : None
            Not used; accepted for the shared call shape.
        indices : sequence of N ints or None
            The images' global indices (noise seeds), default ``0..N-1``.

        Returns
        -------
        ReconstructionResult
        """
        decs = [self.decoders[n].to(self.device) for n in self.layers]
        with method_call(self.model, inputs, None, indices, fill_target=False, also_frozen=decs) as call:
            x, idx = call.inputs.to(self.device), call.indices
            N, C, H, W = x.shape
            cells = grid_shape(self.grid, (H, W))
            pf = PairForward(self.model, self.layers, x, input_std(self.model, C, self.space), relu=self.relu,
                             chunk_rows=self.internal_batch_size)
            gens = pf.generators(idx, self.seed, salt="recon")
            with torch.no_grad():
                clean = torch.stack([(torch.log((decs[l](pf.clean[l]) - x).pow(2) + 1e-6)).flatten(1).mean(1)
                                     for l in range(pf.L)])  # (L, N)
            sol = self._solve(pf, gens, decs, cells)
        L = pf.L

        def nl(t: Tensor) -> Tensor:
            return t.reshape(L, N).transpose(0, 1).contiguous()

        err = nl(sol["error"])
        return ReconstructionResult(layers=list(self.layers), indices=idx, uncertainty=nl(sol["value"]),
                                    clean=clean.transpose(0, 1).contiguous(), feature_error=err,
                                    selected_step=nl(sol["step"]), converged=(err / self.tau - 1).abs() <= 0.1)

    def _losses(self, pf: PairForward, decs: Sequence[nn.Module], act: Tensor, s: Tensor, eps: Tensor,
                weight: Tensor, lam: float) -> tuple[Tensor, Tensor]:
        """Feature MSE and ``mean log(r^2 + 1e-6)`` per active pair; back-propagates the release's loss."""
        M = self.n_samples
        mse, val = (torch.empty(len(act), device=s.device, dtype=s.dtype), torch.empty(len(act), device=s.device, dtype=s.dtype))
        for a, b in pf.chunks(act, M):
            xr = pf.noisy(act[a:b], s[a:b], eps[a * M:b * M], M)
            total = 0.0
            for l, sel, f in pf.feature_rows(act[a:b], xr, M):
                pairs = act[a:b][sel]
                ref = pf.clean[l][pf.pair_img[pairs]].repeat_interleave(M, dim=0)
                e = (f - ref).pow(2).flatten(1).mean(1).view(-1, M).mean(1)
                r = decs[l](f) - pf.x[pf.pair_img[pairs]].repeat_interleave(M, dim=0)
                r2 = r.pow(2).view(len(pairs), -1)
                pen = torch.log(2 * math.pi * math.e * r2 + 1e-6).mean(1)
                total = total + (e * weight[a:b][sel] - lam * pen).sum()
                mse[a + sel], val[a + sel] = e.detach(), torch.log(r2.detach() + 1e-6).mean(1)
            total.backward()
        return mse, val

    def _solve(self, pf: PairForward, gens: list[torch.Generator], decs: Sequence[nn.Module],
               cells: tuple[int, int]) -> dict[str, Tensor]:
        dev, dt, P, M, T = pf.x.device, pf.x.dtype, pf.N * pf.L, self.n_samples, self.n_steps
        sigma = torch.full((P, 1, *cells), float(self.sigma0), device=dev, dtype=dt)
        with torch.no_grad():
            sf2 = pf.feature_mse(torch.arange(P, device=dev), sigma, pf.draw(gens, range(P), M), M)
        sf2 = sf2.clamp_min(torch.finfo(sf2.dtype).tiny)
        best_d = torch.full((P,), float("inf"), device=dev, dtype=dt)
        best_err, best_val = torch.full((P,), float("nan"), device=dev, dtype=dt), torch.full((P,), float("nan"), device=dev, dtype=dt)
        best_step = torch.zeros(P, dtype=torch.long, device=dev)
        alive = torch.ones(P, dtype=torch.bool, device=dev)
        for t in range(T):
            act = alive.nonzero().flatten()
            if act.numel() == 0:
                break
            lam = self.lam0 * math.e ** (self.lam_ratio * t / T)
            eps = pf.draw(gens, act.tolist(), M)
            s = sigma[act].clone().requires_grad_(True)
            mse, val = self._losses(pf, decs, act, s, eps, 1.0 / sf2[act], lam)
            with torch.no_grad():
                err = mse / sf2[act]
                d = (err - self.tau).abs()
                better = d < best_d[act]
                upd = act[better]
                best_d[upd], best_err[upd], best_val[upd], best_step[upd] = d[better], err[better], val[better], t
                new = sigma[act] - self.lr * s.grad
                ok = torch.isfinite(err) & torch.isfinite(new.flatten(1)).all(1)
                sigma[act[ok]] = new[ok]
                alive[act[~ok]] = False
        return {"error": best_err, "value": best_val, "step": best_step}


def reconstruction_uncertainty(model: nn.Module, decoders: Mapping[str, nn.Module], inputs: Tensor, *,
                               indices: Sequence[int] | None = None, **kwargs: Any) -> ReconstructionResult:
    """``ReconstructionUncertainty(model, decoders, **kwargs).measure(inputs, indices=indices)``."""
    return ReconstructionUncertainty(model, decoders, **kwargs).measure(inputs, indices=indices)


def reconstruction_at_sigma(model: nn.Module, decoders: Mapping[str, nn.Module], inputs: Tensor, result: Any, *,
                            indices: Sequence[int] | None = None, n_samples: int = 8, seed: int = 0,
                            relu: bool = True) -> ReconstructionResult:
    """``mean log(r^2 + 1e-6)`` with ``r = g_l(h(x + sigma * eps)) - x`` at the sigma of a
    :class:`infolens.discard.DiscardResult` (e.g. the constrained solver's exact optimum) instead of the
    release's separate optimisation: the reconstruction uncertainty at exactly the constraint level (ours)."""
    samples = n_samples
    dev = model_device(model)
    names = [n for n in result.layers if n in decoders]
    decs = {n: decoders[n].to(dev) for n in names}
    with method_call(model, inputs, None, indices, fill_target=False, also_frozen=list(decs.values())) as call, \
            torch.no_grad():
        x, idx = call.inputs.to(dev), call.indices
        N, C, H, W = x.shape
        L = len(result.layers)
        unc = torch.full((N, L), float("nan"), device=x.device)
        cln = torch.full((N, L), float("nan"), device=x.device)
        pf = PairForward(model, names, x, input_std(model, C, result.space), relu=relu)
        gens = pf.generators(idx, seed, salt="recon-at")
        for k, name in enumerate(names):
            l = result.layers.index(name)
            act = torch.arange(k * N, (k + 1) * N, device=x.device)
            eps = pf.draw(gens, act.tolist(), samples)
            xr = pf.noisy(act, result.sigma[:, l, None].to(x.device), eps, samples)
            f = pf.feature_rows(act, xr, samples)[0][2]
            r = decs[name](f) - x.repeat_interleave(samples, dim=0)
            unc[:, l] = torch.log(r.pow(2) + 1e-6).view(N, -1).mean(1)
            cln[:, l] = torch.log((decs[name](pf.clean[k]) - x).pow(2) + 1e-6).flatten(1).mean(1)
    return ReconstructionResult(layers=list(result.layers), indices=idx, uncertainty=unc, clean=cln,
                                feature_error=result.feature_error, selected_step=result.selected_step,
                                converged=result.converged)
