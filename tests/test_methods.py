"""Method state updates (MoCo queue, memory bank, EMA) against hand-computed references."""

import torch
import torch.nn.functional as F

from trainers.config import MethodConfig, ModelConfig
from trainers.methods import InstanceDiscrimination, MoCo, SimCLR
from trainers.models import Encoder
from trainers.objectives import nt_xent


def tiny_encoder():
    torch.manual_seed(0)
    return Encoder(ModelConfig(width=8, proj_dim=8, proj_hidden=16), in_channels=1)


def test_moco_queue_wraps_around():
    moco = MoCo(tiny_encoder(), MethodConfig(name="moco", queue_size=16), n_train=100)
    moco.queue.zero_()
    keys = [F.normalize(torch.randn(6, 8), dim=1) for _ in range(3)]
    for k in keys:
        moco.enqueue(k)
    # 18 keys into 16 slots: batch1 -> 0..5, batch2 -> 6..11, batch3 -> 12..15 then 0..1
    expected = torch.zeros(16, 8)
    expected[0:6] = keys[0]
    expected[6:12] = keys[1]
    expected[12:16] = keys[2][:4]
    expected[0:2] = keys[2][4:]
    assert torch.equal(moco.queue, expected)
    assert int(moco.ptr) == 2


def test_moco_ema_update():
    moco = MoCo(tiny_encoder(), MethodConfig(name="moco", momentum=0.9, queue_size=32), n_train=10)
    before = [p.clone() for p in moco.key_encoder.parameters()]
    with torch.no_grad():
        for p in moco.encoder.parameters():
            p.add_(1.0)
    moco.after_step()
    for b, k, q in zip(before, moco.key_encoder.parameters(), moco.encoder.parameters()):
        assert torch.allclose(k, 0.9 * b + 0.1 * q, atol=1e-6)


def test_memory_bank_update():
    ir = InstanceDiscrimination(tiny_encoder(), MethodConfig(name="ir", bank_momentum=0.5, num_negatives=4), n_train=20)
    old = ir.bank.clone()
    idx = torch.tensor([3, 7])
    z = F.normalize(torch.randn(2, 8), dim=1)
    ir.update_bank(idx, z)
    for row, i in enumerate(idx.tolist()):
        want = 0.5 * old[i] + 0.5 * z[row]
        assert torch.allclose(ir.bank[i], want / want.norm(), atol=1e-6)
    untouched = [i for i in range(20) if i not in (3, 7)]
    assert torch.equal(ir.bank[untouched], old[untouched])


def test_ir_loss_updates_bank_and_is_finite():
    ir = InstanceDiscrimination(tiny_encoder(), MethodConfig(name="ir", num_negatives=8), n_train=20)
    old = ir.bank.clone()
    x = torch.rand(4, 1, 16, 16)
    idx = torch.tensor([0, 1, 2, 3])
    loss = ir.loss(x, None, idx, 0.1, 0.5)
    assert torch.isfinite(loss)
    loss.backward()
    ir.after_step()
    assert not torch.equal(ir.bank[:4], old[:4]) and torch.equal(ir.bank[4:], old[4:])


def test_simclr_loss_is_nt_xent():
    enc = tiny_encoder().eval()
    x1, x2 = torch.rand(5, 1, 16, 16), torch.rand(5, 1, 16, 16)
    got = SimCLR(enc, MethodConfig(temperature=0.3), 5).loss(x1, x2, torch.arange(5), 0.0, 1.0)
    assert torch.allclose(got, nt_xent(enc(x1), enc(x2), 0.3))


def test_moco_step_backpropagates_then_enqueues():
    moco = MoCo(tiny_encoder(), MethodConfig(name="moco", queue_size=16), n_train=10)
    old = moco.queue.clone()
    loss = moco.loss(torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16), torch.arange(4), 0.0, 0.5)
    loss.backward()  # the queue used by the loss must not have been modified in place yet
    assert torch.equal(moco.queue, old)
    moco.after_step()
    assert not torch.equal(moco.queue[:4], old[:4]) and torch.equal(moco.queue[4:], old[4:])


def moco_one_way_reference(moco: MoCo, xq: torch.Tensor, xk: torch.Tensor, t: float) -> torch.Tensor:
    """InfoNCE written per row: the positive logit first, then every queue entry."""
    q, k = moco.encoder(xq), moco.key_encoder(xk)
    total = 0.0
    for i in range(q.shape[0]):
        logits = torch.cat([(q[i] * k[i]).sum().view(1), moco.queue @ q[i]]) / t
        total = total - F.log_softmax(logits, dim=0)[0]
    return total / q.shape[0]


def test_symmetric_moco_averages_both_directions_and_enqueues_one_key_per_image():
    cfg = MethodConfig(name="moco", queue_size=16, temperature=0.3, symmetric=True)
    moco = MoCo(tiny_encoder(), cfg, n_train=10).eval()
    x1, x2 = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    got = moco.loss(x1, x2, torch.arange(4), 0.0, 1.0)
    want = (moco_one_way_reference(moco, x1, x2, 0.3) + moco_one_way_reference(moco, x2, x1, 0.3)) / 2
    assert torch.allclose(got, want, atol=1e-5)
    one_way = MoCo(tiny_encoder(), cfg.model_copy(update={"symmetric": False}), n_train=10).eval()
    assert torch.allclose(one_way.loss(x1, x2, torch.arange(4), 0.0, 1.0), moco_one_way_reference(one_way, x1, x2, 0.3), atol=1e-5)
    old = moco.queue.clone()
    moco.after_step()  # the keys of view 2, as in the one-way loss
    assert torch.allclose(moco.queue[:4], moco.key_encoder(x2), atol=1e-6) and torch.equal(moco.queue[4:], old[4:])


def test_shuffled_bn_normalises_keys_in_random_groups_and_queries_in_fixed_ones():
    cfg = MethodConfig(name="moco", queue_size=16, temperature=0.3, bn_groups=2)
    moco = MoCo(tiny_encoder(), cfg, n_train=10).train()
    x1, x2 = torch.rand(8, 1, 16, 16), torch.rand(8, 1, 16, 16)
    torch.manual_seed(5)
    perm = torch.randperm(8)  # the permutation the loss will draw next
    q_ref = torch.cat([moco.encoder(x1[:4]), moco.encoder(x1[4:])])  # batch statistics per group
    k_ref = torch.empty(8, 8)
    for group in (perm[:4], perm[4:]):
        k_ref[group] = moco.key_encoder(x2[group])
    logits = torch.cat([(q_ref * k_ref).sum(1, keepdim=True), q_ref @ moco.queue.T], dim=1) / 0.3
    want = F.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
    torch.manual_seed(5)
    got = moco.loss(x1, x2, torch.arange(8), 0.0, 1.0)
    assert torch.allclose(got, want, atol=1e-5)
    queue = moco.queue.clone()
    moco.after_step()
    assert torch.allclose(moco.queue[:8], k_ref, atol=1e-5)
    # and it is not the ungrouped loss (same weights, same queue): group statistics differ
    plain = MoCo(tiny_encoder(), cfg.model_copy(update={"bn_groups": 1}), n_train=10).train()
    plain.queue.copy_(queue)
    assert not torch.allclose(plain.loss(x1, x2, torch.arange(8), 0.0, 1.0), got, atol=1e-4)
