"""MI estimation: exact bound formulas, Gaussian ground truth, saturation, images, seeding."""

import itertools
import math

import pytest
import torch

from analysis.mi import (
    MIEstimate,
    estimate_mi,
    infonce_bound,
    js_bound,
    nwj_bound,
    smile_bound,
    view_mi,
)
from trainers.config import MIConfig as MIProtocol  # the protocol is the spec's mi section


@pytest.fixture(autouse=True)
def _one_thread():
    """The CPU is shared: one intra-op thread avoids oversubscription stalls (and is deterministic)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def correlated_gaussians(d: int, true_mi: float, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps, with rho chosen so I(x; y) = true_mi nats."""
    rho = math.sqrt(1 - math.exp(-2 * true_mi / d))
    assert abs(-d / 2 * math.log(1 - rho**2) - true_mi) < 1e-9
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d, generator=g)


def n_needed(p: MIProtocol) -> int:
    return p.pairs + p.eval_pairs


# ----------------------------------------------------------------------------- bounds vs loops


def ref_infonce(s):
    k = len(s)
    total = 0.0
    for i in range(k):
        total += s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(k)))
    return math.log(k) + total / k


def _offdiag(s):
    k = len(s)
    return [s[i][j] for i in range(k) for j in range(k) if i != j]


def ref_nwj(s):
    k = len(s)
    pos = sum(s[i][i] for i in range(k)) / k
    neg = [math.exp(v) for v in _offdiag(s)]
    return pos - math.exp(-1) * sum(neg) / len(neg)


def ref_smile(s, clip):
    k = len(s)
    pos = sum(s[i][i] for i in range(k)) / k
    neg = [math.exp(min(max(v, -clip), clip)) for v in _offdiag(s)]
    return pos - math.log(sum(neg) / len(neg))


def ref_js(s):
    def softplus(v):
        return math.log1p(math.exp(v))

    k = len(s)
    pos = sum(-softplus(-s[i][i]) for i in range(k)) / k
    neg = [softplus(v) for v in _offdiag(s)]
    return pos - sum(neg) / len(neg)


@pytest.mark.parametrize("k", [2, 5, 9])
@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_bounds_match_loop_references(k, scale):
    scores = torch.randn(k, k, generator=torch.Generator().manual_seed(k), dtype=torch.float64) * scale
    s = scores.tolist()
    cases = [
        (infonce_bound(scores), ref_infonce(s)),
        (nwj_bound(scores), ref_nwj(s)),
        (smile_bound(scores, 1.5), ref_smile(s, 1.5)),
        (smile_bound(scores, 100.0), ref_smile(s, 100.0)),
        (js_bound(scores), ref_js(s)),
    ]
    for got, want in cases:
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-6), (got, want)


def test_infonce_never_exceeds_log_k_even_for_huge_scores():
    scores = torch.eye(16) * 1e4 + torch.randn(16, 16)
    assert infonce_bound(scores) <= math.log(16) + 1e-6


def test_nwj_is_computed_in_log_space():
    scores = torch.zeros(8, 8)
    scores[0, 1] = 90.0  # exp(90) overflows float32, mean_q exp(s) = exp(90)/56 does not
    assert torch.isinf(torch.exp(scores).sum())
    assert torch.isfinite(nwj_bound(scores))


def test_smile_clip_bounds_the_negative_term():
    scores = torch.zeros(4, 4)
    scores[0, 1] = 50.0  # one huge negative score
    assert smile_bound(scores, 5.0) > smile_bound(scores, 50.0)


# ----------------------------------------------------------------------------- ground truth


GROUND_TRUTH = [(2, 0.5), (4, 1.5), (6, 2.5), (8, 3.5), (8, 4.0)]  # (d, true MI in nats)


def test_infonce_recovers_gaussian_mi_with_default_protocol():
    p = MIProtocol()
    assert p.batch_size >= 256
    estimates = []
    for d, truth in GROUND_TRUTH:
        x, y = correlated_gaussians(d, truth, n_needed(p))
        est = estimate_mi(x, y, protocol=p)
        assert est.nats <= est.cap_nats + 1e-6
        if truth <= est.cap_nats - 2:
            assert abs(est.nats - truth) <= 0.25 + 0.1 * truth, (d, truth, est)
        estimates.append(est.nats)
    assert all(a < b for a, b in itertools.pairwise(estimates)), estimates


@pytest.mark.parametrize("estimator", ["nwj", "smile"])
def test_nwj_and_smile_are_finite_and_increase_with_truth(estimator):
    p = MIProtocol(estimator=estimator, steps=200, pairs=4096, batch_size=128)
    values = []
    for truth in (0.5, 1.5, 3.0):
        est = estimate_mi(*correlated_gaussians(4, truth, n_needed(p)), protocol=p)
        assert est.estimator == estimator
        assert math.isfinite(est.nats) and math.isfinite(est.train_nats) and math.isfinite(est.std_nats)
        assert est.cap_nats == pytest.approx(math.log(128))
        values.append(est.nats)
    assert values[0] < values[1] < values[2], values


