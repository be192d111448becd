"""The authors' architectures: shapes, layer counts, initialisation, seeding."""

import math

import pytest

torch = pytest.importorskip("torch")
# Tiny models: extra threads only add synchronisation overhead (and contention on shared CI runners).
torch.set_num_threads(1)
nn = torch.nn

from repmatch.nets import ARCHITECTURES, build_model, input_size_for  # noqa: E402
from repmatch.nets.transformers import TRANSFORMER_ARCHS  # noqa: E402

CNN_ARCHS = [a for a in ARCHITECTURES if a not in TRANSFORMER_ARCHS]  # transformers: tests/test_transformers.py


@pytest.mark.parametrize("arch", CNN_ARCHS)
def test_every_architecture_builds_and_runs(arch):
    m = build_model(arch, width=0.125, in_channels=1, num_classes=7, seed=0)
    out = m(torch.randn(3, 1, 32, 32))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def relu_shapes(model, x):
    shapes = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape[1:])))
             for mod in model.modules() if isinstance(mod, nn.ReLU)]
    model(x)
    for h in hooks:
        h.remove()
    return shapes


def test_vgg16_layers_match_the_paper():
    # 13 conv ReLUs (64,64 @32; 128,128 @16; 256x3 @8; 512x3 @4; 512x3 @2) and 2 FC ReLUs (spec section 5)
    m = build_model("vgg16", width=0.125, seed=0)
    shapes = relu_shapes(m, torch.randn(2, 3, 32, 32))
    expected = ([(8, 32, 32)] * 2 + [(16, 16, 16)] * 2 + [(32, 8, 8)] * 3 + [(64, 4, 4)] * 3 + [(64, 2, 2)] * 3
                + [(64,)] * 2)
    assert shapes == expected
    full = build_model("vgg16", seed=0)
    convs = [mod.out_channels for mod in full.modules() if isinstance(mod, nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    linears = [(mod.in_features, mod.out_features) for mod in full.modules() if isinstance(mod, nn.Linear)]
    assert linears == [(512, 512), (512, 512), (512, 10)]
    assert not any(isinstance(mod, (nn.Dropout, nn.BatchNorm2d)) for mod in full.modules())
    assert sum(isinstance(mod, nn.BatchNorm2d) for mod in build_model("vgg16_bn", width=0.125).modules()) == 13


@pytest.mark.parametrize("arch,convs", [("vgg8", 5), ("vgg11", 8), ("vgg13", 10), ("vgg19", 16)])
def test_vgg_depths(arch, convs):
    m = build_model(arch, width=0.125)
    assert sum(isinstance(mod, nn.Conv2d) for mod in m.modules()) == convs


def test_vgg_rejects_small_images_and_input_size_for():
    with pytest.raises(ValueError, match="image_size=32"):
        build_model("vgg11", image_size=28)
    assert input_size_for("vgg11", 28) == 32 and input_size_for("vgg11", 8) == 32
    assert input_size_for("resnet20", 28) == 28 and input_size_for("smallcnn", 8) == 8


def test_plain_and_resnet_differ_only_by_shortcuts():
    plain, res = build_model("plain20", width=0.5, seed=0), build_model("resnet20", width=0.5, seed=0)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in res.parameters())
    res.load_state_dict(plain.state_dict())
    plain.eval(), res.eval()
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(plain(x), res(x))
    # 1 stem + 2 per block, 9 blocks; channels 16/32/64 at 32/16/8
    shapes = relu_shapes(build_model("plain20", seed=0), x)
    assert len(shapes) == 19 and shapes[0] == (16, 32, 32) and shapes[-1] == (64, 8, 8)
    assert len(relu_shapes(build_model("plain56", width=0.25), x)) == 55


def test_every_relu_module_used_once():
    # hooking ReLU modules must capture each activation layer once: no module reused in forward
    for arch in ("vgg11_bn", "resnet20", "smallcnn"):
        m = build_model(arch, width=0.125, in_channels=3)
        calls = {}
        hooks = [mod.register_forward_hook(lambda mod, i, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
                 for n, mod in m.named_modules() if isinstance(mod, nn.ReLU)]
        m(torch.randn(1, 3, 32, 32))
        for h in hooks:
            h.remove()
        assert set(calls.values()) == {1} and len(calls) == len(hooks)


def test_authors_initialisation():
    m = build_model("vgg11_bn", seed=0)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            fan_in = mod.in_channels * 9
            assert abs(float(mod.weight.detach().std()) / math.sqrt(2 / fan_in) - 1) < 0.1
            assert mod.bias is None  # conv bias is redundant before BN
        if isinstance(mod, nn.Linear):
            assert abs(float(mod.weight.detach().std()) - 0.01) < 0.001 and float(mod.bias.detach().abs().max()) == 0
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    plain = build_model("vgg11", seed=0)
    assert all(float(mod.bias.detach().abs().max()) == 0 for mod in plain.modules() if isinstance(mod, nn.Conv2d))


def test_seed_determines_weights_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = (build_model("resnet20", width=0.25, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_width_scales_channels():
    m = build_model("vgg11", width=0.25)
    assert [mod.out_channels for mod in m.modules() if isinstance(mod, nn.Conv2d)] == [16, 32, 64, 64, 128, 128, 128, 128]
    assert m.classifier[0].out_features == 128


@pytest.mark.parametrize("kwargs,match", [
    ({"arch": "vgg12"}, "vgg11"),
    ({"arch": "vgg11", "width": 0}, "width"),
    ({"arch": "vgg11", "num_classes": 0}, "num_classes"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    arch = kwargs.pop("arch")
    with pytest.raises(ValueError, match=match):
        build_model(arch, **kwargs)


def test_architecture_names_ignore_case_dashes_and_underscores():
    from repmatch.nets.architectures import _check_arch

    assert _check_arch("small-cnn") == "smallcnn"
    assert _check_arch("VGG11-BN") == "vgg11_bn"
    assert _check_arch("resnet_20") == "resnet20"
    with pytest.raises(ValueError, match="arch must be one of"):
        _check_arch("vgg-12")
