"""The seed's networks: parameter counts as Keras counts them, the Keras GRU cell against a
float64 numpy reference (its gradients against float64 autodiff), the convolutions against
``lax.conv_general_dilated``, and padded rows kept out of BatchNorm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from flax import nnx

from genre_jax import kernels
from genre_jax.kernels import ops
from genre_jax.kernels.conv import (
    conv2d_same_banded,
    conv2d_same_in_chunks,
    conv2d_same_patch_gradient,
)
from genre_jax.kernels.ops import recurrence_fused
from genre_jax.models.cnn import SeedCNN
from genre_jax.models.gru import KerasGRU, SeedGRU
from genre_jax.models.layers import keras_batch_norm, max_pool_2x2, relu_batch_norm_pool
from genre_jax.models.melstat import Standardize
from genre_jax.models.summary import (
    harmonic_percussive,
    median_filter,
    modulation_spectrum,
    odd_even_merge_sort,
    selection_network,
    summary_statistics,
    summary_width,
)


def count(module: nnx.Module) -> int:
    return sum(int(np.size(x)) for x in jax.tree.leaves(nnx.state(module)))


def test_cnn_has_the_keras_parameter_count() -> None:
    # Keras: 320 + 128 + 18,496 + 256 + 36,928 + 256 + 8,320 + 1,290 (BatchNorm moving stats in)
    assert count(SeedCNN(10, rngs=nnx.Rngs(0))) == 65_994


def test_gru_parameter_count_per_layer() -> None:
    model = SeedGRU(13, 10, rngs=nnx.Rngs(0))
    layers = [model.gru1, model.norm1, model.gru2, model.norm2, model.hidden, model.out]
    assert [count(m) for m in layers] == [15_168, 256, 46_656, 384, 12_416, 1_290]
    assert count(model) == 76_170


def test_gru_unroll_zero_is_the_kernels_default() -> None:
    from genre_jax.config import ConfigError, TrainConfig
    from genre_jax.models import build_network
    from genre_jax.models.gru import GRUSettings, scan_unroll

    expected = 1 if kernels.active() == "fast" else 8
    with kernels.use("reference"):
        assert scan_unroll(GRUSettings()) == 8
    with kernels.use("fast"):
        assert scan_unroll(GRUSettings()) == 1
    default = TrainConfig(model="gru")
    built = build_network("gru", default.model_settings, 13, 10, seed=0)
    assert default.model_settings.unroll == 0
    assert scan_unroll(default.model_settings) == expected
    assert built.gru1.unroll == built.gru2.unroll == expected
    config = TrainConfig.from_flat({"model": "gru", "unroll": 4})
    assert config.model_settings == GRUSettings(unroll=4)
    chosen = build_network("gru", config.model_settings, 13, 10, seed=0)
    assert chosen.gru1.unroll == chosen.gru2.unroll == 4
    with pytest.raises(ConfigError, match="unroll=-1"):
        TrainConfig.from_flat({"model": "gru", "unroll": -1})


def numpy_keras_gru(x, kernel, recurrent, bias):
    """Keras GRU(reset_after=True) in float64: gates z, r, h; reset after the recurrent matmul."""
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    outputs = []
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    for t in range(x.shape[1]):
        xz, xr, xh = np.split(x[:, t] @ kernel + bias[0], 3, axis=-1)
        hz, hr, hh = np.split(h @ recurrent + bias[1], 3, axis=-1)
        z = sigmoid(xz + hz)
        r = sigmoid(xr + hr)
        candidate = np.tanh(xh + r * hh)
        h = z * h + (1 - z) * candidate
        outputs.append(h)
    return np.stack(outputs, axis=1)


@pytest.mark.parametrize("unroll", [1, 4])
def test_gru_cell_matches_numpy_float64(unroll: int) -> None:
    rng = np.random.default_rng(0)
    layer = KerasGRU(13, 64, rngs=nnx.Rngs(0), unroll=unroll)
    kernel = rng.normal(0, 0.3, (13, 192))
    recurrent = rng.normal(0, 0.2, (64, 192))
    bias = rng.normal(0, 0.5, (2, 192))  # non-zero, distinct input and recurrent biases
    layer.kernel[...] = jnp.asarray(kernel, jnp.float32)
    layer.recurrent_kernel[...] = jnp.asarray(recurrent, jnp.float32)
    layer.bias[...] = jnp.asarray(bias, jnp.float32)
    x = rng.normal(size=(3, 40, 13)).astype(np.float32)
    reference = numpy_keras_gru(x.astype(np.float64), kernel, recurrent, bias)
    ours = np.asarray(layer(jnp.asarray(x)), np.float64)
    assert np.max(np.abs(ours - reference)) <= 1e-5


def keras_gru_loss_float64(x, kernel, recurrent, bias, weights):
    """``sum(weights * hidden states)`` of Keras's GRU, step by step in float64 jnp (no scan)."""
    h = jnp.zeros((x.shape[0], recurrent.shape[0]))
    total = 0.0
    for t in range(x.shape[1]):
        xz, xr, xh = jnp.split(x[:, t] @ kernel + bias[0], 3, axis=-1)
        hz, hr, hh = jnp.split(h @ recurrent + bias[1], 3, axis=-1)
        z, r = jax.nn.sigmoid(xz + hz), jax.nn.sigmoid(xr + hr)
        h = z * h + (1 - z) * jnp.tanh(xh + r * hh)
        total = total + jnp.sum(weights[:, t] * h)
    return total


