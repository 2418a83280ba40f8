"""Method state updates (MoCo queue, memory bank, EMA) against hand-computed references, and the
post-step contract: a loss returns what must run after the optimiser step, and the trainer runs it."""

import copy

import torch
import torch.nn.functional as F

from tests.conftest import tiny_train_config
from trainers.config import ModelConfig
from trainers.methods import build_method
from trainers.methods.ir import InstanceDiscrimination
from trainers.methods.knobs import IRKnobs, MoCoKnobs, SimCLRKnobs
from trainers.methods.moco import MoCo
from trainers.methods.simclr import SimCLR
from trainers.models import Encoder
from trainers.objectives import nt_xent
from trainers.train import Trainer


def tiny_encoder():
    torch.manual_seed(0)
    return Encoder(ModelConfig(width=8, proj_dim=8, proj_hidden=16), in_channels=1)


def test_registry_builds_each_method_from_its_knobs():
    for knobs, cls in ((SimCLRKnobs(), SimCLR), (MoCoKnobs(queue_size=16), MoCo), (IRKnobs(), InstanceDiscrimination)):
        assert type(build_method(tiny_encoder(), knobs, n_train=10)) is cls


def test_moco_queue_wraps_around():
    moco = MoCo(tiny_encoder(), MoCoKnobs(queue_size=16), n_train=100)
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
    moco = MoCo(tiny_encoder(), MoCoKnobs(momentum=0.9, queue_size=32), n_train=10)
    before = [p.clone() for p in moco.key_encoder.parameters()]
    with torch.no_grad():
        for p in moco.encoder.parameters():
            p.add_(1.0)
    moco.momentum_update()
    for b, k, q in zip(before, moco.key_encoder.parameters(), moco.encoder.parameters()):
        assert torch.allclose(k, 0.9 * b + 0.1 * q, atol=1e-6)


def test_memory_bank_update():
    ir = InstanceDiscrimination(tiny_encoder(), IRKnobs(bank_momentum=0.5, num_negatives=4), n_train=20)
    old = ir.bank.clone()
    idx = torch.tensor([3, 7])
    z = F.normalize(torch.randn(2, 8), dim=1)
    ir.update_bank(idx, z)
    for row, i in enumerate(idx.tolist()):
        want = 0.5 * old[i] + 0.5 * z[row]
        assert torch.allclose(ir.bank[i], want / want.norm(), atol=1e-6)
    untouched = [i for i in range(20) if i not in (3, 7)]
    assert torch.equal(ir.bank[untouched], old[untouched])


def test_ir_loss_updates_bank_only_after_the_step_and_is_finite():
    ir = InstanceDiscrimination(tiny_encoder(), IRKnobs(num_negatives=8), n_train=20)
    old = ir.bank.clone()
    x = torch.rand(4, 1, 16, 16)
    idx = torch.tensor([0, 1, 2, 3])
    result = ir.loss(x, None, idx, 0.1, 0.5)
    assert torch.isfinite(result.loss)
    result.loss.backward()
    assert torch.equal(ir.bank, old)  # nothing changed before the step
    result.after_step()
    assert not torch.equal(ir.bank[:4], old[:4]) and torch.equal(ir.bank[4:], old[4:])


def test_simclr_loss_is_nt_xent_and_needs_no_post_step():
    enc = tiny_encoder().eval()
    x1, x2 = torch.rand(5, 1, 16, 16), torch.rand(5, 1, 16, 16)
    got = SimCLR(enc, SimCLRKnobs(temperature=0.3), 5).loss(x1, x2, torch.arange(5), 0.0, 1.0)
    assert torch.allclose(got.loss, nt_xent(enc(x1), enc(x2), 0.3)) and got.after_step is None


