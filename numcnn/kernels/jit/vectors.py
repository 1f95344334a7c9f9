"""Explicit vectors for the 3x3 convolution kernels of :mod:`numcnn.kernels.jit.conv3x3`.

A convolution is fastest when a block of outputs stays in the processor's
vector registers while every input channel and kernel tap adds to it, and
each input vector loaded feeds many multiply-adds. numba's loop vectoriser
does not write that from plain loops (it broadcasts every weight into a
register of its own, and the registers do not hold them all), so this module
gives the kernels one value type and three operations that say it directly:

- a :class:`Block` is ``BLOCK`` filters times ``VECTORS`` vectors: vector
  ``(f, v)`` holds filter ``f``'s outputs at ``lanes`` neighbouring
  positions, ``v * lanes`` after the block's first, one register each (with
  AVX-512: 16 filters of one vector, 16 float32 or 8 float64 lanes; with
  AVX2: 4 filters of three vectors, 8 or 4 lanes);
- :func:`filled` starts a block at the biases,
- :func:`multiply_add` adds ``VECTORS`` input vectors times each filter's
  weight (``acc[f, v] += x[at + v * lanes:... + lanes] * w[start + f]``),
- :func:`store` writes one of the block's vectors of every filter (all its
  lanes, or some) into the output, one row a filter.

The weight gradient reads the same products the other way: its sums run over
positions, so they are kept lane by lane and added up at the end. A
:class:`TapSums` is ``TAP_FILTERS`` filters times the 3 taps of one kernel
row, one vector of partial sums each; :func:`tap_sums` starts it at zero,
:func:`multiply_add_taps` adds one vector of positions
(``sums[f, j] += g[f][q:q + lanes] * run[q + j:q + j + lanes]``) and
:func:`lane_sum` adds up one of its vectors at the end. Written out, they
keep the sums in registers of the processor's full width: left to itself,
LLVM vectorises such a loop with 32-byte vectors on Intel's AVX-512
processors (they are tuned to prefer them), half of what the registers hold.

Each is an ``@intrinsic``: a few lines that emit LLVM's vector instructions
(multiply-add, masked store), so that numba compiles a kernel loop written
with them into the registers and instructions the comments promise. The
arithmetic is that of the plain loop: one multiply-add a product (fused
where the processor has FMA), in the order the kernel calls them, so
results do not depend on threads.

The IR they build is valid in both of LLVM's pointer models: intrinsic names
are mangled by llvmlite from the types (``llvm.masked.store.v8f32.p0v8f32``
with typed pointers, ``...v8f32.p0`` with opaque ones), and every load names
the type it loads.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.datamodel import models
from numba.extending import intrinsic, register_model

from ...routes import compile_target


def _has_avx512():
    """Whether the processor numba compiles for has AVX-512 (its features as numba
    sees them: ``NUMBA_CPU_FEATURES`` when set, else the host's)."""
    return "avx512f" in compile_target()["features"]


#: Bytes in one vector register, filters in a block, and vectors a filter.
#: The block's accumulators must leave registers free for the input vectors
#: and a weight, and be enough to hide a multiply-add's latency (4 cycles, 2
#: a cycle: 8 in flight at least). AVX-512 has 32 registers of 64 bytes:
#: blocks of 16 filters of one vector. AVX2 has 16 registers of 32 bytes:
#: 4 filters of 3 vectors, 12 accumulators, 3 input vectors and a weight.
#: Each tap then loads 7 numbers for 12 multiply-adds where 8 filters of one
#: vector (the earlier block) loaded 9 for 8 and left no accumulator to
#: spare: the forward kernel of the blood-cell network's second and third
#: convolutions took 0.83-0.96x the time, the first (3 input channels) 1.20-1.25x
#: (AMD EPYC Zen 3, AVX2; docs/performance.md; blocks of 16 filters of one
#: vector spill accumulators to memory and took 1.3-1.4x).
if _has_avx512():
    VECTOR_BYTES, BLOCK, VECTORS = 64, 16, 1
else:
    VECTOR_BYTES, BLOCK, VECTORS = 32, 4, 3


class Block(types.Type):
    """``BLOCK * VECTORS`` vectors of ``lanes`` numbers of ``dtype`` each, kept in registers
    (filter ``f``'s vector ``v`` is number ``f * VECTORS + v``)."""

    def __init__(self, dtype, lanes):
        self.dtype = dtype
        self.lanes = lanes
        super().__init__(name=f"Block({dtype}, {BLOCK}x{VECTORS}x{lanes})")


@register_model(Block)
class _BlockModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        vector = ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes)
        super().__init__(dmm, fe_type, ir.ArrayType(vector, BLOCK * VECTORS))