@pytest.mark.parametrize(
    ("formulation", "mode"), [("layer", "fast"), ("layer", "reference"), ("fused", "auto")]
)
def test_gru_gradients_match_float64_autodiff(formulation: str, mode: str) -> None:
    """The layer under the kernels (three products per step, the backward pass written out)
    and under the reference (one product, JAX's autodiff), and the fused recurrence itself, in
    float32, against the gradients of a plain float64 loop: within 1e-5 of each gradient's
    largest entry."""
    rng = np.random.default_rng(3)
    args = [
        rng.normal(size=(3, 40, 13)),  # x
        rng.normal(0, 0.3, (13, 192)),  # kernel
        rng.normal(0, 0.2, (64, 192)),  # recurrent kernel
        rng.normal(0, 0.5, (2, 192)),  # input and recurrent biases
    ]
    weights = rng.normal(size=(3, 40, 64))
    with jax.enable_x64(True):
        loss = lambda *a: keras_gru_loss_float64(*a, jnp.asarray(weights))  # noqa: E731
        reference = jax.grad(loss, argnums=(0, 1, 2, 3))(*map(jnp.asarray, args))
        reference = [np.asarray(g) for g in reference]
    x, kernel, recurrent, bias = (jnp.asarray(a, jnp.float32) for a in args)
    w = jnp.asarray(weights, jnp.float32)
    if formulation == "layer":
        layer = KerasGRU(13, 64, rngs=nnx.Rngs(0))
        layer.kernel[...], layer.recurrent_kernel[...], layer.bias[...] = kernel, recurrent, bias
        graph, state = nnx.split(layer)
        loss32 = lambda state, x: jnp.sum(w * nnx.merge(graph, state)(x))  # noqa: E731
        with kernels.use(mode):
            d_state, d_x = jax.grad(loss32, argnums=(0, 1))(state, x)
        grads = [
            d_x,
            d_state["kernel"][...],
            d_state["recurrent_kernel"][...],
            d_state["bias"][...],
        ]
    else:

        def loss32(x, kernel, recurrent, bias):
            projected = jnp.swapaxes(x @ kernel + bias[0], 0, 1)
            return jnp.sum(
                w * jnp.swapaxes(recurrence_fused(projected, recurrent, bias[1], 1), 0, 1)
            )

        grads = jax.grad(loss32, argnums=(0, 1, 2, 3))(x, kernel, recurrent, bias)
    for name, got, want in zip(("x", "kernel", "recurrent", "bias"), grads, reference, strict=True):
        error = np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want))
        assert error <= 1e-5, (name, error)


