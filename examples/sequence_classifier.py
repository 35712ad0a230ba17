"""The tutorial's classifier: a 2-layer recurrent network reads each image one row per
time step; the last step's output goes through a Linear layer to the class scores.

Data: scikit-learn's bundled 8x8 handwritten digits (no download): 8 steps of 8
features. Adam, learning rate 1e-3, cross entropy.

    python examples/sequence_classifier.py --rnn fused-lstm      # or fused-gru, nn-lstm
    python examples/sequence_classifier.py --quick               # the reduced CI run
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

import rnnkernels

RNNS = {"fused-lstm": rnnkernels.FusedLSTM, "fused-gru": rnnkernels.FusedGRU, "nn-lstm": nn.LSTM}


class RowClassifier(nn.Module):
    def __init__(self, rnn: str, xdim: int, hdim: int = 256, ydim: int = 10, layers: int = 2) -> None:
        super().__init__()
        self.rnn = RNNS[rnn](xdim, hdim, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hdim, ydim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # images: [B, rows, xdim]
        output, _ = self.rnn(images)
        return self.head(output[:, -1])


def load(seed: int) -> tuple[torch.Tensor, ...]:
    """Digits scaled to [0, 1], shuffled and split 80/20 into train and test."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # [1797, 8, 8]
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    split = int(0.8 * len(labels))
    train, test = order[:split], order[split:]
    return images[train], labels[train], images[test], labels[test]


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        correct = (model(images).argmax(1) == labels).float().mean().item()
    model.train()
    return correct


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rnn", choices=list(RNNS), default="fused-lstm")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 epochs, hidden 32 (for CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.hidden = 2, 32
    torch.manual_seed(args.seed)
    train_x, train_y, test_x, test_y = load(args.seed)
    model = RowClassifier(args.rnn, train_x.shape[-1], args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    test_accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        begin = time.perf_counter()
        order = torch.randperm(len(train_y))
        total = 0.0
        for batch in order.split(args.batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(train_x[batch]), train_y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        seconds = time.perf_counter() - begin
        test_accuracy = accuracy(model, test_x, test_y)
        print(f"epoch {epoch:2d}  loss {total / len(train_y):.4f}  "
              f"test accuracy {100 * test_accuracy:.1f}%  {seconds:.2f} s/epoch", flush=True)
    return test_accuracy


if __name__ == "__main__":
    main()