def _flat(array_type, dtype=None):
    """Whether the operations take this array: one contiguous dimension of
    floats (the kernels pass ``reshape(-1)`` of contiguous arrays; the
    operations index its memory flat), of ``dtype`` when given."""
    return (isinstance(array_type, types.Array) and array_type.ndim == 1
            and array_type.layout == "C" and isinstance(array_type.dtype, types.Float)
            and (dtype is None or array_type.dtype == dtype))


def _pointer(context, builder, array_type, array, index, index_type):
    """The address of ``array.flat[index]`` (``array`` C-contiguous)."""
    index = context.cast(builder, index, index_type, types.intp)
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [index])


def _offset(builder, index, k):
    return builder.add(index, ir.Constant(index.type, k))


def _splat(builder, scalar, lanes):
    """``scalar`` in every lane of a vector."""
    vector = ir.VectorType(scalar.type, lanes)
    first = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar,
                                   ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(first, ir.Constant(vector, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _mangled(llvm_type):
    """A type's part of an overloaded intrinsic's name: ``v16f32``; a pointer ``p0``
    when pointers are opaque, ``p0v16f32`` when they are typed (as they print)."""
    if isinstance(llvm_type, ir.VectorType):
        return f"v{llvm_type.count}{_mangled(llvm_type.element)}"
    if isinstance(llvm_type, ir.PointerType):
        opaque = not str(llvm_type).endswith("*")
        return f"p{llvm_type.addrspace}" + ("" if opaque else _mangled(llvm_type.pointee))
    return {ir.FloatType: "f32", ir.DoubleType: "f64"}[type(llvm_type)]


def _declare(builder, name, overloaded, returns, arguments):
    """The LLVM intrinsic ``name``, its name mangled from the ``overloaded`` types."""
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(returns, arguments),
        ".".join([name] + [_mangled(t) for t in overloaded]))


@intrinsic
def filled(typingctx, values, start):
    """A block whose vectors of filter ``f`` are ``values[start + f]`` in every lane (one
    register a vector, of ``VECTOR_BYTES / itemsize`` numbers of ``values``' dtype)."""
    if not _flat(values):
        return None
    block = Block(values.dtype, VECTOR_BYTES // (values.dtype.bitwidth // 8))

    def codegen(context, builder, signature, args):
        array, index = args
        element = context.get_value_type(block.dtype)
        result = ir.Constant(
            ir.ArrayType(ir.VectorType(element, block.lanes), BLOCK * VECTORS), ir.Undefined)
        for f in range(BLOCK):
            at = _pointer(context, builder, signature.args[0], array,
                          _offset(builder, index, f), signature.args[1])
            value = _splat(builder, builder.load(at, typ=element), block.lanes)
            for v in range(VECTORS):
                result = builder.insert_value(result, value, f * VECTORS + v)
        return result
    return block(values, start), codegen


@intrinsic
def multiply_add(typingctx, block, source, at, weights, start):
    """``block[f, v] + source[at + v * lanes:... + lanes] * weights[start + f]`` for every
    filter ``f`` and vector ``v``.

    ``VECTORS`` vector loads of the input (no alignment needed), then for each
    filter its weight broadcast to all lanes and ``VECTORS`` multiply-adds
    (fused where the processor has FMA).
    """
    if not (isinstance(block, Block) and _flat(source, block.dtype)
            and _flat(weights, block.dtype)):
        return None

    def codegen(context, builder, signature, args):
        accumulators, array, index, weight_array, weight_index = args
        first = _pointer(context, builder, signature.args[1], array, index, signature.args[2])
        vector = ir.VectorType(context.get_value_type(block.dtype), block.lanes)
        step = context.get_value_type(types.intp)
        xs = [builder.load(builder.bitcast(builder.gep(first, [ir.Constant(step, v * block.lanes)]),
                                           vector.as_pointer()), align=1, typ=vector)
              for v in range(VECTORS)]                     # the input vectors, side by side
        fma = _declare(builder, "llvm.fmuladd", [vector], vector, [vector] * 3)
        for f in range(BLOCK):
            w = builder.load(_pointer(context, builder, signature.args[3], weight_array,
                                      _offset(builder, weight_index, f), signature.args[4]),
                             typ=vector.element)
            w = _splat(builder, w, block.lanes)
            for v in range(VECTORS):
                total = builder.call(fma, [xs[v], w,
                                           builder.extract_value(accumulators, f * VECTORS + v)])
                accumulators = builder.insert_value(accumulators, total, f * VECTORS + v)
        return accumulators
    return block(block, source, at, weights, start), codegen


@intrinsic
def store(typingctx, target, start, stride, block, vector_number, filters, first, end):
    """``target[start + f * stride + l] = block[f, v][l]`` for ``f < filters`` and
    ``first <= l < end``, with ``v = vector_number``.

    ``vector_number`` (0 to ``VECTORS - 1``; a larger one stores the last
    vector) may be a variable: the kernels call ``store`` in a loop over
    ``range(VECTORS)``, which the compiler unrolls, and the choice of vector
    (a chain of selects) then folds away.

    A whole vector a filter when the lanes are all of the block's, else a
    masked store of those lanes (the others are not touched, so ``start`` may
    lie before the array as long as lane ``first`` does not); filters past
    ``filters`` (the zero filters that pad a layer's filters to whole blocks)
    are not written.
    """
    if not (isinstance(block, Block) and _flat(target, block.dtype)):
        return None

    def codegen(context, builder, signature, args):
        array, start, stride, accumulators, number, filters, first, end = args
        start, stride, number, filters, first, end = (
            context.cast(builder, value, value_type, types.intp)
            for value, value_type in zip((start, stride, number, filters, first, end),
                                         signature.args[1:3] + signature.args[4:]))
        lanes = block.lanes
        vector = ir.VectorType(context.get_value_type(block.dtype), lanes)
        lane_numbers = ir.Constant(ir.VectorType(first.type, lanes), list(range(lanes)))
        mask = builder.and_(builder.icmp_signed(">=", lane_numbers, _splat(builder, first, lanes)),
                            builder.icmp_signed("<", lane_numbers, _splat(builder, end, lanes)))
        masked_store = _declare(builder, "llvm.masked.store", [vector, vector.as_pointer()],
                                ir.VoidType(),
                                [vector, vector.as_pointer(), ir.IntType(32), mask.type])
        whole = builder.and_(builder.icmp_signed("==", first, ir.Constant(first.type, 0)),
                             builder.icmp_signed("==", end, ir.Constant(end.type, lanes)))
        for f in range(BLOCK):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(filters.type, f), filters),
                                 likely=True):
                row = builder.add(start, builder.mul(stride, ir.Constant(stride.type, f)))
                at = builder.bitcast(builder.gep(
                    context.make_array(signature.args[0])(context, builder, array).data, [row]),
                    vector.as_pointer())
                value = builder.extract_value(accumulators, f * VECTORS + VECTORS - 1)
                for v in range(VECTORS - 2, -1, -1):     # the vector of number ``number``
                    value = builder.select(
                        builder.icmp_signed("==", number, ir.Constant(number.type, v)),
                        builder.extract_value(accumulators, f * VECTORS + v), value)
                with builder.if_else(whole, likely=True) as (all_lanes, some_lanes):
                    with all_lanes:
                        builder.store(value, at, align=1)
                    with some_lanes:
                        builder.call(masked_store, [value, at, ir.Constant(ir.IntType(32), 1), mask])
        return context.get_dummy_value()
    return (types.none(target, start, stride, block, vector_number, filters, first, end),
            codegen)