@pytest.mark.parametrize(
    "build", [lambda: SeedCNN(10, rngs=nnx.Rngs(1)), lambda: SeedGRU(13, 10, rngs=nnx.Rngs(1))]
)
def test_padded_rows_do_not_reach_batchnorm(build) -> None:
    x = jax.random.normal(jax.random.key(0), (5, 64, 13))
    padded = jnp.concatenate([x, 100.0 * jnp.ones((3, 64, 13))])
    mask = jnp.arange(8) < 5
    plain, masked = build(), build()
    expected = plain(x, train=True)  # no key: dropout off, batch statistics on
    got = masked(padded, train=True, mask=mask)[:5]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    stats = lambda m: jax.tree.leaves(nnx.state(m, nnx.BatchStat))  # noqa: E731
    for a, b in zip(stats(plain), stats(masked), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_evaluation_reads_but_never_updates_batchnorm() -> None:
    model = SeedCNN(10, rngs=nnx.Rngs(0))
    before = [np.array(v) for v in jax.tree.leaves(nnx.state(model, nnx.BatchStat))]
    model(jax.random.normal(jax.random.key(1), (4, 64, 13)), train=False)
    after = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    model(jax.random.normal(jax.random.key(1), (4, 64, 13)), train=True)
    changed = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    assert not all(np.array_equal(a, b) for a, b in zip(before, changed, strict=True))


def _ours():
    # experiments/ is research code beside the package, importable from the repository root
    # (on sys.path for the tests: tests/ is a package).
    from experiments.models import MelCNN, MelTCN
    from genre_jax.models.melstat import MelStatNet

    return [
        lambda: MelStatNet(32, 10, input_norm="batchnorm", rngs=nnx.Rngs(1)),
        lambda: MelStatNet(32, 10, modulation_groups=8, rngs=nnx.Rngs(1)),
        lambda: MelTCN(32, 10, rngs=nnx.Rngs(1)),
        lambda: MelCNN(32, 10, rngs=nnx.Rngs(1)),
    ]


@pytest.mark.parametrize("build", _ours(), ids=["stat-bn", "melstat", "tcn", "cnn2d"])
def test_research_models_keep_padded_rows_out_of_batchnorm(build) -> None:
    x = jax.random.normal(jax.random.key(0), (5, 40, 32))
    padded = jnp.concatenate([x, 100.0 * jnp.ones((3, 40, 32))])
    plain, masked = build(), build()
    expected = plain(x, train=True)
    assert expected.shape == (5, 10)
    got = masked(padded, train=True, mask=jnp.arange(8) < 5)[:5]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_standardize_statistics_match_numpy_float64() -> None:
    """Chunked float64 accumulation equals numpy's mean and std over segments and frames."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(23, 17, 6)) * [1, 10, 100, 0.1, 5, 0] + [0, -80, 30, 2, 0, 7]).astype(
        np.float32
    )
    layer = Standardize(6)
    layer.fit(x, chunk=5)  # 5 chunks, the last one short
    flat = x.astype(np.float64).reshape(-1, 6)
    np.testing.assert_allclose(layer.mean[...], flat.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.std[...], flat.std(0) + 1e-5, rtol=1e-5, atol=1e-7)
    out = np.asarray(layer(jnp.asarray(x)), np.float64).reshape(-1, 6)
    np.testing.assert_allclose(out[:, :5].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out[:, :5].std(0), 1.0, atol=1e-3)
    assert np.all(np.isfinite(out[:, 5]))  # a constant band stays finite


def test_modulation_spectrum_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 87, 32)).astype(np.float32)
    got = np.asarray(modulation_spectrum(jnp.asarray(x), groups=8, bins=11))
    g = x.astype(np.float64).reshape(3, 87, 8, 4).mean(axis=3)
    g -= g.mean(axis=1, keepdims=True)
    reference = np.log1p(np.abs(np.fft.rfft(g, axis=1))[:, 1:12]).reshape(3, -1)
    assert got.shape == (3, 88)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)


def _compare_exchange(network: list[tuple[int, int]], wires: list) -> list:
    """``wires`` after each ``(low, high)`` of ``network`` put the smaller value on ``low``."""
    for low, high in network:
        wires[low], wires[high] = min(wires[low], wires[high]), max(wires[low], wires[high])
    return wires


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 12, 15])
def test_the_merge_network_sorts_every_input_of_zeros_and_ones(n: int) -> None:
    # The 0-1 principle: a comparator network that sorts all 2**n such inputs sorts every input.
    network = odd_even_merge_sort(n)
    for bits in range(1 << n):
        wires = [(bits >> i) & 1 for i in range(n)]
        assert _compare_exchange(network, list(wires)) == sorted(wires), (n, bits)


@pytest.mark.parametrize("n", [9, 31])
def test_the_selection_network_finds_the_median_of_random_values(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(200):
        wires = list(rng.integers(0, 4, size=n) if rng.random() < 0.5 else rng.normal(size=n))
        expected = sorted(wires)[n // 2]
        assert _compare_exchange(selection_network(n, n // 2), wires)[n // 2] == expected


@pytest.mark.parametrize(
    ("size", "axis"), [(1, 1), (5, 1), (31, 1), (9, 2), (3, 0), (7, 2), (13, 1), (17, 1)]
)
def test_median_filter_matches_scipy(size: int, axis: int) -> None:
    x = np.random.default_rng(2).normal(size=(4, 87, 16)).astype(np.float32)
    footprint = [1, 1, 1]
    footprint[axis] = size
    reference = scipy.ndimage.median_filter(x, size=footprint, mode="reflect")
    np.testing.assert_array_equal(np.asarray(median_filter(jnp.asarray(x), size, axis)), reference)


def test_median_filter_refuses_an_even_width() -> None:
    with pytest.raises(ValueError, match="width 4: must be odd"):
        median_filter(jnp.zeros((2, 9)), 4, axis=1)


def test_harmonic_percussive_parts_match_a_float64_scipy_reference() -> None:
    """11 segments (two chunks of 8 and 3): soft-masked median-filter separation of the power."""
    rng = np.random.default_rng(3)
    db = (rng.normal(size=(11, 87, 32)) * 12 - 40).astype(np.float32)
    db[:, 40:44] += 30  # broadband clicks (percussive)
    db[:, :, 7] += 25  # a steady band (harmonic)
    harmonic, percussive = (np.asarray(a) for a in harmonic_percussive(jnp.asarray(db), 31, 9))
    power = 10.0 ** (db.astype(np.float64) / 10.0)
    steady = scipy.ndimage.median_filter(power, size=(1, 31, 1), mode="reflect") ** 2
    broad = scipy.ndimage.median_filter(power, size=(1, 1, 9), mode="reflect") ** 2
    for got, mask in ((harmonic, steady), (percussive, broad)):
        reference = 10.0 * np.log10(np.maximum(power * mask / (steady + broad), 1e-10))
        np.testing.assert_allclose(got, reference, atol=2e-3)
    # The parts add up to the input's power (but where a part is below amin, 1e-10, and
    # floored there); the steady band is mostly harmonic, the clicks mostly percussive.
    total = 10 ** (harmonic / 10) + 10 ** (percussive / 10)
    np.testing.assert_allclose(total, power, rtol=1e-4, atol=1e-9)
    assert np.median(harmonic[:, :, 7] - percussive[:, :, 7]) > 10
    assert np.median(percussive[:, 40:44] - harmonic[:, 40:44]) > 10


def test_summary_statistics_with_harmonic_percussive_parts() -> None:
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 87, 32)).astype(np.float32) * 10)
    plain = np.asarray(summary_statistics(x, 8, 11, 10))
    both = np.asarray(summary_statistics(x, 8, 11, 10, harmonic_percussive_parts=True))
    assert plain.shape == (3, summary_width(32, 8, 11, 10))
    assert both.shape == (3, summary_width(32, 8, 11, 10, harmonic_percussive_parts=True))
    assert both.shape[1] == 3 * plain.shape[1]
    width = plain.shape[1]
    np.testing.assert_array_equal(both[:, :width], plain)
    harmonic, percussive = harmonic_percussive(x)
    np.testing.assert_allclose(both[:, width : 2 * width], summary_statistics(harmonic, 8, 11, 10))
    np.testing.assert_allclose(both[:, 2 * width :], summary_statistics(percussive, 8, 11, 10))


# The seed CNN's three convolutions (batch 4): 13, 6 and 3 coefficients wide; and a wider one.
CONV_SHAPES = [(431, 13, 1, 32), (215, 6, 32, 64), (107, 3, 64, 64), (20, 17, 5, 7)]


def xla_same_convolution(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The reference: ``jax.lax.conv_general_dilated``, 'SAME', stride 1, NHWC and HWIO."""
    dims = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dims)