def test_moco_step_backpropagates_then_enqueues():
    moco = MoCo(tiny_encoder(), MoCoKnobs(queue_size=16), n_train=10)
    old = moco.queue.clone()
    result = moco.loss(torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16), torch.arange(4), 0.0, 0.5)
    result.loss.backward()  # the queue used by the loss must not have been modified in place yet
    assert torch.equal(moco.queue, old)
    result.after_step()
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
    knobs = MoCoKnobs(queue_size=16, temperature=0.3, symmetric=True)
    moco = MoCo(tiny_encoder(), knobs, n_train=10).eval()
    x1, x2 = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    result = moco.loss(x1, x2, torch.arange(4), 0.0, 1.0)
    want = (moco_one_way_reference(moco, x1, x2, 0.3) + moco_one_way_reference(moco, x2, x1, 0.3)) / 2
    assert torch.allclose(result.loss, want, atol=1e-5)
    one_way = MoCo(tiny_encoder(), knobs.model_copy(update={"symmetric": False}), n_train=10).eval()
    assert torch.allclose(one_way.loss(x1, x2, torch.arange(4), 0.0, 1.0).loss,
                          moco_one_way_reference(one_way, x1, x2, 0.3), atol=1e-5)
    keys = moco.key_encoder(x2)
    old = moco.queue.clone()
    result.after_step()  # the keys of view 2, as in the one-way loss
    assert torch.allclose(moco.queue[:4], keys, atol=1e-6) and torch.equal(moco.queue[4:], old[4:])


def test_shuffled_bn_normalises_keys_in_random_groups_and_queries_in_fixed_ones():
    knobs = MoCoKnobs(queue_size=16, temperature=0.3, bn_groups=2)
    moco = MoCo(tiny_encoder(), knobs, n_train=10).train()
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
    result = moco.loss(x1, x2, torch.arange(8), 0.0, 1.0)
    assert torch.allclose(result.loss, want, atol=1e-5)
    queue = moco.queue.clone()
    result.after_step()
    assert torch.allclose(moco.queue[:8], k_ref, atol=1e-5)
    # and it is not the ungrouped loss (same weights, same queue): group statistics differ
    plain = MoCo(tiny_encoder(), knobs.model_copy(update={"bn_groups": 1}), n_train=10).train()
    plain.queue.copy_(queue)
    assert not torch.allclose(plain.loss(x1, x2, torch.arange(8), 0.0, 1.0).loss, result.loss, atol=1e-4)


# ----------------------------------------------------------------------------- through the trainer's step


def trainer_for(knobs) -> Trainer:
    return Trainer(tiny_train_config().model_copy(update={"method": knobs}))


def test_trainer_step_enqueues_the_keys_and_moves_the_key_encoder_after_the_optimiser_step():
    trainer = trainer_for(MoCoKnobs(queue_size=64, momentum=0.9))
    moco = trainer.method
    idx = torch.arange(32)
    v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in trainer.pairs(idx))
    queue, ptr = moco.queue.clone(), int(moco.ptr)
    key_before = [p.clone() for p in moco.key_encoder.parameters()]
    with torch.no_grad():
        keys = copy.deepcopy(moco.key_encoder)(v2)  # the reference: view 2 through the key encoder before the step
    trainer.step(idx, (v1, v2))
    assert int(moco.ptr) == (ptr + 32) % 64
    assert torch.allclose(moco.queue[ptr:ptr + 32], keys, atol=1e-6)
    assert torch.equal(moco.queue[ptr + 32:], queue[ptr + 32:]) and torch.equal(moco.queue[:ptr], queue[:ptr])
    for b, k, q in zip(key_before, moco.key_encoder.parameters(), moco.encoder.parameters()):
        assert torch.allclose(k, 0.9 * b + 0.1 * q, atol=1e-6)  # the query encoder after the optimiser step
        assert not torch.equal(k, b)


def test_trainer_step_updates_the_memory_bank_rows_of_the_batch_only():
    trainer = trainer_for(IRKnobs(num_negatives=16, bank_momentum=0.5))
    ir = trainer.method
    idx = torch.tensor([5, 17, 40, 99] * 8)[:32].unique()
    v1, _ = trainer.pairs(idx, False)
    v1 = v1.contiguous(memory_format=torch.channels_last)
    bank = ir.bank.clone()
    with torch.no_grad():
        z = copy.deepcopy(ir.encoder)(v1)  # the encoder's projection before the step
    trainer.step(idx, (v1, None))
    want = F.normalize(0.5 * bank[idx] + 0.5 * z, dim=1)
    assert torch.allclose(ir.bank[idx], want, atol=1e-6)
    rest = torch.ones(bank.shape[0], dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(ir.bank[rest], bank[rest])