def test_identical_pairs_saturate_below_the_cap():
    p = MIProtocol(steps=200)
    x = torch.randn(n_needed(p), 8, generator=torch.Generator().manual_seed(3))
    est = estimate_mi(x, x.clone(), protocol=p)
    assert est.saturated
    assert est.nats <= est.cap_nats + 1e-6
    assert est.cap_nats == pytest.approx(math.log(256))


def test_independent_pairs_are_near_zero_and_not_saturated():
    p = MIProtocol(steps=100, pairs=2048, batch_size=128)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(n_needed(p), 4, generator=g), torch.randn(n_needed(p), 4, generator=g)
    est = estimate_mi(x, y, protocol=p)
    assert not est.saturated
    assert abs(est.nats) < 0.15


# ----------------------------------------------------------------------------- images, seeding, errors

TINY = MIProtocol(steps=5, batch_size=16, pairs=64, hidden=16, embed=8)


def tiny_images(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g)
    return x, (x + 0.1 * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1)


def test_image_pairs_give_finite_reproducible_estimates():
    x, y = tiny_images()
    first = estimate_mi(x, y, protocol=TINY)
    again = estimate_mi(x, y, protocol=TINY)
    assert isinstance(first, MIEstimate)
    assert math.isfinite(first.nats) and math.isfinite(first.train_nats) and math.isfinite(first.std_nats)
    assert first == again
    assert (first.steps, first.batch_size, first.cap_nats) == (5, 16, pytest.approx(math.log(16)))


def test_seed_changes_the_estimate_and_caller_rng_is_untouched():
    x, y = tiny_images()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = estimate_mi(x, y, protocol=TINY)
    assert torch.equal(torch.rand(3), expected_next)
    b = estimate_mi(x, y, protocol=TINY.model_copy(update={"seed": 1}))
    assert a.nats != b.nats


def test_estimator_argument_overrides_protocol():
    x, y = tiny_images()
    assert estimate_mi(x, y, estimator="smile", protocol=TINY).estimator == "smile"
    assert estimate_mi(x, y, protocol=TINY).estimator == "infonce"


def test_eval_pairs_are_whole_batches():
    assert MIProtocol().eval_pairs % MIProtocol().batch_size == 0
    assert MIProtocol(pairs=4096, batch_size=256).eval_pairs == 1024
    assert MIProtocol(pairs=300, batch_size=256).eval_pairs == 256  # at least one batch
    assert MIProtocol(pairs=1000, batch_size=96).eval_pairs == 192


def test_bad_inputs_raise_clear_errors():
    x, y = tiny_images()
    with pytest.raises(ValueError, match="need at least"):
        estimate_mi(x[:31], y[:31], protocol=TINY)  # eval_pairs 16 + one batch of 16
    with pytest.raises(ValueError, match="paired"):
        estimate_mi(x, y[:-1], protocol=TINY)
    with pytest.raises(ValueError, match="unknown MI estimator"):
        estimate_mi(x, y, estimator="mine", protocol=TINY)
    with pytest.raises(ValueError, match="vectors"):
        estimate_mi(x[:, 0], y[:, 0], protocol=TINY)


def test_protocol_sizes_are_validated_with_the_spec():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="mi.pairs"):
        MIProtocol(pairs=64, batch_size=128)


# ----------------------------------------------------------------------------- view_mi


class _FakeSource:
    """Stands in for a trainers.pairs.PairSource: v1 = image, v2 = image + seeded noise."""

    def __init__(self, images):
        self.images, self.calls = images, []

    def __call__(self, idx, need_second=True):
        self.calls.append(idx.shape[0])
        v = self.images[idx].float() / 255
        return v, (v + 0.05 * torch.randn_like(v)).clamp(0, 1)


def test_view_mi_draws_chunked_seeded_views():
    images = torch.randint(0, 256, (200, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    source = _FakeSource(images)
    a = view_mi(source, protocol=TINY, chunk=50)
    assert source.calls == [50, 30]  # pairs + eval_pairs = 80 images, in chunks
    assert a == view_mi(source, protocol=TINY, chunk=50)
    few = view_mi(_FakeSource(images[:20]), protocol=TINY)  # fewer images than pairs: with replacement
    assert math.isfinite(few.nats)


def test_view_mi_with_the_real_pipeline():
    from trainers.config import ViewsConfig
    from trainers.pairs.base import PairSource
    from trainers.views import ViewPipeline

    images = torch.randint(0, 256, (100, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    strong = PairSource(images, ViewPipeline(ViewsConfig(strength=1.0), 3))
    a = view_mi(strong, protocol=TINY)
    assert math.isfinite(a.nats)
    assert a == view_mi(strong, protocol=TINY)
    assert math.isfinite(view_mi(PairSource(images), protocol=TINY).nats)  # identical views