@pytest.mark.parametrize("shape", CONV_SHAPES)
@pytest.mark.parametrize(
    ("conv", "batch"),
    [(conv2d_same_banded, 6), (conv2d_same_patch_gradient, 6), (conv2d_same_patch_gradient, 36)],
    ids=["banded", "patch gradient", "patch gradient, XLA's in chunks"],
)
def test_matrix_product_convolutions_equal_xla_forward_and_in_gradients(conv, batch, shape) -> None:
    """Both CPU formulations against ``jax.lax.conv_general_dilated`` ('SAME', stride 1):
    outputs, and the gradients to the input, kernel and bias, within 1e-5 of the largest
    value of XLA's, computed in float64 from the same float32 values. A batch of 6 splits the
    kernel gradient's chunks of 4 samples into chunks of 3; one of 36 (over
    ``CONV_WHOLE_BATCH``) runs XLA's convolutions as two chunks of 16 and one padded from 4
    (``CONV_CHUNK``)."""
    h, w, c_in, c_out = shape
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.standard_normal((batch, h, w, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)) / np.sqrt(9 * c_in), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(c_out), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal((batch, h, w, c_out)), jnp.float32)

    def xla(x, kernel, bias):
        return xla_same_convolution(x, kernel) + bias

    ours = (*jax.vjp(conv, x, kernel, bias)[1](cotangent), conv(x, kernel, bias))
    with jax.enable_x64(True):
        wide = [np.asarray(a, np.float64) for a in (x, kernel, bias, cotangent)]
        vjp = jax.vjp(xla, *wide[:3])[1](wide[3])
        reference = [np.asarray(a) for a in (*vjp, xla(*wide[:3]))]
    for got, want in zip(ours, reference, strict=True):
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("shape", CONV_SHAPES[:2])
def test_xla_convolution_in_chunks_is_bitwise_the_whole_batch(shape) -> None:
    """The CNN's chunked convolution of a batch over ``CONV_WHOLE_BATCH`` (``CONV_CHUNK``
    samples per call, the last chunk padded) gives exactly XLA's values for the whole batch,
    so training and predictions do not move. (With one device: with more, the batch runs
    whole.)"""
    assert jax.device_count() == 1, "the suite runs on one CPU device (conftest)"
    h, w, c_in, c_out = shape
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.standard_normal((37, h, w, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)), jnp.float32)
    want = xla_same_convolution(x, kernel)
    np.testing.assert_array_equal(np.asarray(jax.jit(conv2d_same_in_chunks)(x, kernel)), want)


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_the_cnn_computes_its_convolutions_from_the_same_parameters(mode: str) -> None:
    """The op ``conv2d_same`` reads an ``nnx.Conv``'s own kernel and bias: the module's call
    and it agree (the kernel's matrix products, or the call itself)."""
    model = SeedCNN(rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 40, 13, 1))
    want = model.convs[0](x)
    with kernels.use(mode):
        got = ops.conv2d_same(model.convs[0], x)
    np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.abs(want).max()))


