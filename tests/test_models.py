"""Encoders: the ConvNet's stages and representation size, and the ResNet-18 CIFAR stem."""

import pytest
import torch

from tests.conftest import tiny_train_config
from trainers.config import ModelConfig
from trainers.data import load_data
from trainers.evaluate import extract_features
from trainers.models import ConvNet, Encoder
from trainers.train import Trainer


@pytest.mark.parametrize(("width", "depth"), [(16, 3), (16, 4), (8, 1), (24, 2)])
def test_convnet_stages_double_channels_and_halve_size(width, depth):
    net = ConvNet(1, width, depth)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [width * 2**i for i in range(depth)]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == depth - 1
    out = net(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, width * 2 ** (depth - 1)) == (3, net.out_dim)


def test_encoder_projection_is_normalised_and_features_are_the_backbone():
    torch.manual_seed(0)
    enc = Encoder(ModelConfig(width=8, depth=2, proj_dim=16, proj_hidden=32), in_channels=3).eval()
    x = torch.rand(4, 3, 32, 32)
    assert enc.features(x).shape == (4, 16)
    z = enc(x)
    assert z.shape == (4, 16)
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


def test_resnet18_cifar_stem_keeps_resolution():
    enc = Encoder(ModelConfig(backbone="resnet18_cifar"), in_channels=3).eval()
    assert enc.backbone.conv1.stride == (1, 1) and isinstance(enc.backbone.maxpool, torch.nn.Identity)
    assert enc.features(torch.rand(2, 3, 32, 32)).shape == (2, 512)


def test_channels_last_is_a_layout_change_only():
    """NHWC (the default, for oneDNN's speed) must train the same model as NCHW: same losses and
    features up to float summation order, with the weights actually stored NHWC."""
    def run(channels_last: bool) -> tuple[Trainer, list[float]]:
        cfg = tiny_train_config(seed=3, channels_last=channels_last)
        trainer = Trainer(cfg, load_data(cfg.dataset))
        return trainer, [trainer.step(torch.arange(i * 32, (i + 1) * 32)).item() for i in range(3)]

    nhwc, nhwc_losses = run(True)
    nchw, nchw_losses = run(False)
    conv = nhwc.encoder.backbone.features[-3][0].weight  # the last stage's conv
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert nchw.encoder.backbone.features[-3][0].weight.is_contiguous()
    assert nhwc_losses == pytest.approx(nchw_losses, rel=1e-4)
    images = nhwc.data.test_x
    assert torch.allclose(extract_features(nhwc.encoder, images), extract_features(nchw.encoder, images), atol=1e-3)


def test_encoder_declares_its_layout_and_projection_size():
    """The layout is the encoder's own attribute (evaluation reads it), set where it is built."""
    nhwc = Encoder(ModelConfig(width=8, proj_dim=16, proj_hidden=32), in_channels=1, channels_last=True)
    assert nhwc.channels_last is True and nhwc.proj_dim == 16
    assert nhwc.backbone.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = Encoder(ModelConfig(width=8), in_channels=1)
    assert plain.channels_last is False and plain.backbone.features[0][0].weight.is_contiguous()
