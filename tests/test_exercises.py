"""The exercise checker (numcnn.exercises): it passes what is right and fails what is not.

- Every exercise passes with its reference, fails with a function whose
  outputs are off by 1% and with a stub that raises NotImplementedError; each
  check prints exactly one line, a failure naming the largest relative error.
- The library's own kernels pass the exercises they answer (the checker
  accepts another correct way of writing the function).
- The common mistakes get their hint: a flipped kernel, a wrong axis, a
  missing 1/N, dropout without its scaling.
- An unknown name is a KeyError.
"""
import re

import numpy as np
import pytest

from numcnn import exercises
from numcnn.kernels import reference as kernels

REQUIRED = ["dense_forward", "dense_backward", "relu_backward", "softmax_cross_entropy",
            "conv2d_forward_loops", "im2col", "conv2d_backward", "maxpool_forward",
            "maxpool_backward", "batchnorm_forward", "batchnorm_backward", "dropout_forward"]

PASS_LINE = re.compile(r"^PASS (\w+) \(max relative error (\d\.\de[+-]\d\d)\)$")
FAIL_LINE = re.compile(r"^FAIL (\w+): (.+) \(max relative error (\d\.\de[+-]\d\d|inf), "
                       r"expected shape (.+), got (.+)\)$")


def run_check(capsys, name, function):
    result = exercises.check(name, function)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, f"check printed {len(lines)} lines: {lines}"
    return result, lines[0]


def off_by_one_percent(reference):
    def wrong(*args):
        out = reference(*args)
        if isinstance(out, tuple):
            return tuple(np.asarray(value) * 1.01 for value in out)
        return np.asarray(out) * 1.01
    return wrong


def stub(*args):
    # your code here
    raise NotImplementedError


def test_the_required_exercises_exist():
    assert set(REQUIRED) <= set(exercises.EXERCISES)
    for name, reference in exercises.EXERCISES.items():
        assert callable(reference) and reference.__doc__, f"{name} has no documented reference"


@pytest.mark.parametrize("name", sorted(exercises.EXERCISES))
def test_reference_passes_and_wrong_answers_fail(name, capsys):
    reference = exercises.EXERCISES[name]
    passed, line = run_check(capsys, name, reference)
    assert passed and PASS_LINE.match(line) and PASS_LINE.match(line).group(1) == name, line
    assert float(PASS_LINE.match(line).group(2)) < exercises.TOLERANCE

    passed, line = run_check(capsys, name, off_by_one_percent(reference))
    match = FAIL_LINE.match(line)
    assert not passed and match and match.group(1) == name, line
    assert 4e-3 < float(match.group(3)) < 6e-3, f"1% off should read as about 5e-03: {line}"

    passed, line = run_check(capsys, name, stub)
    match = FAIL_LINE.match(line)
    assert not passed and match and "NotImplementedError" in match.group(2), line
    assert match.group(3) == "inf"


def test_any_exception_fails(capsys):
    def broken(x, W, b):
        return x @ W.T + b                       # ValueError from matmul's shapes
    passed, line = run_check(capsys, "dense_forward", broken)
    assert not passed and "raised ValueError" in line and FAIL_LINE.match(line)


def test_unknown_name_is_a_key_error(capsys):
    with pytest.raises(KeyError, match="dense_forward"):
        exercises.check("dense_fwd", exercises.EXERCISES["dense_forward"])
    assert capsys.readouterr().out == ""


def test_numcnns_own_kernels_pass(capsys):
    """Another correct way of writing them: the library's reference kernels."""
    answers = {
        "conv2d_forward_loops": kernels.conv2d_direct,
        "im2col": lambda x, KH, KW, s, p: kernels.im2col(x, KH, KW, s, p),
        "conv2d_backward": kernels.conv2d_direct_backward,
        "maxpool_forward": lambda x, K, s: kernels.maxpool_forward(x, K, s)[0],
        "maxpool_backward": lambda dy, x, K, s: kernels.maxpool_backward(
            dy, kernels.maxpool_forward(x, K, s)[1], x.shape, K, s),
        "batchnorm_forward": lambda x, g, b, eps: kernels.batchnorm_forward(x, g, b, eps)[0],
        "batchnorm_backward": lambda dy, x, g, eps: kernels.batchnorm_backward(
            dy, x, g, x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)), eps),
        "relu_backward": kernels.relu_backward,
    }
    for name, answer in answers.items():
        passed, line = run_check(capsys, name, answer)
        assert passed, line


