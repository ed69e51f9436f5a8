"""The seed CNN's first block trained by chunks on CPU (``genre_jax.kernels.conv_block``):
against XLA's convolution, ReLU, pooling and sums differentiated by JAX in float64, and against
the block as every other phase computes it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genre_jax import kernels
from genre_jax.kernels import conv_block, ops
from genre_jax.kernels.conv import conv2d_same
from genre_jax.kernels.conv_block import conv_relu_pool_sums, fused_applies
from genre_jax.models.cnn import SeedCNN
from genre_jax.models.layers import keras_batch_norm, max_pool_2x2, relu_batch_norm_pool


def composite(x, kernel, bias, sign):
    """The reference: XLA's convolution, ReLU, ``max_pool_2x2`` and sums, each JAX's own."""
    dims = ("NHWC", "HWIO", "NHWC")
    z = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dims) + bias
    r = jax.nn.relu(z)
    return max_pool_2x2(r * sign) * sign, jnp.sum(r, axis=(1, 2)), jnp.sum(r * r, axis=(1, 2))


@pytest.mark.parametrize("image", [(21, 13), (20, 12), (431, 13)], ids=["odd", "even", "seed"])
def test_chunked_block_equals_the_composite_forward_and_in_gradients(image) -> None:
    """Outputs and gradients to the input, kernel and bias within 1e-5 of the largest value of
    the composite's, computed in float64 from the same float32 values; two chunks, channels
    pooled as maxima and (negative sign) as minima, odd images leaving a row and a column out
    of the pooling."""
    h, w = image
    batch = 2 * conv_block.CHUNK
    rng = np.random.default_rng(h * w)
    x = jnp.asarray(rng.standard_normal((batch, h, w, 1)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 1, 6)) / 3, jnp.float32)
    bias = jnp.asarray(rng.standard_normal(6) / 4, jnp.float32)
    sign = jnp.asarray([1, -1, 1, 1, -1, 1], jnp.float32)
    pooled = (batch, h // 2, w // 2, 6)
    cotangents = tuple(
        jnp.asarray(rng.standard_normal(shape), jnp.float32)
        for shape in (pooled, (batch, 6), (batch, 6))
    )

    outputs, vjp = jax.vjp(lambda *a: conv_relu_pool_sums(*a, sign), x, kernel, bias)
    ours = (*outputs, *vjp(cotangents))
    with jax.enable_x64(True):
        wide = [np.asarray(a, np.float64) for a in (x, kernel, bias, sign)]
        outputs, vjp = jax.vjp(lambda *a: composite(*a, wide[3]), *wide[:3])
        want = (*outputs, *vjp(tuple(np.asarray(c, np.float64) for c in cotangents)))
        want = [np.asarray(a) for a in want]
    for name, got, expected in zip(
        ["pooled", "sums", "square sums", "d input", "d kernel", "d bias"], ours, want, strict=True
    ):
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(
            np.asarray(got), expected, rtol=0, atol=1e-5 * scale, err_msg=name
        )


def _norm() -> nnx.BatchNorm:
    norm = keras_batch_norm(32, nnx.Rngs(0))
    norm.scale[...] = jnp.asarray(np.resize([1.5, -0.5, 0.25, 2.0, -1.0], 32), jnp.float32)
    norm.bias[...] = jnp.linspace(-0.3, 0.4, 32)
    return norm


def test_the_first_block_trains_by_chunks_to_the_values_of_every_other_phase() -> None:
    """The ``conv_block`` kernel in training (a batch of 11 with 2 masked rows: padded to
    whole chunks) against ``relu_batch_norm_pool`` of ``conv2d_same``: the block's outputs and
    updated running averages to 1e-6, the gradients to the convolution's and BatchNorm's
    parameters to 1e-5 of their largest values. Where it does not apply (a 32-channel input,
    evaluation) the op is the other formulation, bit for bit."""
    conv, norm = nnx.Conv(1, 32, (3, 3), rngs=nnx.Rngs(3)), _norm()
    assert fused_applies(conv, norm, jnp.zeros((11, 40, 13, 1)), train=True)
    assert not fused_applies(conv, norm, jnp.zeros((11, 40, 13, 1)), train=False)
    assert not fused_applies(conv, norm, jnp.zeros((11, 40, 13, 32)), train=True)
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((11, 40, 13, 1)), jnp.float32)
    mask = jnp.asarray([1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1], bool)
    cotangent = jnp.asarray(rng.standard_normal((11, 20, 6, 32)), jnp.float32)

    def block(fused: bool):
        conv = nnx.Conv(1, 32, (3, 3), padding="SAME", rngs=nnx.Rngs(3))
        modules = (conv, _norm())
        graphdef, params, stats = nnx.split(modules, nnx.Param, nnx.BatchStat)

        def loss(params):
            conv, norm = nnx.merge(graphdef, params, stats, copy=True)
            if fused:
                y = conv_block.conv_block(conv, norm, x, train=True, mask=mask)
            else:
                y = relu_batch_norm_pool(norm, conv2d_same(conv, x), train=True, mask=mask)
            return jnp.sum(y * cotangent), (y, nnx.state((conv, norm), nnx.BatchStat))

        return jax.grad(loss, has_aux=True)(params)

    grads, (y, new_stats) = block(fused=True)
    want_grads, (want, want_stats) = block(fused=False)
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-6 * float(jnp.abs(want).max()))
    for a, b in zip(jax.tree.leaves(new_stats), jax.tree.leaves(want_stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(jnp.abs(b).max()))

    conv, norm = (
        nnx.Conv(32, 8, (3, 3), padding="SAME", rngs=nnx.Rngs(4)),
        keras_batch_norm(8, nnx.Rngs(0)),
    )
    wide = jnp.asarray(rng.standard_normal((3, 10, 6, 32)), jnp.float32)
    with kernels.use("fast"):
        for train in (False, True):
            np.testing.assert_array_equal(
                ops.conv_block(conv, norm, wide, train=train),
                relu_batch_norm_pool(norm, conv2d_same(conv, wide), train=train),
            )


def test_the_cnn_evaluates_as_before_and_trains_its_first_block_by_chunks() -> None:
    """The seed CNN's logits in evaluation are computed as they always were (bitwise the
    block-by-block reference), and in training within 1e-5 of it."""
    model = SeedCNN(10, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (9, 64, 13))

    def reference(model, x, train):
        h = x[..., None]
        for conv, norm in zip(model.convs, model.norms, strict=True):
            h = relu_batch_norm_pool(norm, conv2d_same(conv, h), train=train)
        return model.out(jax.nn.relu(model.hidden(jnp.mean(h, axis=(1, 2)))))

    with kernels.use("fast"):
        evaluated = nnx.clone(model)(x, train=False)
        trained = nnx.clone(model)(x, train=True)
    np.testing.assert_array_equal(evaluated, reference(nnx.clone(model), x, False))
    want = reference(nnx.clone(model), x, True)
    np.testing.assert_allclose(trained, want, rtol=0, atol=1e-5 * float(jnp.abs(want).max()))
