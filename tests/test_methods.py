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