def _norm_with_both_signs(channels: int) -> nnx.BatchNorm:
    """A BatchNorm whose scales are of both signs, with running statistics. (At a scale of
    exactly 0 every pooled value ties and the scale's gradient is a kink's: BatchNorm then
    the pool splits it over the ties, ``relu_batch_norm_pool`` takes the side of positive
    scales; the outputs are equal.)"""
    norm = keras_batch_norm(channels, nnx.Rngs(0))
    norm.scale[...] = jnp.asarray(np.resize([1.5, -0.5, 0.25, 2.0, -1.0], channels), jnp.float32)
    norm.bias[...] = jnp.linspace(-0.3, 0.4, channels)
    norm.mean[...] = jnp.linspace(0.0, 0.5, channels)
    norm.var[...] = jnp.linspace(0.5, 2.0, channels)
    return norm


@pytest.mark.parametrize("train", [True, False], ids=["batch statistics", "running averages"])
def test_pooling_before_batchnorm_gives_batchnorm_then_pooling(train: bool) -> None:
    """``relu_batch_norm_pool`` against ``nnx.BatchNorm`` then ``max_pool_2x2`` on the same
    ReLU outputs, with masked rows and scales of both signs: the outputs (equal with running
    averages; within float32 round-off of the statistics with batch ones), the updated running
    averages (1e-6) and the gradients to the input and to the scale and bias (1e-5)."""
    rng = np.random.default_rng(3)
    z = jnp.asarray(rng.standard_normal((7, 21, 9, 5)), jnp.float32)
    mask = jnp.asarray([1, 1, 0, 1, 1, 0, 1], bool)
    cotangent = jnp.asarray(rng.standard_normal((7, 10, 4, 5)), jnp.float32)

    def reference(norm, z):
        normed = norm(jax.nn.relu(z), use_running_average=not train, mask=mask[:, None, None, None])
        return max_pool_2x2(normed)

    def ours(norm, z):
        return relu_batch_norm_pool(norm, z, train=train, mask=mask)

    def outputs(f):
        norm = _norm_with_both_signs(5)
        graphdef, params, stats = nnx.split(norm, nnx.Param, nnx.BatchStat)

        def loss(params, z, stats):
            module = nnx.merge(graphdef, params, stats, copy=True)  # Variables of this trace
            y = f(module, z)
            return jnp.sum(y * cotangent), (y, nnx.state(module, nnx.BatchStat))

        grads, (y, new_stats) = jax.grad(loss, argnums=(0, 1), has_aux=True)(params, z, stats)
        return y, new_stats, grads

    want, want_stats, want_grads = outputs(reference)
    got, got_stats, got_grads = outputs(ours)
    if train:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, want)
    for a, b in zip(jax.tree.leaves(got_stats), jax.tree.leaves(want_stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(jnp.abs(b).max()))
