"""The tutorial's argument, measured: gradients through a vanilla RNN vanish with
distance, LSTM's and GRU's much less, and so only the gated cells learn long delays.

1. ||dLoss/dh_t|| against the distance T - t from the loss, for RNN (tanh), LSTM and
   GRU, each after training on the memory task below at the longest delay.
2. The memory task: the first step shows one of 8 symbols, then ``delay`` steps of
   noise follow; the last step must name the symbol (chance: 12.5%). Test accuracy
   against the delay.

Saves long_memory_gradients.png and long_memory_accuracy.png (in --out-dir).

    python examples/long_memory.py            # a few minutes on 2 CPU cores
    python examples/long_memory.py --quick    # the reduced CI run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import rnnkernels

SYMBOLS = 8
CELLS = {
    "RNN (tanh)": (rnnkernels.FusedRNN, rnnkernels.FusedRNNCell),
    "LSTM": (rnnkernels.FusedLSTM, rnnkernels.FusedLSTMCell),
    "GRU": (rnnkernels.FusedGRU, rnnkernels.FusedGRUCell),
}


def memory_batch(batch: int, delay: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [delay + 1, batch, SYMBOLS + 1] and the symbol to recall [batch]."""
    symbols = torch.randint(0, SYMBOLS, (batch,), generator=generator)
    x = torch.zeros(delay + 1, batch, SYMBOLS + 1)
    x[0, torch.arange(batch), symbols] = 1.0
    x[1:, :, SYMBOLS] = torch.randn(delay, batch, generator=generator)  # a noise channel
    return x, symbols


class Recall(nn.Module):
    def __init__(self, module_class: type, hidden: int) -> None:
        super().__init__()
        self.rnn = module_class(SYMBOLS + 1, hidden)
        self.head = nn.Linear(hidden, SYMBOLS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(x)
        return self.head(output[-1])


def train_recall(module_class: type, delay: int, steps: int, hidden: int, seed: int) -> tuple[Recall, float]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = Recall(module_class, hidden)
    if module_class is rnnkernels.FusedLSTM:
        # The customary forget-gate bias of 1 (Jozefowicz et al., 2015): start by keeping c.
        with torch.no_grad():
            model.rnn.bias_ih_l0[hidden : 2 * hidden].fill_(1.0)
            model.rnn.bias_hh_l0[hidden : 2 * hidden].fill_(0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        x, y = memory_batch(64, delay, generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    x, y = memory_batch(1000, delay, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    return model, accuracy


def gradient_norms(model: Recall, cell_class: type, delay: int) -> list[float]:
    """||dLoss/dh_t|| for t = T-1 ... 0, stepping a Fused cell with the trained weights."""
    rnn = model.rnn
    cell = cell_class(rnn.input_size, rnn.hidden_size, **(
        {"nonlinearity": rnn.nonlinearity} if hasattr(rnn, "nonlinearity") else {}))
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in rnn.state_dict().items()})
    x, y = memory_batch(256, delay, torch.Generator().manual_seed(7))
    state = None
    hiddens = []
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        h = state[0] if isinstance(state, tuple) else state
        h.retain_grad()
        hiddens.append(h)
    nn.functional.cross_entropy(model.head(hiddens[-1]), y).backward()
    return [hiddens[t].grad.norm().item() for t in reversed(range(len(hiddens)))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", type=int, nargs="+", default=[5, 10, 20, 40, 60])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    parser.add_argument("--quick", action="store_true", help="two short delays (for CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.delays, args.steps, args.hidden = [3, 6], 30, 16
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy: dict[str, list[float]] = {}
    norms: dict[str, list[float]] = {}
    for name, (module_class, cell_class) in CELLS.items():
        accuracy[name] = []
        for delay in args.delays:
            model, acc = train_recall(module_class, delay, args.steps, args.hidden, seed=delay)
            accuracy[name].append(acc)
            print(f"{name:<11} delay {delay:3d}: test accuracy {100 * acc:5.1f}%", flush=True)
        norms[name] = gradient_norms(model, cell_class, args.delays[-1])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, values in norms.items():
        axes.semilogy(range(len(values)), values, label=name)
    axes.set_xlabel("distance from the loss (steps)")
    axes.set_ylabel("||dLoss / dh_t||")
    axes.set_title(f"Gradient reaching back, after training at delay {args.delays[-1]}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.out_dir / "long_memory_gradients.png", dpi=100)
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, values in accuracy.items():
        axes.plot(args.delays, [100 * v for v in values], marker="o", label=name)
    axes.axhline(100 / SYMBOLS, color="gray", linestyle=":", label="chance")
    axes.set_xscale("log")
    axes.set_xlabel("delay (steps between the symbol and the question)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Recalling a symbol across a delay")
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.out_dir / "long_memory_accuracy.png", dpi=100)
    print(f"wrote {args.out_dir / 'long_memory_gradients.png'} and "
          f"{args.out_dir / 'long_memory_accuracy.png'}")
    return {"accuracy": accuracy, "gradient_norms": norms}


if __name__ == "__main__":
    main()
