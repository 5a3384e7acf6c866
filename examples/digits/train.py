"""Train the bundled digits CNN and write its committed artefacts.

    python examples/digits/train.py

regenerates, beside this file:

* ``digits_cnn.onnx`` -- the float model (opset 13, dynamic batch, BatchNorm and
  ReLU6 left for qdeploy's passes to fold and fuse);
* ``eval.npz``  -- the held-out split: ``x`` float32 (N, 1, 8, 8), ``y`` int64;
* ``calib.npz`` -- 200 samples of the TRAIN split (``x`` only, same preprocessing),
  for calibration that never sees the evaluation data;
* the accuracy line of ``README.md`` is printed, to be pasted there.

Data: scikit-learn's bundled digits (1797 8x8 grey images, 10 classes), split
with ``train_test_split(test_size=0.25, random_state=0, stratify=None)``.
Preprocessing (:func:`preprocess`): pixel values 0..16 -> ``v / 8 - 1`` (range
[-1, 1]), kept at 8x8 (the files stay small; two stride-2 stages end at 2x2).
The export keeps BatchNorm as its own node (``TrainingMode.PRESERVE`` on an
eval-mode net skips torch's Conv+BN folding) so qdeploy's passes have work.
Everything is seeded and runs single-threaded, so a rerun on
the same torch version gives the same weights.

Needs torch (``pip install -e .[train]``); the tests only read the committed files.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
EPOCHS = 40
CALIB_N = 200


def preprocess(images: np.ndarray) -> np.ndarray:
    """(N, 8, 8) digits pixels 0..16 -> float32 (N, 1, 8, 8) in [-1, 1]."""
    x = images.astype(np.float32) / 8.0 - 1.0
    return np.ascontiguousarray(x[:, None])


def load_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    xtr, xev, ytr, yev = train_test_split(d.images, d.target, test_size=0.25, random_state=0)
    return preprocess(xtr), ytr.astype(np.int64), preprocess(xev), yev.astype(np.int64)


def make_net():
    import torch.nn as nn

    def block(cin, cout, stride, groups=1):
        return [nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU6()]

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                *block(1, 16, 1),                 # 8x8
                *block(16, 32, 2),                # 4x4
                *block(32, 32, 1, groups=32),     # depthwise
                nn.Conv2d(32, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU6(),
                *block(48, 64, 2),                # 2x2
                nn.AdaptiveAvgPool2d(1))
            self.classifier = nn.Linear(64, 10)

        def forward(self, x):
            x = self.features(x)
            # x.view(N, -1) exports the Shape->Gather->Unsqueeze->Concat->Reshape subgraph
            return self.classifier(x.view(x.size(0), -1))

    return DigitsCNN()


def train(xtr, ytr):
    import torch
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    net = make_net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            xb = x[idx]
            # augmentation: roll the batch by up to one original pixel (the borders are background)
            dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
            xb = torch.roll(xb, (dy, dx), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return net.eval()


def export(net) -> bytes:
    import torch
    buf = io.BytesIO()
    torch.onnx.export(net, torch.zeros(1, 1, 8, 8), buf, opset_version=13, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return buf.getvalue()


def onnx_accuracy(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float((logits.argmax(1) == y).mean())


def main() -> int:
    sys.path.insert(0, str(HERE.parents[1]))
    from qdeploy.fsutil import write_npz
    xtr, ytr, xev, yev = load_split()
    model = export(train(xtr, ytr))
    acc = onnx_accuracy(model, xev, yev)
    (HERE / "digits_cnn.onnx").write_bytes(model)
    write_npz(HERE / "eval.npz", {"x": xev, "y": yev})
    write_npz(HERE / "calib.npz", {"x": xtr[:CALIB_N]})
    print(f"float top-1 accuracy: {acc * 100:.2f}% ({int(round(acc * len(yev)))}/{len(yev)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
