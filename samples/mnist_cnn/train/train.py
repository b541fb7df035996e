#!/usr/bin/env python3
"""Train the ``mnist_cnn`` sample network in pure numpy and export its data files.

The network is the small CNN from Table 1 of the PyPlover paper, float32:

1. conv1: 6 filters 5x5, stride 1, no padding, bias, sigmoid::

       a1[c][y][x] = sigmoid(conv1_b[c] + sum_{i<5,j<5} conv1_w[c][i][j] * in[y+i][x+j])
       c < 6, y, x < 24

2. pool: one learned 4x4 stride-4 filter shared by all 6 channels, one scalar
   bias, sigmoid::

       a2[c][y][x] = sigmoid(pool_b + sum_{i<4,j<4} pool_w[i][j] * a1[c][4y+i][4x+j])
       c < 6, y, x < 6

3. fc: 216 -> 10, no activation (logits)::

       out[k] = fc_b[k] + sum_{n<216} fc_w[k][n] * a2flat[n]
       a2flat[c*36 + y*6 + x] = a2[c][y][x]

   The predicted label is argmax(out); sigmoid(v) = 1 / (1 + exp(-v)).

Data: scikit-learn's bundled digits (1797 images of 8x8, values 0..16, no
network download), divided by 16, upscaled to 28x28 with bilinear
``scipy.ndimage.zoom(img, 28/8, order=1)``, clipped to [0, 1], float32. A
stratified 20% split (``random_state=seed``) is held out.

Training: float64 forward/backward written by hand, softmax cross-entropy on
the logits, Adam, minibatches, all randomness from ``np.random.default_rng(seed)``.
The reported held-out accuracy is computed with :func:`forward`, a float32
pass that follows the formulas above exactly, on the weights as stored.

Output files (written to ``samples/mnist_cnn/data/`` next to this script's
directory unless ``--out DIR`` is given; all little-endian, no headers):

- ``weights.bin``: float32, concatenated in this order: conv1_w[6][5][5] (150),
  conv1_b[6], pool_w[4][4] (16), pool_b[1], fc_w[10][216] (2160), fc_b[10].
  Total 2343 floats = 9372 bytes.
- ``heldout_images.bin``: float32 [N][28][28], row-major.
- ``heldout_labels.bin``: uint8 [N].
- ``report.json``: {"heldout_count": N, "heldout_correct": K,
  "heldout_accuracy": K/N, "train_count": ..., "seed": ..., "epochs": ...,
  "weights_sha256": sha256 of weights.bin, "numpy": version, "sklearn": version,
  "generated_by": "samples/mnist_cnn/train/train.py"}, 2-space indentation.

Usage::

    python3 samples/mnist_cnn/train/train.py [--epochs N] [--seed S] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

# Layout of weights.bin: (name, shape) in file order.
WEIGHT_LAYOUT: list[tuple[str, tuple[int, ...]]] = [
    ("conv1_w", (6, 5, 5)),
    ("conv1_b", (6,)),
    ("pool_w", (4, 4)),
    ("pool_b", (1,)),
    ("fc_w", (10, 216)),
    ("fc_b", (10,)),
]
WEIGHT_COUNT = sum(int(np.prod(s)) for _, s in WEIGHT_LAYOUT)  # 2343
IMG = 28
DEFAULT_SEED = 1234
DEFAULT_EPOCHS = 40
BATCH = 32
LR = 0.01

Params = dict[str, np.ndarray]


# ----------------------------------------------------------------------------
# Weights file
# ----------------------------------------------------------------------------

def split_weights(flat: np.ndarray) -> Params:
    """Split a flat array of WEIGHT_COUNT values into named arrays (views)."""
    if flat.size != WEIGHT_COUNT:
        raise ValueError(f"expected {WEIGHT_COUNT} weights, got {flat.size}")
    out: Params = {}
    off = 0
    for name, shape in WEIGHT_LAYOUT:
        n = int(np.prod(shape))
        out[name] = flat[off:off + n].reshape(shape)
        off += n
    return out


def flatten_weights(params: Params) -> np.ndarray:
    """Concatenate named arrays into the float32 weights.bin order."""
    return np.concatenate(
        [np.asarray(params[name], dtype=np.float32).reshape(-1) for name, _ in WEIGHT_LAYOUT]
    ).astype("<f4")


def load_weights(path: str | Path) -> Params:
    """Read weights.bin and return its named float32 arrays."""
    flat = np.fromfile(path, dtype="<f4").astype(np.float32)
    return split_weights(flat)


# ----------------------------------------------------------------------------
# Reference float32 forward pass (what the C++ runtime is tested against)
# ----------------------------------------------------------------------------

def _sigmoid32(v: np.ndarray) -> np.ndarray:
    # exp(-v) overflows to inf for very negative v; 1/(1+inf) = 0 is the right limit.
    with np.errstate(over="ignore"):
        return (np.float32(1) / (np.float32(1) + np.exp(-v))).astype(np.float32)


def forward(weights: np.ndarray | Params, images: np.ndarray) -> np.ndarray:
    """float32 logits [B][10] for images [B][28][28] (or [28][28]).

    ``weights`` is either the flat 2343-float array or the dict from
    :func:`load_weights`. Every intermediate is float32.
    """
    p = weights if isinstance(weights, dict) else split_weights(np.asarray(weights, np.float32).reshape(-1))
    p = {k: np.asarray(v, dtype=np.float32) for k, v in p.items()}
    x = np.asarray(images, dtype=np.float32).reshape(-1, IMG, IMG)
    b = x.shape[0]

    # conv1: patches[b, y, x, i, j] = in[b, y+i, x+j]
    patches = np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(1, 2))
    z1 = np.einsum("byxij,cij->bcyx", patches, p["conv1_w"], dtype=np.float32)
    a1 = _sigmoid32(z1 + p["conv1_b"][None, :, None, None])

    # pool: a1 viewed as [b, c, y, i, x, j] with row 4y+i, column 4x+j
    blocks = a1.reshape(b, 6, 6, 4, 6, 4)
    z2 = np.einsum("bcyixj,ij->bcyx", blocks, p["pool_w"], dtype=np.float32)
    a2 = _sigmoid32(z2 + p["pool_b"][0])

    # fc: flatten in [c][y][x] order
    a2flat = a2.reshape(b, 216)
    out = a2flat @ p["fc_w"].T + p["fc_b"][None, :]
    return out.astype(np.float32)


def count_correct(weights: np.ndarray | Params, images: np.ndarray, labels: np.ndarray) -> int:
    """Number of images whose float32 argmax logit equals the label."""
    pred = np.argmax(forward(weights, images), axis=1)
    return int(np.sum(pred == np.asarray(labels).astype(np.int64)))


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn digits -> 28x28 float32 in [0,1]; stratified 80/20 split."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    imgs8 = digits.images.astype(np.float64) / 16.0
    imgs = np.stack([zoom(im, IMG / 8, order=1) for im in imgs8])
    assert imgs.shape[1:] == (IMG, IMG), imgs.shape
    imgs = np.clip(imgs, 0.0, 1.0).astype(np.float32)
    labels = digits.target.astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(
        imgs, labels, test_size=0.2, stratify=labels, random_state=seed
    )
    return (np.ascontiguousarray(x_tr), np.ascontiguousarray(y_tr),
            np.ascontiguousarray(x_te), np.ascontiguousarray(y_te))


# ----------------------------------------------------------------------------
# Training (float64 for stable gradients; export is float32)
# ----------------------------------------------------------------------------

def _sigmoid64(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-v))


def init_params(rng: np.random.Generator) -> Params:
    """Glorot-style uniform init; biases zero."""
    def glorot(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-lim, lim, size=shape)

    return {
        "conv1_w": glorot((6, 5, 5), 25, 6 * 25),
        "conv1_b": np.zeros(6),
        # Start the shared pool filter near an average so a2 carries signal from the start.
        "pool_w": 1.0 / 16 + glorot((4, 4), 16, 1) * 0.5,
        "pool_b": np.zeros(1),
        "fc_w": glorot((10, 216), 216, 10),
        "fc_b": np.zeros(10),
    }


def loss_and_grads(p: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, int, Params]:
    """Mean softmax cross-entropy, #correct, and gradients for a minibatch."""
    b = x.shape[0]
    patches = np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(1, 2))  # b,24,24,5,5
    pm = patches.reshape(b * 576, 25)                                          # im2col
    z1 = (pm @ p["conv1_w"].reshape(6, 25).T).reshape(b, 24, 24, 6) + p["conv1_b"]
    a1 = _sigmoid64(z1)                                                        # b,24,24,c
    a1c = a1.transpose(0, 3, 1, 2)                                             # b,c,24,24
    blocks = a1c.reshape(b, 6, 6, 4, 6, 4)                                     # b,c,y,i,x,j
    z2 = np.einsum("bcyixj,ij->bcyx", blocks, p["pool_w"]) + p["pool_b"][0]
    a2 = _sigmoid64(z2)
    a2flat = a2.reshape(b, 216)
    logits = a2flat @ p["fc_w"].T + p["fc_b"]

    m = logits - logits.max(axis=1, keepdims=True)
    logp = m - np.log(np.exp(m).sum(axis=1, keepdims=True))
    loss = float(-logp[np.arange(b), y].mean())
    correct = int(np.sum(np.argmax(logits, axis=1) == y))

    dlog = np.exp(logp)
    dlog[np.arange(b), y] -= 1.0
    dlog /= b

    g: Params = {}
    g["fc_w"] = dlog.T @ a2flat
    g["fc_b"] = dlog.sum(axis=0)
    da2 = (dlog @ p["fc_w"]).reshape(b, 6, 6, 6)
    dz2 = da2 * a2 * (1.0 - a2)
    g["pool_w"] = np.einsum("bcyx,bcyixj->ij", dz2, blocks)
    g["pool_b"] = np.array([dz2.sum()])
    da1c = np.einsum("bcyx,ij->bcyixj", dz2, p["pool_w"]).reshape(b, 6, 24, 24)
    dz1 = da1c.transpose(0, 2, 3, 1) * a1 * (1.0 - a1)                         # b,24,24,c
    dz1m = dz1.reshape(b * 576, 6)
    g["conv1_w"] = (dz1m.T @ pm).reshape(6, 5, 5)
    g["conv1_b"] = dz1m.sum(axis=0)
    return loss, correct, g


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> Params:
    """Adam on minibatches; returns float64 parameters."""
    rng = np.random.default_rng(seed)
    p = init_params(rng)
    xd = x.astype(np.float64)
    yi = y.astype(np.int64)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(w) for k, w in p.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    t = 0
    n = x.shape[0]
    for ep in range(1, epochs + 1):
        # Cosine decay: big steps early for the sigmoid stack, small ones to settle.
        lr = LR * 0.5 * (1.0 + np.cos(np.pi * (ep - 1) / epochs))
        order = rng.permutation(n)
        tot_loss, tot_ok = 0.0, 0
        for s in range(0, n, BATCH):
            idx = order[s:s + BATCH]
            loss, ok, g = loss_and_grads(p, xd[idx], yi[idx])
            tot_loss += loss * idx.size
            tot_ok += ok
            t += 1
            for k in p:
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                mh = m[k] / (1 - b1 ** t)
                vh = v[k] / (1 - b2 ** t)
                p[k] = p[k] - lr * mh / (np.sqrt(vh) + eps)
        print(f"epoch {ep:3d}/{epochs}  lr {lr:.5f}  loss {tot_loss / n:.4f}  "
              f"train acc {tot_ok / n:.4f}", flush=True)
    return p


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent.parent / "data",
                    help="output directory (default: samples/mnist_cnn/data)")
    args = ap.parse_args(argv)

    import sklearn

    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_data(args.seed)
    print(f"train {x_tr.shape[0]}  held-out {x_te.shape[0]}", flush=True)

    params = train(x_tr, y_tr, args.epochs, args.seed)
    flat = flatten_weights(params)
    assert flat.size == WEIGHT_COUNT

    # The number that matters: float32 forward on the exact float32 weights.
    n = int(x_te.shape[0])
    k = count_correct(flat, x_te, y_te)
    print(f"held-out accuracy (float32 forward): {k}/{n} = {k / n:.4f}", flush=True)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    wpath = out / "weights.bin"
    ipath = out / "heldout_images.bin"
    lpath = out / "heldout_labels.bin"
    wpath.write_bytes(flat.astype("<f4").tobytes())
    ipath.write_bytes(x_te.astype("<f4").tobytes())
    lpath.write_bytes(y_te.astype(np.uint8).tobytes())

    # Self-check: the files as written must reproduce K.
    w_back = load_weights(wpath)
    i_back = np.fromfile(ipath, dtype="<f4").reshape(-1, IMG, IMG)
    l_back = np.fromfile(lpath, dtype=np.uint8)
    assert wpath.stat().st_size == WEIGHT_COUNT * 4
    assert i_back.shape[0] == n and l_back.shape[0] == n
    k_back = count_correct(w_back, i_back, l_back)
    assert k_back == k, f"self-check failed: {k_back} != {k}"

    logits0 = forward(w_back, i_back[:1])[0]
    print("held-out image 0: label", int(l_back[0]),
          " logits", " ".join(f"{v:.8g}" for v in logits0), flush=True)

    report = {
        "heldout_count": n,
        "heldout_correct": k,
        "heldout_accuracy": k / n,
        "train_count": int(x_tr.shape[0]),
        "seed": args.seed,
        "epochs": args.epochs,
        "weights_sha256": hashlib.sha256(wpath.read_bytes()).hexdigest(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "generated_by": "samples/mnist_cnn/train/train.py",
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
