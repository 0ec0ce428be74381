"""Matte quality: metrics on hand-built cases, edge refinement, motion-aware smoothing, clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streammat.errors import ConfigError
from streammat.matting.cells import CELL, Cells
from streammat.matting.grid import box_mean, edge_cells, sample
from streammat.matting.motion import MotionSmoother
from streammat.matting.refine import _coefficients, guided_refine
from streammat.quality import metrics


# -- metrics --------------------------------------------------------------------------------
def test_metrics_are_zero_for_identical_mattes():
    rng = np.random.default_rng(0)
    a = rng.random((20, 30)).astype(np.float32)
    assert metrics.sad(a, a) == 0.0
    assert metrics.mse(a, a) == 0.0
    assert metrics.gradient_error(a, a) == 0.0
    assert metrics.connectivity_error(a, a) == 0.0
    assert metrics.dtssd(a, a, a, a) == 0.0


def test_sad_mse_and_region_sad_known_values():
    true = np.zeros((2, 2), np.float32)
    pred = np.array([[1.0, 0.0], [0.5, 0.0]], np.float32)
    assert metrics.sad(pred, true) == pytest.approx(1.5 / 4 * 1e3)
    assert metrics.mse(pred, true) == pytest.approx(1.25 / 4 * 1e3)
    region = np.array([[True, False], [False, False]])
    assert metrics.region_sad(pred, true, region) == pytest.approx(1e3)
    assert np.isnan(metrics.region_sad(pred, true, np.zeros((2, 2), bool)))


def test_dtssd_counts_change_the_truth_does_not_have():
    still = np.zeros((4, 4), np.float32)
    flicker = np.full((4, 4), 0.1, np.float32)
    # the prediction changes by 0.1 everywhere while the truth stays: sqrt(0.01) * 100
    assert metrics.dtssd(flicker, still, still, still) == pytest.approx(10.0)
    # both change the same way: no temporal error
    assert metrics.dtssd(flicker, still, flicker, still) == pytest.approx(0.0)


def test_gradient_error_sees_blur_and_connectivity_sees_islands():
    true = np.zeros((40, 40), np.float32)
    true[10:30, 10:30] = 1.0
    blurred = torch.from_numpy(true)[None, None]
    blurred = F.avg_pool2d(blurred, 5, stride=1, padding=2, count_include_pad=False)[0, 0].numpy()
    assert metrics.gradient_error(blurred, true) > 0.0
    island = true.copy()
    island[2:5, 2:5] = 1.0  # a blob not connected to the person
    assert metrics.connectivity_error(island, true) > 0.0
    assert metrics.connectivity_error(island, true) == pytest.approx(9 / 1e3)


# -- cells -----------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [64, 60])  # a whole number of cells, and not
def test_cells_upsample_matches_bilinear_interpolation_and_put_writes_only_the_cells(width):
    torch.manual_seed(0)
    s = 4
    low = torch.rand(2, 3, 8, width // s)
    selected = torch.rand(2, 8, width // s) > 0.5
    cells = Cells(selected, s)
    full = F.interpolate(low, scale_factor=s, mode="bilinear", align_corners=False)
    full = F.pad(full, (0, width - full.shape[-1])).permute(0, 2, 3, 1).contiguous()
    expected = cells.pixels(full).permute(2, 0, 1)
    assert torch.allclose(cells.upsample(low), expected, atol=1e-5)
    target = torch.zeros(2, 32, width, dtype=torch.uint8)
    cells.put(target, torch.full((cells.count, s * s), 7.0))
    mask = selected.repeat_interleave(s, 1).repeat_interleave(s, 2)
    assert bool((target[:, :, : mask.shape[2]] == 7).eq(mask).all())
    assert int(target[:, :, mask.shape[2] :].sum()) == 0


@pytest.mark.parametrize("width", [64, 60])  # 8-byte cell rows gathered as words, and strided rows
def test_cells_gather_and_write_frame_by_frame_like_plain_indexing(width):
    gen = torch.Generator().manual_seed(6)
    s, n, h = 8, 3, 32
    selected = torch.rand(n, h // s, width // s, generator=gen) > 0.6
    selected[1] = False  # a frame without cells
    cells = Cells(selected, s)
    alpha = torch.randint(0, 256, (n, h, width), dtype=torch.uint8, generator=gen)
    rgb = torch.randint(0, 256, (n, h, width, 3), dtype=torch.uint8, generator=gen)

    def plain(full, frame, source):
        rows = [
            full[source, i * s : (i + 1) * s, j * s : (j + 1) * s].reshape(s * s, *full.shape[3:])
            for i, j in selected[frame].nonzero().tolist()
        ]
        return torch.stack(rows) if rows else torch.empty((0, s * s, *full.shape[3:]), dtype=full.dtype)

    for frame in range(n):
        span = cells.span(frame)
        for full in (alpha, rgb, alpha.float()):
            assert torch.equal(cells.pixels(full, span), plain(full, frame, frame))
            assert torch.equal(cells.pixels(full, span, frame=0), plain(full, frame, 0))
        target = torch.zeros_like(alpha)
        cells.put(target, torch.full((span.stop - span.start, s * s), 9.0), span)
        written = (target == 9).view(n, h // s, s, -1)[..., : (width // s) * s]
        expected = selected[frame].repeat_interleave(s, 0).repeat_interleave(s, 1)
        assert torch.equal(written.reshape(n, h, -1)[frame], expected)
        assert int(target[torch.arange(n) != frame].sum()) == 0
    assert torch.equal(cells.pixels(alpha), torch.cat([plain(alpha, f, f) for f in range(n)]))


def _full_frame_refine(images, alpha, *, radius=16, eps=1e-4, subsample=16, levels=(0.15, 0.85)):
    """The guided refinement computed on every pixel of the frame, then kept in the edge
    cells: what the packed cells of ``guided_refine`` must reproduce."""
    s, k = CELL, subsample // CELL
    mask = sample(alpha, s).unsqueeze(1).float() / 255
    guide = sample(images, s).permute(0, 3, 1, 2).float() / 255
    coarse = F.avg_pool2d(torch.cat([guide, mask], 1), k)
    coeffs = _coefficients(coarse[:, :3], coarse[:, 3:], max(1, round(radius / subsample)), eps)
    coeffs = F.interpolate(coeffs, size=mask.shape[-2:], mode="bilinear", align_corners=False)
    coeffs = F.interpolate(coeffs, scale_factor=s, mode="bilinear", align_corners=False)
    lo, hi = levels
    colour = images.permute(0, 3, 1, 2).float()
    q = (coeffs[:, :3] * colour).sum(1) / (hi - lo) + (coeffs[:, 3] - lo) / (hi - lo) * 255
    edges = edge_cells(mask, band=0, s=s).repeat_interleave(s, 1).repeat_interleave(s, 2)
    return torch.where(edges, q.round().clamp(0, 255).to(torch.uint8), alpha)


def test_refine_in_packed_edge_cells_equals_the_full_frame_filter_within_one_level():
    gen = torch.Generator().manual_seed(7)
    img = _two_colour_frame(3, 64, 96, edge=50).to(torch.int16) + torch.randint(-6, 7, (3, 64, 96, 3), generator=gen)
    img = img.clamp(0, 255).to(torch.uint8)
    alpha = torch.stack([_soft_step(1, 64, 96, at=a, width=12.0)[0] for a in (40.0, 46.0, 52.0)])
    packed, full = guided_refine(img, alpha), _full_frame_refine(img, alpha)
    assert int((packed.int() - full.int()).abs().max()) <= 1
    assert not torch.equal(packed, alpha)  # the edges did move


def _full_frame_smoothing(smoother, images, alphas):
    """Motion-aware smoothing of one sequence blended on every pixel of the edge cells,
    frame after frame, from full-resolution weights: what the packed cells must reproduce."""
    s = CELL
    keep = F.interpolate(smoother._keep(images), scale_factor=s, mode="bilinear", align_corners=False)[:, 0]
    edges = edge_cells(sample(alphas, s).unsqueeze(1).float() / 255, band=0, s=s)
    out = alphas.clone()
    for i in range(1, len(alphas)):
        cells = (edges[i] | edges[i - 1]).repeat_interleave(s, 0).repeat_interleave(s, 1)
        blended = torch.lerp(out[i].float(), out[i - 1].float(), keep[i]).round().to(torch.uint8)
        out[i] = torch.where(cells, blended, out[i])
    return out


def test_smoother_in_packed_edge_cells_equals_a_full_frame_blend_within_one_level():
    gen = torch.Generator().manual_seed(8)
    t, h, w = 9, 48, 64
    positions = [
        24.0 + (3 * i if i < 5 else 12) + float(d) for i, d in enumerate(torch.randint(-2, 3, (t,), generator=gen))
    ]
    frames = torch.stack([_two_colour_frame(1, h, w, edge=round(p))[0] for p in positions]).to(torch.int16)
    frames = (frames + torch.randint(-4, 5, (t, h, w, 3), generator=gen)).clamp(0, 255).to(torch.uint8)
    alphas = torch.stack([_soft_step(1, h, w, at=p, width=6.0)[0] for p in positions])
    packed = _run(MotionSmoother(0.8), frames, alphas, batch=4)
    full = _full_frame_smoothing(MotionSmoother(0.8), frames, alphas)
    assert int((packed.int() - full.int()).abs().max()) <= 1
    assert not torch.equal(packed, alphas)  # the still frames were blended


def test_box_mean_and_sample():
    x = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).view(2, 1, 5, 6)
    ref = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert torch.allclose(box_mean(x, 1), ref)
    img = torch.arange(2 * 16 * 24 * 3).view(2, 16, 24, 3).to(torch.uint8)
    assert torch.equal(sample(img, 8), img[:, 4::8, 4::8])


# -- guided refinement ---------------------------------------------------------------------
def _two_colour_frame(n: int = 1, h: int = 64, w: int = 96, edge: int = 52) -> torch.Tensor:
    """Dark-blue left, light-orange right: a colour edge at column ``edge``."""
    img = torch.empty(n, h, w, 3, dtype=torch.uint8)
    img[:, :, :edge] = torch.tensor([30, 40, 160], dtype=torch.uint8)
    img[:, :, edge:] = torch.tensor([230, 170, 60], dtype=torch.uint8)
    return img


def _soft_step(n: int, h: int, w: int, at: float, width: float) -> torch.Tensor:
    """An alpha that is 255 left of ``at`` and falls to 0 over ``width`` pixels (blobby)."""
    x = torch.arange(w, dtype=torch.float32)
    row = ((at - x) / width + 0.5).clamp(0, 1) * 255
    return row.round().to(torch.uint8).expand(n, h, w).contiguous()


def test_refine_moves_a_blurry_edge_onto_the_colour_edge_and_keeps_interiors():
    img = _two_colour_frame()
    alpha = _soft_step(1, 64, 96, at=48.0, width=16.0)  # centred 4 px left of the colour edge
    out = guided_refine(img, alpha, radius=16, eps=1e-4, band=8, subsample=8, levels=(0.1, 0.9))
    row_in, row_out = alpha[0, 32].float(), out[0, 32].float()
    # the steepest step of the matte is now at the colour edge (between columns 51 and 52)
    assert int((row_out[1:] - row_out[:-1]).abs().argmax()) == 51
    ideal = (torch.arange(96) < 52).float() * 255
    assert float((row_out - ideal).abs().sum()) < 0.5 * float((row_in - ideal).abs().sum())
    # far from the edge nothing changes
    assert torch.equal(out[:, :, :16], alpha[:, :, :16])
    assert torch.equal(out[:, :, 88:], alpha[:, :, 88:])


def test_refine_changes_only_pixels_in_the_band_and_leaves_flat_mattes_alone():
    img = torch.randint(0, 256, (2, 48, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    flat = torch.full((2, 48, 64), 255, dtype=torch.uint8)
    assert torch.equal(guided_refine(img, flat), flat)
    alpha = _soft_step(2, 48, 64, at=20.0, width=6.0)
    out = guided_refine(img, alpha, band=0)
    changed = (out != alpha).any(0).any(0)  # per column
    assert bool(changed[:8].logical_not().all()) and bool(changed[40:].logical_not().all())


def test_refine_batch_equals_frames_one_at_a_time_and_in_place():
    gen = torch.Generator().manual_seed(2)
    img = torch.randint(0, 256, (3, 48, 64, 3), dtype=torch.uint8, generator=gen)
    alpha = torch.stack([_soft_step(1, 48, 64, at=a, width=10.0)[0] for a in (20.0, 30.0, 40.0)])
    together = guided_refine(img, alpha)
    apart = torch.cat([guided_refine(img[i : i + 1], alpha[i : i + 1]) for i in range(3)])
    assert torch.equal(together, apart)
    inplace = alpha.clone()
    assert guided_refine(img, inplace, out=inplace) is inplace
    assert torch.equal(inplace, together)


def test_refine_rejects_bad_settings():
    img, alpha = _two_colour_frame(), _soft_step(1, 64, 96, at=40.0, width=8.0)
    with pytest.raises(ConfigError, match="radius"):
        guided_refine(img, alpha, radius=0)
    with pytest.raises(ConfigError, match="eps"):
        guided_refine(img, alpha, eps=0.0)
    with pytest.raises(ConfigError, match="levels"):
        guided_refine(img, alpha, levels=(0.6, 0.4))
    with pytest.raises(ValueError, match="uint8"):
        guided_refine(img, alpha.float())


# -- motion-aware smoothing -----------------------------------------------------------------
def _run(smoother, frames: torch.Tensor, alphas: torch.Tensor, batch: int = 4) -> torch.Tensor:
    return torch.cat([smoother(frames[i : i + batch], alphas[i : i + batch]) for i in range(0, len(frames), batch)])


def _flicker(out: torch.Tensor) -> float:
    return float((out[1:].float() - out[:-1].float()).abs().mean())


class _PlainEma:
    def __init__(self, k: float) -> None:
        self.k, self.state = k, None

    def __call__(self, images, alpha):
        out = []
        for a in alpha.float():
            self.state = a if self.state is None else self.k * self.state + (1 - self.k) * a
            out.append(self.state.round().to(torch.uint8))
        return torch.stack(out)


def test_smoother_reduces_flicker_on_a_still_noisy_scene():
    gen = torch.Generator().manual_seed(3)
    t, h, w = 16, 48, 64
    scene = _two_colour_frame(1, h, w, edge=32).expand(t, h, w, 3).to(torch.int16)
    noise = torch.randint(-4, 5, (t, h, w, 3), generator=gen, dtype=torch.int16)
    frames = (scene + noise).clamp(0, 255).to(torch.uint8)
    # the mask's edge wobbles by up to 2 px from frame to frame: model shimmer
    wobble = torch.randint(-2, 3, (t,), generator=gen)
    alphas = torch.stack([_soft_step(1, h, w, at=32.0 + float(d), width=6.0)[0] for d in wobble])
    out = _run(MotionSmoother(0.8), frames, alphas)
    assert _flicker(out) < 0.5 * _flicker(alphas)


def test_smoother_follows_a_moving_edge_without_the_lag_of_a_plain_ema():
    t, h, w = 12, 48, 96
    positions = [16.0 + 5 * i for i in range(t)]
    frames = torch.stack([_two_colour_frame(1, h, w, edge=round(p))[0] for p in positions])
    alphas = torch.stack([_soft_step(1, h, w, at=p, width=4.0)[0] for p in positions])
    smoothed = _run(MotionSmoother(0.8), frames, alphas)
    ema = _run(_PlainEma(0.8), frames, alphas)
    err_smooth = float((smoothed.float() - alphas.float()).abs().mean())
    err_ema = float((ema.float() - alphas.float()).abs().mean())
    assert err_smooth < 0.2 * err_ema
    assert err_smooth < 1.0  # grey levels: the moving edge is taken as it is


def test_smoother_batches_equal_one_sequence_and_reset_forgets():
    gen = torch.Generator().manual_seed(4)
    frames = torch.randint(100, 110, (8, 32, 48, 3), dtype=torch.uint8, generator=gen)
    alphas = torch.stack([_soft_step(1, 32, 48, at=20.0 + (i % 3), width=6.0)[0] for i in range(8)])
    whole = MotionSmoother(0.8)(frames, alphas)
    parts = _run(MotionSmoother(0.8), frames, alphas, batch=3)
    assert torch.equal(whole, parts)
    smoother = MotionSmoother(0.8)
    smoother(frames, alphas)
    smoother.reset()
    assert torch.equal(smoother(frames[:1], alphas[:1]), alphas[:1])  # no history: unchanged


def test_smoother_rejects_bad_settings():
    with pytest.raises(ConfigError, match="strength"):
        MotionSmoother(1.0)
    with pytest.raises(ConfigError, match="motion"):
        MotionSmoother(0.5, motion=0)


# -- clips with a known alpha ---------------------------------------------------------------
def test_clips_have_a_soft_true_alpha_and_only_noise_changes_the_static_one():
    from streammat.quality.clips import make_clip

    static = make_clip("static", frames=3, width=320, height=192)
    assert static.frames.shape == (3, 192, 320, 3) and static.alpha.shape == (3, 192, 320)
    assert np.array_equal(static.alpha[0], static.alpha[2])
    partial = (static.alpha > 0) & (static.alpha < 255)
    assert 0 < partial.mean() < 0.2  # a soft edge and strands, not a blur
    still = np.abs(static.frames[1].astype(int) - static.frames[0].astype(int)).mean()
    assert 0 < still < 6  # sensor noise and compression only
    moving = make_clip("moving", frames=3, width=320, height=192)
    assert not np.array_equal(moving.alpha[0], moving.alpha[2])
    with pytest.raises(ConfigError, match="clip kind"):
        make_clip("shaky", frames=1)


def test_write_clip_plays_the_clip_forward_and_back_as_a_video_file(tmp_path):
    import av

    from streammat.quality.clips import make_clip, write_clip

    clip = make_clip("moving", frames=3, width=160, height=96)
    path = write_clip(clip, tmp_path / "clip.mp4", frames=7)
    with av.open(str(path)) as src:
        decoded = [f.to_ndarray(format="rgb24").astype(np.int16) for f in src.decode(video=0)]
    assert len(decoded) == 7
    for got, want in zip(decoded, [0, 1, 2, 1, 0, 1, 2], strict=True):
        errors = [np.abs(got - frame).mean() for frame in clip.frames.astype(np.int16)]
        assert int(np.argmin(errors)) == want


def test_benchmark_settings_name_valid_process_options():
    from streammat.config import ProcessConfig, settings_from
    from streammat.quality.settings import SETTINGS

    for setting in SETTINGS:
        assert setting.options is not None
        config = settings_from(ProcessConfig, {"source": "in.mp4", **setting.options}, where="test")
        assert (config.refine == "guided") == (setting.refine is not None)
        assert config.smoothing == setting.strength
        assert (config.motion is None) == (setting.smoothing == "ema")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_refine_and_smoother_run_on_cuda_tensors_like_on_the_cpu():
    gen = torch.Generator().manual_seed(5)
    img = torch.randint(0, 256, (4, 64, 96, 3), dtype=torch.uint8, generator=gen)
    alpha = torch.stack([_soft_step(1, 64, 96, at=30.0 + 4 * i, width=10.0)[0] for i in range(4)])
    cpu = guided_refine(img, alpha)
    gpu = guided_refine(img.cuda(), alpha.cuda())
    assert gpu.device.type == "cuda"
    assert int((gpu.cpu().int() - cpu.int()).abs().max()) <= 1
    cpu_s = MotionSmoother(0.8)(img, alpha)
    gpu_s = MotionSmoother(0.8)(img.cuda(), alpha.cuda())
    assert int((gpu_s.cpu().int() - cpu_s.int()).abs().max()) <= 1
