"""Losses, ring selection and schedules against slow, obvious references written here."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from trainers.objectives import RingSchedule, conditional_nce, make_schedule, nt_xent, ring_mask, ring_sample


def ref_ring_mask(sim, lower, upper, valid):
    """Per row: list the valid candidates, sort by similarity (ties by index), keep the band."""
    b, n_all = sim.shape
    out = torch.zeros(b, n_all, dtype=torch.bool)
    for i in range(b):
        cands = [j for j in range(n_all) if valid[i, j]]
        cands.sort(key=lambda j: (-float(sim[i, j]), j))
        n = len(cands)
        lo = math.floor(lower * n)
        hi = max(math.ceil(upper * n), lo + 1)
        for r, j in enumerate(cands):
            if lo <= r < hi:
                out[i, j] = True
    return out


def ref_conditional_nce(pos, neg, mask, t):
    total = 0.0
    for i in range(pos.shape[0]):
        terms = [float(pos[i]) / t] + [float(neg[i, j]) / t for j in range(neg.shape[1]) if mask[i, j]]
        m = max(terms)
        lse = m + math.log(sum(math.exp(x - m) for x in terms))
        total += -float(pos[i]) / t + lse
    return total / pos.shape[0]


@pytest.mark.parametrize("lower,upper", [(0.0, 1.0), (0.0, 0.5), (0.1, 0.3), (0.25, 0.26), (0.5, 1.0), (0.9, 1.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ring_mask_matches_reference(lower, upper, seed):
    g = torch.Generator().manual_seed(seed)
    sim = torch.randn(6, 23, generator=g)
    valid = torch.rand(6, 23, generator=g) > 0.3
    assert torch.equal(ring_mask(sim, lower, upper, valid), ref_ring_mask(sim, lower, upper, valid))


def test_ring_mask_ties_are_broken_by_index():
    sim = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.1, 0.9]])
    valid = torch.ones_like(sim, dtype=torch.bool)
    got = ring_mask(sim, 1 / 6, 3 / 6, valid)
    assert torch.equal(got, ref_ring_mask(sim, 1 / 6, 3 / 6, valid))
    assert got.tolist() == [[True, True, False, False, False, False]]


def test_ring_mask_full_band_keeps_all_valid_and_band_of_one():
    sim = torch.randn(4, 10)
    valid = torch.rand(4, 10) > 0.2
    assert torch.equal(ring_mask(sim, 0.0, 1.0, valid), valid)
    one = ring_mask(sim, 0.0, 0.01)  # ceil(0.1) = 1: exactly the most similar candidate
    assert one.sum(1).tolist() == [1] * 4
    assert torch.equal(one.float().argmax(1), sim.argmax(1))


@pytest.mark.parametrize("seed", [0, 1])
def test_conditional_nce_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    pos, neg = torch.randn(5, generator=g), torch.randn(5, 17, generator=g)
    mask = torch.rand(5, 17, generator=g) > 0.5
    assert conditional_nce(pos, neg, mask, 0.3).item() == pytest.approx(ref_conditional_nce(pos, neg, mask, 0.3), rel=1e-5)


def test_conditional_nce_full_mask_is_infonce():
    pos, neg = torch.randn(8), torch.randn(8, 31)
    logits = torch.cat([pos[:, None], neg], 1) / 0.1
    expected = F.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
    assert torch.allclose(conditional_nce(pos, neg, torch.ones_like(neg, dtype=torch.bool), 0.1), expected, atol=1e-5)


def ref_nt_xent(z1, z2, t):
    """SimCLR's loss, written out per anchor: positive = other view, negatives = all but self and positive."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    b = z1.shape[0]
    total = 0.0
    for i in range(2 * b):
        p = (i + b) % (2 * b)
        num = math.exp(float(z[i] @ z[p]) / t)
        den = sum(math.exp(float(z[i] @ z[j]) / t) for j in range(2 * b) if j != i)
        total += -math.log(num / den)
    return total / (2 * b)


def test_nt_xent_uniform_band_is_exactly_the_plain_loss():
    z1, z2 = torch.randn(7, 5), torch.randn(7, 5)
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(ref_nt_xent(z1, z2, 0.5), rel=1e-5)
    # and the explicit band lower=0, upper=1 is the same number
    assert nt_xent(z1, z2, 0.5, 0.0, 1.0).item() == nt_xent(z1, z2, 0.5).item()


def test_nt_xent_ring_uses_only_the_band():
    z1, z2 = torch.randn(6, 4), torch.randn(6, 4)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T
    b = 6
    idx = torch.arange(2 * b)
    partner = torch.cat([idx[b:], idx[:b]])
    valid = torch.ones_like(sim, dtype=torch.bool)
    valid[idx, idx] = False
    valid[idx, partner] = False
    mask = ref_ring_mask(sim, 0.1, 0.5, valid)
    expected = ref_conditional_nce(sim[idx, partner], sim, mask, 0.2)
    assert nt_xent(z1, z2, 0.2, 0.1, 0.5).item() == pytest.approx(expected, rel=1e-5)


def test_ring_sample_draws_only_from_the_band_and_skips_excluded():
    torch.manual_seed(0)
    sim = torch.randn(4, 200)
    exclude = torch.tensor([0, 5, 199, 50])
    idx = ring_sample(sim, 0.05, 0.2, 500, exclude=exclude)
    valid = torch.ones_like(sim, dtype=torch.bool)
    valid[torch.arange(4), exclude] = False
    band = ref_ring_mask(sim, 0.05, 0.2, valid)
    for i in range(4):
        drawn = set(idx[i].tolist())
        allowed = set(band[i].nonzero().flatten().tolist())
        assert drawn <= allowed
        assert len(drawn) == len(allowed)  # 500 draws cover a band of 40
    uni = ring_sample(sim, 0.0, 1.0, 4000, exclude=exclude)
    for i in range(4):
        assert int(exclude[i]) not in set(uni[i].tolist())
        assert uni[i].min() >= 0 and uni[i].max() < 200


def test_schedules_at_chosen_steps():
    const = RingSchedule(lower=0.01, end=0.1, start=1.0, total=100, kind="constant")
    assert [const.bounds(s) for s in (0, 50, 100)] == [(0.01, 0.1)] * 3
    lin = make_schedule(0.01, 0.1, "linear", 1.0, 100)
    assert lin.bounds(0) == (0.01, 1.0)
    assert lin.bounds(50)[1] == pytest.approx(0.55)
    assert lin.bounds(100)[1] == pytest.approx(0.1)
    assert lin.bounds(1000)[1] == pytest.approx(0.1)
    step = make_schedule(0.0, 0.1, "step", 1.0, 100)
    assert [step.bounds(s)[1] for s in (0, 49, 50, 99, 200)] == [1.0, 1.0, 0.1, 0.1, 0.1]
    exp = make_schedule(0.0, 0.1, "exponential", 1.0, 100)
    assert exp.bounds(0)[1] == pytest.approx(1.0)
    assert exp.bounds(50)[1] == pytest.approx(math.sqrt(0.1))
    assert exp.bounds(100)[1] == pytest.approx(0.1)
    for sched in (lin, step, exp):
        assert all(sched.bounds(s)[0] == sched.lower for s in range(0, 120, 7))
        ups = [sched.bounds(s)[1] for s in range(120)]
        assert all(a >= b for a, b in itertools.pairwise(ups))  # the upper bound only anneals down
