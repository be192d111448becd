"""The authors' architectures (shared/spec/subspace-match.md section 5), configurable for CPU runs.

* ``vgg8/11/13/16/19`` and ``*_bn``: per config entry Conv3x3 (pad 1) -> [BatchNorm] -> ReLU, ``'M'``
  = MaxPool 2x2; classifier Linear(512, 512)-ReLU-Linear(512, 512)-ReLU-Linear(512, classes), no
  dropout. Five pools take 32x32 to 1x1, so VGG needs ``image_size`` to be a multiple of 32
  (28x28 images are padded to 32 by :func:`~repmatch.nets.datasets.load_dataset`).
* ``plain20/32/44/56``: CIFAR ResNets (He et al. 2016, section 4.2) *without* shortcuts; three stages
  of (depth - 2) / 6 blocks Conv-BN-ReLU-Conv-BN-ReLU at 16/32/64 channels, global average pool, FC.
* ``resnet20/32/44/56``: the same with identity shortcuts (option A: stride-2 subsampling and zero
  channels where the shape changes, so shortcuts have no parameters).
* ``smallcnn``: Conv(32)-ReLU-Conv(32)-ReLU-MaxPool-Conv(64)-ReLU-Conv(64)-ReLU-MaxPool-FC(128)-ReLU-FC,
  for the 8x8 digits and 28x28 images.

``width`` multiplies every channel count and the VGG/smallcnn hidden FC sizes (rounded, at least 1),
so ``width=0.25`` gives a VGG with 16..128 channels that trains on a CPU.

Every ReLU is its own module (never reused), so hooking ``ReLU`` modules captures each activation
layer once. Initialisation (the authors'): Kaiming-normal conv weights (fan_in, ReLU gain), zero
biases, Linear weights N(0, 0.01^2), BatchNorm gamma 1 and beta 0.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformers import TRANSFORMER_ARCHS, build_transformer

__all__ = ["ARCHITECTURES", "VGG_CONFIGS", "build_model", "init_weights", "VGG", "CifarResNet", "SmallCNN",
           "input_size_for"]

VGG_CONFIGS = {
    "vgg8": [64, "M", 128, "M", 256, "M", 512, "M", 512, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

ARCHITECTURES = tuple(
    [k for k in VGG_CONFIGS] + [k + "_bn" for k in VGG_CONFIGS]
    + [f"plain{d}" for d in (20, 32, 44, 56)] + [f"resnet{d}" for d in (20, 32, 44, 56)] + ["smallcnn"]
    + list(TRANSFORMER_ARCHS)  # repmatch.nets.transformers: vit-tiny (images), char-tiny (text)
)


def _scale(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class VGG(nn.Module):
    """VGG for CIFAR-sized inputs: ``features`` (conv blocks) then ``classifier`` (3 Linear layers)."""

    def __init__(self, config, *, batch_norm=False, num_classes=10, in_channels=3, image_size=32, width=1.0,
                 hidden=512):
        super().__init__()
        layers, c, size = [], in_channels, image_size
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                size //= 2
            else:
                out = _scale(v, width)
                layers.append(nn.Conv2d(c, out, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU(inplace=True))
                c = out
        if size < 1:
            raise ValueError(f"image_size={image_size} is too small for {sum(v == 'M' for v in config)} max-pools; "
                             "use image_size=32 (or a multiple of 32)")
        self.features = nn.Sequential(*layers)
        h = _scale(hidden, width)
        self.classifier = nn.Sequential(
            nn.Linear(c * size * size, h), nn.ReLU(inplace=True),
            nn.Linear(h, h), nn.ReLU(inplace=True),
            nn.Linear(h, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class _Block(nn.Module):
    """Conv-BN-ReLU-Conv-BN (+ shortcut) -ReLU; ``shortcut=False`` gives the authors' plain block."""

    def __init__(self, c_in, c_out, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.shortcut = shortcut
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.shortcut:
            s = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.extra > 0:  # option A: zero channels, split evenly front and back
                s = F.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
            out = out + s
        return self.relu2(out)


class CifarResNet(nn.Module):
    """CIFAR ResNet (depth 6n+2) with or without shortcuts: stem, ``layer1..3``, pool, ``fc``."""

    def __init__(self, depth, *, shortcut=True, num_classes=10, in_channels=3, width=1.0):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, 56), got {depth}")
        n = (depth - 2) // 6
        widths = [_scale(16, width), _scale(32, width), _scale(64, width)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        c = widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_Block(c, w, stride, shortcut))
                c = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class SmallCNN(nn.Module):
    """Four 3x3 convs (32, 32, pool, 64, 64, pool) and FC(128): trains on the digits in well under a second an epoch."""

    def __init__(self, *, num_classes=10, in_channels=1, image_size=8, width=1.0, hidden=128):
        super().__init__()
        c1, c2, h = _scale(32, width), _scale(64, width), _scale(hidden, width)
        size = image_size // 2 // 2
        if size < 1:
            raise ValueError(f"image_size={image_size} is too small for smallcnn (two max-pools); need at least 4")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(c2 * size * size, h), nn.ReLU(inplace=True),
                                        nn.Linear(h, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def init_weights(model: nn.Module) -> nn.Module:
    """The authors' initialisation, in place (spec section 5).

    Kaiming-normal conv weights (fan_in, ReLU gain), zero biases, Linear N(0, 0.01^2), BatchNorm (1, 0).

    Parameters
    ----------
    model : torch.nn.Module
        Its Conv, Linear and BatchNorm modules are re-initialised from the global torch RNG.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def input_size_for(arch: str, image_size: int) -> int:
    """The image size ``arch`` should be fed for images of ``image_size``: VGG rounds up to a multiple of 32.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`.
    image_size : int
        The dataset's native image side.

    Returns
    -------
    int
        VGG: the next multiple of 32 (at least 32); smallcnn: at least 4; others: ``image_size``.

    Raises
    ------
    ValueError
        When ``arch`` is unknown.
    """
    arch = _check_arch(arch)
    if arch.startswith("vgg"):
        return max(32, -(-image_size // 32) * 32)
    if arch == "smallcnn":
        return max(4, image_size)
    return image_size  # the transformers take the native size (vit-tiny: a multiple of its patch size)


def _spelling(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _check_arch(arch) -> str:
    """The canonical name of ``arch``; case, '-' and '_' are ignored (``small-cnn`` is ``smallcnn``)."""
    canonical = {_spelling(a): a for a in ARCHITECTURES}
    if not isinstance(arch, str) or _spelling(arch) not in canonical:
        raise ValueError(f"arch must be one of {ARCHITECTURES}; got {arch!r}")
    return canonical[_spelling(arch)]


def build_model(arch: str, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                width: float = 1.0, seed: int | None = None, **options) -> nn.Module:
    """Build and initialise one of :data:`ARCHITECTURES`.

    With ``seed`` the initial weights are a function of the seed alone (the global torch RNG is
    forked, so the caller's random state is left untouched); without it they come from the global RNG.
    ``options`` configure the transformers (:mod:`repmatch.nets.transformers`): ``depth``, ``dim``,
    ``heads``, ``mlp_ratio``, ``patch_size`` (vit-tiny), ``context`` (char-tiny, whose
    ``num_classes`` is the vocabulary size); the CNNs take none.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES` (case, "-" and "_" ignored).
    num_classes : int, default 10
        Outputs of the classifier.
    in_channels : int, default 3
        Input image channels.
    image_size : int, default 32
        Input image side (see :func:`input_size_for`).
    width : float, default 1.0
        Multiplier of every layer's width (> 0).
    seed : int, optional
        Seed of the initial weights (default: the global torch RNG).
    **options
        Transformer options, as above.

    Returns
    -------
    torch.nn.Module
        The initialised model (in training mode, on the CPU).

    Raises
    ------
    ValueError
        When ``arch`` is unknown, ``num_classes``, ``in_channels`` or ``image_size`` is not a positive
        integer, ``width`` is not positive, or a CNN is given options.
    """
    from .._validate import check_positive_int

    arch = _check_arch(arch)
    num_classes = check_positive_int(num_classes, "num_classes")
    in_channels = check_positive_int(in_channels, "in_channels")
    image_size = check_positive_int(image_size, "image_size")
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
        raise ValueError(f"width must be a positive number, got {width!r}")

    if options and arch not in TRANSFORMER_ARCHS:
        raise ValueError(f"{arch} takes no options {sorted(options)} (only the transformers {TRANSFORMER_ARCHS} do)")

    def make():
        if arch in TRANSFORMER_ARCHS:  # their own initialisation (repmatch.nets.transformers)
            return build_transformer(arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                                     width=width, **options)
        if arch.startswith("vgg"):
            name, bn = (arch[:-3], True) if arch.endswith("_bn") else (arch, False)
            return VGG(VGG_CONFIGS[name], batch_norm=bn, num_classes=num_classes, in_channels=in_channels,
                       image_size=image_size, width=width)
        if arch.startswith("plain") or arch.startswith("resnet"):
            depth = int(arch[len("plain"):] if arch.startswith("plain") else arch[len("resnet"):])
            return CifarResNet(depth, shortcut=arch.startswith("resnet"), num_classes=num_classes,
                               in_channels=in_channels, width=width)
        return SmallCNN(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)

    def made():
        model = make()
        return model if arch in TRANSFORMER_ARCHS else init_weights(model)

    if seed is None:
        return made()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return made()
