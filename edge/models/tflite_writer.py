"""A minimal TFLite flatbuffer writer for the operators our converted models need (dlib ResNet, MiniFASNet).

Written from the published TFLite schema (``tensorflow/lite/schema/schema.fbs``): table field ids,
enum values and option tables are the schema's; only the handful used here are encoded. Every
buffer holding weights is 16-byte aligned as the official converter does, and buffer 0 is the
empty sentinel the runtime expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np

# TensorType
FLOAT32 = 0
INT32 = 2
INT8 = 9
# BuiltinOperator
OP_ADD = 0
OP_AVERAGE_POOL_2D = 1
OP_CONV_2D = 3
OP_DEPTHWISE_CONV_2D = 4
OP_FULLY_CONNECTED = 9
OP_LOGISTIC = 14
OP_MAX_POOL_2D = 17
OP_MUL = 18
OP_PAD = 34
OP_MEAN = 40
OP_PRELU = 54
# BuiltinOptions union tags
OPT_CONV2D = 1
OPT_DEPTHWISE_CONV2D = 2
OPT_POOL2D = 5
OPT_FULLY_CONNECTED = 8
OPT_ADD = 11
OPT_MUL = 21
OPT_PAD = 22
OPT_REDUCER = 27
# Padding / ActivationFunctionType
SAME = 0
VALID = 1
ACT_NONE = 0
ACT_RELU = 1

_NUMPY_TYPES = {FLOAT32: np.float32, INT32: np.int32, INT8: np.int8}


@dataclass
class _Tensor:
    shape: tuple[int, ...]
    dtype: int
    name: str
    buffer: int = 0
    scales: list[float] | None = None
    quant_dim: int = 0


@dataclass
class _Op:
    code: int
    version: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: dict[int, tuple[str, int]]  # field id -> (kind, value), kind in {"b", "i"}


@dataclass
class Graph:
    """A single-subgraph model under construction."""

    tensors: list[_Tensor] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    ops: list[_Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def activation(self, shape: tuple[int, ...], name: str) -> int:
        self.tensors.append(_Tensor(tuple(shape), FLOAT32, name))
        return len(self.tensors) - 1

    def constant(self, array: np.ndarray, name: str, dtype: int = FLOAT32, scales: list[float] | None = None) -> int:
        data = np.ascontiguousarray(array, dtype=_NUMPY_TYPES[dtype])
        self.buffers.append(data.tobytes())
        self.tensors.append(_Tensor(tuple(data.shape), dtype, name, len(self.buffers) - 1, scales))
        return len(self.tensors) - 1

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.tensors[tensor].shape

    def op(
        self,
        code: int,
        inputs: list[int],
        out_shape: tuple[int, ...],
        name: str,
        options_type: int = 0,
        options: dict[int, tuple[str, int]] | None = None,
        version: int = 1,
    ) -> int:
        out = self.activation(out_shape, name)
        self.ops.append(_Op(code, version, inputs, [out], options_type, options or {}))
        return out

    # ------------------------------------------------------------------ serialisation

    def serialise(self, description: str) -> bytes:
        b = flatbuffers.Builder(1 << 20)

        def int_vector(values: list[int], width: int = 4) -> int:
            b.StartVector(width, len(values), width)
            for v in reversed(values):
                if width == 4:
                    b.PrependInt32(v)
                else:
                    b.PrependInt64(v)
            return int(b.EndVector())

        def float_vector(values: list[float]) -> int:
            b.StartVector(4, len(values), 4)
            for v in reversed(values):
                b.PrependFloat32(v)
            return int(b.EndVector())

        def offset_vector(offsets: list[int]) -> int:
            b.StartVector(4, len(offsets), 4)
            for o in reversed(offsets):
                b.PrependUOffsetTRelative(o)
            return int(b.EndVector())

        # Buffers (table Buffer { data:[ubyte] (force_align: 16) })
        buffer_offsets = []
        for data in self.buffers:
            if data:
                b.StartVector(1, len(data), 16)
                b.head = b.head - len(data)
                b.Bytes[b.head : b.head + len(data)] = data
                b.vectorNumElems = len(data)
                vec = int(b.EndVector())
                b.StartObject(3)
                b.PrependUOffsetTRelativeSlot(0, vec, 0)
            else:
                b.StartObject(3)
            buffer_offsets.append(int(b.EndObject()))

        # Tensors
        tensor_offsets = []
        for t in self.tensors:
            name = b.CreateString(t.name)
            shape = int_vector(list(t.shape))
            quant = 0
            if t.scales is not None:
                scale = float_vector(t.scales)
                zero = int_vector([0] * len(t.scales), width=8)
                b.StartObject(7)
                b.PrependUOffsetTRelativeSlot(2, scale, 0)
                b.PrependUOffsetTRelativeSlot(3, zero, 0)
                b.PrependInt32Slot(6, t.quant_dim, 0)
                quant = int(b.EndObject())
            b.StartObject(5)
            b.PrependUOffsetTRelativeSlot(0, shape, 0)
            b.PrependInt8Slot(1, t.dtype, 0)
            b.PrependUint32Slot(2, t.buffer, 0)
            b.PrependUOffsetTRelativeSlot(3, name, 0)
            if quant:
                b.PrependUOffsetTRelativeSlot(4, quant, 0)
            tensor_offsets.append(int(b.EndObject()))

        # Operator codes
        codes: list[tuple[int, int]] = []
        for o in self.ops:
            if (o.code, o.version) not in codes:
                codes.append((o.code, o.version))
        code_offsets = []
        for code, version in codes:
            b.StartObject(4)
            b.PrependInt8Slot(0, code, 0)  # deprecated_builtin_code (all ours are < 127)
            b.PrependInt32Slot(2, version, 1)
            b.PrependInt32Slot(3, code, 0)
            code_offsets.append(int(b.EndObject()))

        # Operators
        op_offsets = []
        for o in self.ops:
            ins = int_vector(o.inputs)
            outs = int_vector(o.outputs)
            options = 0
            if o.options_type:
                b.StartObject(max([*o.options, -1]) + 1 if o.options else 0)
                for fid, (kind, value) in sorted(o.options.items()):
                    if kind == "b":
                        b.PrependInt8Slot(fid, value, -1)  # always written (no default elision)
                    else:
                        b.PrependInt32Slot(fid, value, -(2**31))
                options = int(b.EndObject())
            b.StartObject(5)
            b.PrependUint32Slot(0, codes.index((o.code, o.version)), 0xFFFFFFFF)
            b.PrependUOffsetTRelativeSlot(1, ins, 0)
            b.PrependUOffsetTRelativeSlot(2, outs, 0)
            if o.options_type:
                b.PrependUint8Slot(3, o.options_type, 0)
                b.PrependUOffsetTRelativeSlot(4, options, 0)
            op_offsets.append(int(b.EndObject()))

        tensors_vec = offset_vector(tensor_offsets)
        inputs_vec = int_vector(self.inputs)
        outputs_vec = int_vector(self.outputs)
        ops_vec = offset_vector(op_offsets)
        sg_name = b.CreateString("main")
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, tensors_vec, 0)
        b.PrependUOffsetTRelativeSlot(1, inputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, outputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(3, ops_vec, 0)
        b.PrependUOffsetTRelativeSlot(4, sg_name, 0)
        subgraph = int(b.EndObject())

        codes_vec = offset_vector(code_offsets)
        subgraphs_vec = offset_vector([subgraph])
        desc = b.CreateString(description)
        buffers_vec = offset_vector(buffer_offsets)
        b.StartObject(5)
        b.PrependUint32Slot(0, 3, 0)
        b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, subgraphs_vec, 0)
        b.PrependUOffsetTRelativeSlot(3, desc, 0)
        b.PrependUOffsetTRelativeSlot(4, buffers_vec, 0)
        model = int(b.EndObject())
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())