def flipped_conv(x, W, b, stride, pad):
    return exercises.EXERCISES["conv2d_forward_loops"](x, W[:, :, ::-1, ::-1], b, stride, pad)


def unflipped_conv_backward(dy, x, W, stride, pad):
    reference = exercises.EXERCISES["conv2d_backward"]
    dx = reference(dy, x, W[:, :, ::-1, ::-1], stride, pad)[0]
    return (dx, *reference(dy, x, W, stride, pad)[1:])


def softmax_without_mean(logits, labels):
    loss, dlogits = exercises.EXERCISES["softmax_cross_entropy"](logits, labels)
    return loss, dlogits * len(logits)


def batchnorm_over_batch_only(x, gamma, beta, eps):
    mean, var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)
    return gamma[None, :, None, None] * (x - mean) / np.sqrt(var + eps) + beta[None, :, None, None]


@pytest.mark.parametrize("name, wrong, hint", [
    ("conv2d_forward_loops", flipped_conv, "you flipped the kernel"),
    ("conv3x3_shifted", lambda x, W, b: flipped_conv(x, W, b, 1, 1), "you flipped the kernel"),
    ("conv2d_backward", unflipped_conv_backward, "turn the kernel half a turn"),
    ("softmax_cross_entropy", softmax_without_mean, "a missing 1/N"),
    ("batchnorm_forward", batchnorm_over_batch_only, "wrong axis"),
    ("dropout_forward", lambda x, u, p: np.where(u >= p, x, 0.0), "1 / (1 - p)"),
    ("relu_backward", lambda dy, x: np.where(x >= 0, dy, 0.0), "x > 0"),
    ("maxpool_forward", lambda x, K, s: exercises.EXERCISES["maxpool_forward"](x, K, s) * 0
     + sum(x[:, :, i:i + s * ((x.shape[2] - K) // s + 1):s, j:j + s * ((x.shape[3] - K) // s + 1):s]
           for i in range(K) for j in range(K)) / K ** 2, "not its mean"),
    ("dense_backward", lambda dy, x, W: (dy @ W.T, x.T @ dy, dy.sum(axis=1)), "axis 0"),
    ("im2col", lambda x, KH, KW, s, p: exercises.EXERCISES["im2col"](x, KH, KW, s, p).T,
     "(C*KH*KW, N*OH*OW)"),
    ("wilson_interval", lambda k, n, z: (k / n - z * np.sqrt(k / n * (1 - k / n) / n),
                                         k / n + z * np.sqrt(k / n * (1 - k / n) / n)), "Wald"),
    ("grad_cam", lambda a, g: (g.mean(axis=(2, 3))[:, :, None, None] * a).sum(axis=1), "ReLU"),
])
def test_common_mistakes_get_their_hint(name, wrong, hint, capsys):
    passed, line = run_check(capsys, name, wrong)
    assert not passed and FAIL_LINE.match(line), line
    assert hint in line, f"expected the hint {hint!r}: {line}"


def test_softmax_must_be_stable(capsys):
    def naive(logits, labels):
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        N = len(logits)
        loss = -np.log(p[np.arange(N), labels]).mean()
        p[np.arange(N), labels] -= 1
        return loss, p / N
    with np.errstate(all="ignore"):
        passed, line = run_check(capsys, "softmax_cross_entropy", naive)
    assert not passed and "thousands" in line and "maximum" in line, line


def test_wrong_number_of_outputs_fails(capsys):
    passed, line = run_check(capsys, "dense_backward", lambda dy, x, W: (dy @ W.T, x.T @ dy))
    assert not passed and "expected 3" in line, line
