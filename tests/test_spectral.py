"""Tests of infolens.spectral against independent references: librosa, closed forms, a naive NumPy
implementation, the reference values of docs/methods.md, and exact/approximate symmetry properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infolens.spectral import (
    frequency_radius,
    lowpass_filter,
    lowpass_mask,
    power_spectrum,
    radial_profile,
    rolloff_1d,
    srop_2d,
)

torch.set_num_threads(2)


def naive_srop(a: np.ndarray, kappa: float = 0.85, q: float = 2.0) -> float:
    """Independent reference: full fft2 in NumPy, every bin sorted by radius, first bin reaching kappa."""
    h, w = a.shape
    p = np.abs(np.fft.fft2(a)) ** q
    u, v = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    rho = np.sqrt(u ** 2 + v ** 2).ravel()
    order = np.argsort(rho, kind="stable")
    cum = np.cumsum(p.ravel()[order])
    if cum[-1] <= 0:
        return float("nan")
    k = int(np.argmax(cum >= kappa * cum[-1]))
    return float(rho[order][k] / 0.5)


def gaussian_blob(n: int, s: float, *, sy: float | None = None, angle: float = 0.0, dtype=torch.float64):
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64) - n // 2,
                          torch.arange(n, dtype=torch.float64) - n // 2, indexing="ij")
    c, si = math.cos(angle), math.sin(angle)
    xr, yr = c * x + si * y, -si * x + c * y
    sy = s if sy is None else sy
    return torch.exp(-xr ** 2 / (2 * s ** 2) - yr ** 2 / (2 * sy ** 2)).to(dtype)


# --------------------------------------------------------------------------- 1-D roll-off vs librosa


@pytest.mark.parametrize("kappa", [0.5, 0.85, 0.95, 0.99])
def test_rolloff_1d_matches_librosa_on_same_spectra(kappa):
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    n_fft, sr = 256, 22050
    S = rng.random((n_fft // 2 + 1, 40)) ** 3  # (freq, frames), librosa's layout
    ref = librosa.feature.spectral_rolloff(S=S, sr=sr, n_fft=n_fft, roll_percent=kappa)[0]
    freqs = torch.from_numpy(librosa.fft_frequencies(sr=sr, n_fft=n_fft))
    ours = rolloff_1d(torch.from_numpy(S.T.copy()), freqs, kappa=kappa)
    np.testing.assert_array_equal(ours.numpy(), ref)


def test_rolloff_1d_q1_equals_librosa_from_signal():
    """librosa accumulates the magnitude spectrum: our roll-off of |STFT|^1 equals its value from y."""
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(1)
    sr, n_fft, hop = 8000, 512, 128
    t = np.arange(sr) / sr
    y = np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 2500 * t) + 0.05 * rng.standard_normal(sr)
    ref = librosa.feature.spectral_rolloff(y=y, sr=sr, n_fft=n_fft, hop_length=hop)[0]
    mag = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    freqs = torch.from_numpy(librosa.fft_frequencies(sr=sr, n_fft=n_fft))
    ours_q1 = rolloff_1d(torch.from_numpy(mag.T.copy()), freqs)
    np.testing.assert_array_equal(ours_q1.numpy(), ref)
    ours_q2 = rolloff_1d(torch.from_numpy((mag ** 2).T.copy()), freqs)
    assert not np.array_equal(ours_q2.numpy(), ref)  # energy (q=2) is a different quantity


def test_rolloff_1d_hand_cases():
    s = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    out = rolloff_1d(s, kappa=0.5)
    assert out[0] == 1 and out[1] == 0 and torch.isnan(out[2])
    assert rolloff_1d(s[:1], kappa=1.0)[0] == 3
    with pytest.raises(ValueError, match="kappa"):
        rolloff_1d(s, kappa=0.0)
    with pytest.raises(ValueError, match="frequencies"):
        rolloff_1d(s, torch.arange(3.0))


# --------------------------------------------------------------------------- 2-D SROP: reference values


@pytest.mark.parametrize("kappa,expected", [(0.85, 1.0556), (0.95, 1.1981)])
def test_white_noise_reference_values(kappa, expected):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 224, 224, generator=g)
    out = srop_2d(noise, kappa=kappa)
    assert abs(float(out.mean()) - expected) < 2e-3
    assert float(out.std()) < 5e-3


def test_white_noise_small_maps_are_noisier():
    g = torch.Generator().manual_seed(0)
    out = srop_2d(torch.randn(4000, 7, 7, generator=g))
    assert abs(float(out.mean()) - 1.04) < 0.01
    assert abs(float(out.std()) - 0.08) < 0.02


@pytest.mark.parametrize("q,expected", [(2.0, 0.2192), (1.0, 0.3100)])
def test_gaussian_blob_reference_values(q, expected):
    out = float(srop_2d(gaussian_blob(128, 2.0), q=q))
    assert abs(out - expected) < 1e-3


@pytest.mark.parametrize("s,kappa", [(3.0, 0.85), (2.5, 0.9), (1.5, 0.7), (2.0, 0.95)])
def test_gaussian_blob_closed_form(s, kappa):
    power = 2 * math.sqrt(-math.log(1 - kappa)) / (2 * math.pi * s)
    magnitude = 2 * math.sqrt(-math.log(1 - kappa) / 2) / (math.pi * s)
    blob = gaussian_blob(128, s)
    # the DFT samples the continuous spectrum: a wider blob puts its energy in fewer bins (2% here)
    assert float(srop_2d(blob, kappa=kappa, q=2.0)) == pytest.approx(power, rel=0.02)
    assert float(srop_2d(blob, kappa=kappa, q=1.0)) == pytest.approx(magnitude, rel=0.02)


@pytest.mark.parametrize("h,w,ky,kx", [(32, 32, 0, 5), (24, 40, 3, 4), (17, 15, 2, 7)])
def test_pure_cosine(h, w, ky, kx):
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    cos = torch.cos(2 * math.pi * (ky * y / h + kx * x / w))
    expected = math.sqrt((ky / h) ** 2 + (kx / w) ** 2) / 0.5
    assert float(srop_2d(cos)) == pytest.approx(expected, abs=1e-12)
    # With a DC offset of 1, DC holds 2/3 of the energy (< 0.85): the cosine still sets the roll-off ...
    assert float(srop_2d(1 + cos)) == pytest.approx(expected, abs=1e-12)
    # ... but at kappa = 0.6 DC alone suffices.
    assert float(srop_2d(1 + cos, kappa=0.6)) == 0.0


@pytest.mark.parametrize("h,w", [(32, 32), (9, 14)])
def test_delta_has_a_flat_spectrum(h, w):
    d = torch.zeros(h, w, dtype=torch.float64)
    d[3, 5] = 1.0
    rho = np.sort(frequency_radius(h, w, dtype=torch.float64).numpy().ravel())
    for kappa in (0.5, 0.85, 0.95):
        expected = rho[math.ceil(kappa * h * w - 1e-9) - 1]
        assert float(srop_2d(d, kappa=kappa)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shape", [(7, 9), (15, 15), (16, 11), (1, 8), (28, 28), (5, 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_srop_matches_naive_numpy(shape, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    maps = torch.rand(6, *shape, generator=g, dtype=torch.float64) ** 3
    maps[1] = maps[1] - maps[1].mean()
    out = srop_2d(maps.to(dtype))
    assert out.dtype == dtype and out.shape == (6,)
    # the roll-off radius of a float32 map against float64: it moves only where float32 rounding of the
    # cumulative energy (8 * eps32 * H * W relative, <= 1e-3 here) crosses kappa, which these random maps do not
    # reach; 1e-6 is the interpolated radius's own float32 rounding (~8 eps32 of a value <= 1)
    for i in range(6):
        for q in (2.0,):
            assert float(out[i]) == pytest.approx(naive_srop(maps[i].numpy(), q=q), abs=1e-6)
    out_q1 = srop_2d(maps, q=1.0, kappa=0.7)
    for i in range(6):
        assert float(out_q1[i]) == pytest.approx(naive_srop(maps[i].numpy(), kappa=0.7, q=1.0), abs=1e-12)


def test_batched_leading_dims_equal_per_map():
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(2, 3, 4, 13, 10, generator=g)
    out = srop_2d(maps)
    assert out.shape == (2, 3, 4)
    flat = torch.stack([srop_2d(m) for m in maps.reshape(-1, 13, 10)])
    assert torch.equal(out.reshape(-1), flat)


# --------------------------------------------------------------------------- invariances and scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(32, 32), (21, 21), (12, 20)])
def test_exact_rotation_flip_transpose_invariance(dtype, shape):
    g = torch.Generator().manual_seed(7)
    maps = (torch.rand(16, *shape, generator=g, dtype=torch.float64) ** 2).to(dtype)
    ref = srop_2d(maps)
    variants = [torch.rot90(maps, k, dims=(-2, -1)) for k in (1, 2, 3)]
    variants += [maps.flip(-1), maps.flip(-2), maps.transpose(-2, -1), maps.flip(-1).transpose(-2, -1)]
    for v in variants:
        assert torch.equal(srop_2d(v.contiguous()), ref)


@pytest.mark.parametrize("angle_deg", [15, 30, 45, 60, 75])
def test_rotated_patterns_change_little(angle_deg):
    """A pattern drawn at other angles (anisotropic Gaussian; oriented Gabor): SROP within a few %."""
    ref_g = float(srop_2d(gaussian_blob(128, 2.0, sy=4.0)))
    rot_g = float(srop_2d(gaussian_blob(128, 2.0, sy=4.0, angle=math.radians(angle_deg))))
    assert abs(rot_g - ref_g) / ref_g < 0.02

    def gabor(angle: float) -> torch.Tensor:
        n = 96
        y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64) - n / 2,
                              torch.arange(n, dtype=torch.float64) - n / 2, indexing="ij")
        u = math.cos(angle) * x + math.sin(angle) * y
        return torch.cos(2 * math.pi * 0.15 * u) * torch.exp(-(x ** 2 + y ** 2) / (2 * 8.0 ** 2))

    assert abs(float(srop_2d(gabor(math.radians(angle_deg)))) - float(srop_2d(gabor(0.0)))) < 0.01


def test_radially_symmetric_pattern_is_invariant_to_rotation():
    """A radially symmetric pattern centred off the grid axes, rotated by interpolation-free 90-degree
    steps and by arbitrary-angle redraws, keeps its SROP."""
    blob = gaussian_blob(128, 3.0)
    out = [float(srop_2d(gaussian_blob(128, 3.0, angle=math.radians(a)))) for a in (0, 10, 33, 71)]
    assert max(out) - min(out) < 1e-9
    assert float(srop_2d(blob)) == pytest.approx(out[0], abs=1e-12)


def test_fourier_upsampling_by_two_halves_srop_exactly():
    g = torch.Generator().manual_seed(11)
    small = lowpass_filter(torch.randn(8, 32, 32, generator=g, dtype=torch.float64), 0.8, unit="nyquist")
    spec = torch.fft.fftshift(torch.fft.fft2(small), dim=(-2, -1))
    big_spec = torch.zeros(8, 64, 64, dtype=spec.dtype)
    big_spec[:, 16:48, 16:48] = spec
    big = torch.fft.ifft2(torch.fft.ifftshift(big_spec, dim=(-2, -1))).real * 4
    torch.testing.assert_close(srop_2d(big), srop_2d(small) / 2, atol=1e-9, rtol=0)


def test_interpolation_upsampling_by_two_halves_srop():
    g = torch.Generator().manual_seed(12)
    small = lowpass_filter(torch.randn(16, 1, 48, 48, generator=g, dtype=torch.float64), 0.4, unit="nyquist",
                           window="gaussian")
    big = torch.nn.functional.interpolate(small, scale_factor=2, mode="bicubic", align_corners=False)
    ratio = srop_2d(big) / srop_2d(small)
    assert float((ratio - 0.5).abs().max()) < 0.05


# --------------------------------------------------------------------------- degenerate maps, dtypes, errors


def test_constant_zero_and_dc_handling():
    const = torch.full((3, 10, 13), 2.5)
    assert torch.equal(srop_2d(const), torch.zeros(3))
    assert torch.isnan(srop_2d(torch.zeros(2, 8, 8))).all()
    mixed = torch.stack([torch.zeros(8, 8), torch.ones(8, 8), torch.randn(8, 8)])
    out = srop_2d(mixed)
    assert torch.isnan(out[0]) and out[1] == 0 and 0 < out[2] <= math.sqrt(2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_map_without_dc_is_missing(dtype):
    const = torch.full((3, 10, 13), 2.5, dtype=dtype)
    assert torch.isnan(srop_2d(const, keep_dc=False)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("q", [2.0, 1.0, 0.5])
def test_constant_map_is_constant_at_any_threshold_but_small_signals_count(dtype, q):
    """FFT rounding of a constant map (< 0.4 eps of DC per bin) is no signal, even at kappa = 1;
    a real variation of 1e-3 of the level is."""
    const = torch.full((2, 9, 14), 3.7, dtype=dtype)
    assert torch.equal(srop_2d(const, kappa=1.0, q=q), torch.zeros(2, dtype=dtype))
    bumped = const.clone()
    bumped[:, 4, 7] += 3.7e-3
    out = srop_2d(bumped, kappa=1.0, q=q, keep_dc=False)
    assert float(out[0]) == pytest.approx(naive_srop(bumped[0].double().numpy() - 3.7, kappa=1.0, q=q), abs=1e-6)


@pytest.mark.parametrize("q", [0.5, 3.0])
def test_other_exponents_match_naive(q):
    g = torch.Generator().manual_seed(9)
    maps = torch.rand(4, 11, 8, generator=g, dtype=torch.float64)
    out = srop_2d(maps, q=q, kappa=0.8)
    for i in range(4):
        assert float(out[i]) == pytest.approx(naive_srop(maps[i].numpy(), kappa=0.8, q=q), abs=1e-12)


def test_disc_option_keeps_only_the_inscribed_disc():
    g = torch.Generator().manual_seed(5)
    out = srop_2d(torch.randn(64, 64, 64, generator=g), disc=True)
    assert float(out.max()) <= 1.0 + 1e-6
    # white noise restricted to the disc: E(r) = r^2, so SROP = sqrt(kappa)
    assert abs(float(out.mean()) - math.sqrt(0.85)) < 0.01


def test_dtype_and_errors():
    for dtype in (torch.float32, torch.float64):
        assert srop_2d(torch.rand(2, 5, 5, dtype=dtype)).dtype == dtype
        assert power_spectrum(torch.rand(5, 6, dtype=dtype)).dtype == dtype
    with pytest.raises(TypeError):
        srop_2d(torch.ones(4, 4, dtype=torch.int64))
    with pytest.raises(TypeError):
        srop_2d(np.ones((4, 4)))
    with pytest.raises(ValueError):
        srop_2d(torch.ones(4))
    with pytest.raises(ValueError, match="kappa"):
        srop_2d(torch.ones(4, 4), kappa=1.5)


# --------------------------------------------------------------------------- power spectrum, radial profile, low-pass


def test_power_spectrum_matches_numpy_and_parseval():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(3, 9, 12, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(power_spectrum(a).numpy(), np.abs(np.fft.fft2(a.numpy())) ** 2, rtol=1e-12)
    np.testing.assert_allclose(power_spectrum(a, q=1).numpy(), np.abs(np.fft.fft2(a.numpy())), rtol=1e-12)
    torch.testing.assert_close(power_spectrum(a).sum((-2, -1)), 9 * 12 * a.square().sum((-2, -1)))
    shifted = power_spectrum(a, shift=True)
    assert shifted[0, 9 // 2, 12 // 2] == power_spectrum(a)[0, 0, 0]


@pytest.mark.parametrize("shape", [(16, 16), (15, 22), (7, 7)])
def test_radial_profile_parseval_over_all_rings(shape):
    g = torch.Generator().manual_seed(4)
    a = torch.randn(5, *shape, generator=g, dtype=torch.float64)
    prof = radial_profile(a, reduce="sum", max_radius=math.sqrt(2), n_bins=12)
    energy = shape[0] * shape[1] * a.square().sum((-2, -1))
    torch.testing.assert_close(prof.values.sum(-1), energy, rtol=1e-10, atol=0)
    assert prof.values.shape == (5, 12) and prof.edges.shape == (13,) and prof.frequencies.shape == (12,)


def test_radial_profile_mean_of_flat_spectrum_and_cosine_ring():
    d = torch.zeros(32, 32, dtype=torch.float64)
    d[0, 0] = 1.0
    prof = radial_profile(d)  # unit power in every bin: the mean of every ring is 1
    torch.testing.assert_close(prof.values, torch.ones(17, dtype=torch.float64))
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cos = torch.cos(2 * math.pi * 8 * x / 32).double()
    p = radial_profile(cos, reduce="sum", n_bins=16)
    ring = int(torch.argmax(p.values))
    assert p.edges[ring] <= 0.5 < p.edges[ring + 1] or p.edges[ring] < 0.5 <= p.edges[ring + 1]
    assert float(p.values[ring]) == pytest.approx(float(p.values.sum()))


def test_lowpass_filter_basics():
    g = torch.Generator().manual_seed(6)
    a = torch.randn(2, 3, 31, 40, generator=g, dtype=torch.float64)
    torch.testing.assert_close(lowpass_filter(a, math.sqrt(2) + 1e-6, unit="nyquist"), a)
    assert lowpass_filter(a, float("inf")) is not a
    lp = lowpass_filter(a, 0.3, unit="nyquist")
    assert lp.shape == a.shape and lp.dtype == a.dtype
    torch.testing.assert_close(lowpass_filter(lp, 0.3, unit="nyquist"), lp)  # ideal filter: idempotent
    torch.testing.assert_close(lp.mean((-2, -1)), a.mean((-2, -1)))  # DC kept
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    slow, fast = torch.cos(2 * math.pi * 2 * x / 32), torch.cos(2 * math.pi * 12 * y / 32)
    torch.testing.assert_close(lowpass_filter(slow + fast, 5), slow, atol=1e-5, rtol=0)
    # Xplique's FORGrad default (15 steps at 224 x 224) keeps about 1.4% of the coefficients.
    full = torch.fft.ifftshift(torch.ones(224, 224))
    ky = torch.fft.fftfreq(224, d=1 / 224)
    kept = ((ky[:, None] ** 2 + ky[None, :] ** 2) <= 225).double().mean()
    assert float(kept) == pytest.approx(0.0141, abs=5e-4)
    mask = lowpass_mask(224, 224, 15)
    assert mask.shape == (224, 113) and full.shape == (224, 224)
    g_mask = lowpass_mask(20, 20, 0.5, unit="nyquist", window="gaussian")
    assert float(g_mask[0, 0]) == 1.0 and float(g_mask.min()) > 0
    with pytest.raises(ValueError):
        lowpass_mask(8, 8, 0.0)