#: Filters a :class:`TapSums` holds, each with the 3 taps of one kernel row: 12
#: vectors of sums, each position vector loaded feeding 4 multiply-adds and each
#: vector of the output gradient 3.
TAP_FILTERS = 4


class TapSums(types.Type):
    """``TAP_FILTERS * 3`` vectors of partial sums of ``lanes`` numbers of ``dtype``
    (filter ``f``'s tap ``j`` is number ``f * 3 + j``)."""

    def __init__(self, dtype, lanes):
        self.dtype = dtype
        self.lanes = lanes
        super().__init__(name=f"TapSums({dtype}, {TAP_FILTERS}x3x{lanes})")


@register_model(TapSums)
class _TapSumsModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        vector = ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes)
        super().__init__(dmm, fe_type, ir.ArrayType(vector, TAP_FILTERS * 3))


@intrinsic
def tap_sums(typingctx, like):
    """A :class:`TapSums` of zeros, of ``like``'s dtype, one register a vector."""
    if not _flat(like):
        return None
    sums = TapSums(like.dtype, VECTOR_BYTES // (like.dtype.bitwidth // 8))

    def codegen(context, builder, signature, args):
        vector = ir.VectorType(context.get_value_type(sums.dtype), sums.lanes)
        return ir.Constant(ir.ArrayType(vector, TAP_FILTERS * 3),
                           [ir.Constant(vector, [0.0] * sums.lanes)] * (TAP_FILTERS * 3))
    return sums(like), codegen


@intrinsic
def multiply_add_taps(typingctx, sums, g, at, row_length, run, start):
    """``sums[f, j] + g[at + f * row_length:... + lanes] * run[start + j:... + lanes]``
    for every filter ``f`` and tap ``j`` (0, 1, 2).

    ``TAP_FILTERS`` vectors of ``g`` (one a filter) and 3 of ``run`` (the same
    positions shifted by 0, 1 and 2) loaded, no alignment needed, then 12
    multiply-adds (fused where the processor has FMA).
    """
    if not (isinstance(sums, TapSums) and _flat(g, sums.dtype) and _flat(run, sums.dtype)):
        return None

    def codegen(context, builder, signature, args):
        accumulators, g_array, g_index, length, run_array, run_index = args
        vector = ir.VectorType(context.get_value_type(sums.dtype), sums.lanes)
        step = context.get_value_type(types.intp)
        length = context.cast(builder, length, signature.args[3], types.intp)

        def load(pointer):
            return builder.load(builder.bitcast(pointer, vector.as_pointer()), align=1,
                                typ=vector)
        first = _pointer(context, builder, signature.args[4], run_array, run_index,
                         signature.args[5])
        xs = [load(builder.gep(first, [ir.Constant(step, j)])) for j in range(3)]
        row = _pointer(context, builder, signature.args[1], g_array, g_index, signature.args[2])
        fma = _declare(builder, "llvm.fmuladd", [vector], vector, [vector] * 3)
        for f in range(TAP_FILTERS):
            gs = load(builder.gep(row, [builder.mul(length, ir.Constant(step, f))]))
            for j in range(3):
                total = builder.call(fma, [gs, xs[j], builder.extract_value(accumulators, f * 3 + j)])
                accumulators = builder.insert_value(accumulators, total, f * 3 + j)
        return accumulators
    return sums(sums, g, at, row_length, run, start), codegen


@intrinsic
def lane_sum(typingctx, sums, number):
    """The sum of the lanes of vector ``number`` of ``sums`` (a constant or a loop
    index the compiler unrolls), in ``sums``' dtype."""
    if not isinstance(sums, TapSums):
        return None

    def codegen(context, builder, signature, args):
        accumulators, chosen = args
        chosen = context.cast(builder, chosen, signature.args[1], types.intp)
        value = builder.extract_value(accumulators, TAP_FILTERS * 3 - 1)
        for k in range(TAP_FILTERS * 3 - 2, -1, -1):        # the vector of number ``number``
            value = builder.select(builder.icmp_signed("==", chosen, ir.Constant(chosen.type, k)),
                                   builder.extract_value(accumulators, k), value)
        total = builder.extract_element(value, ir.Constant(ir.IntType(32), 0))
        for lane in range(1, sums.lanes):
            total = builder.fadd(total, builder.extract_element(value,
                                                                ir.Constant(ir.IntType(32), lane)))
        return total
    return sums.dtype(sums, number), codegen
