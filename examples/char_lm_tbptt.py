"""A character-level language model trained with truncated BPTT on a real corpus that
is on every machine: the Python standard library's own source files.

The text is one long stream, cut into ``--streams`` parallel rows; ``rnnkernels.tbptt``
runs the LSTM over it ``--chunk`` steps at a time, carrying (h, c) across chunks.
Reports bits per character on held-out text (the last 10%) and prints a sample.

    python examples/char_lm_tbptt.py            # a few minutes on 2 CPU cores
    python examples/char_lm_tbptt.py --quick    # the reduced CI run
"""

from __future__ import annotations

import argparse
import math
import sysconfig
import time
from pathlib import Path

import torch
from torch import nn

import rnnkernels
from rnnkernels.tbptt import tbptt

STDLIB_FILES = ["textwrap.py", "argparse.py", "inspect.py", "dataclasses.py", "typing.py",
                "functools.py", "pathlib.py", "shutil.py", "subprocess.py", "tarfile.py"]


def load_corpus(max_chars: int) -> str:
    folder = Path(sysconfig.get_paths()["stdlib"])
    text = "\n".join((folder / name).read_text(encoding="utf-8", errors="replace")
                     for name in STDLIB_FILES if (folder / name).exists())
    if not text:
        raise RuntimeError(f"no standard-library sources found in {folder}")
    return text[:max_chars]


class CharLM(nn.Module):
    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.rnn = rnnkernels.FusedLSTM(64, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor, hx=None):
        output, hx = self.rnn(self.embed(tokens), hx)
        return self.head(output), hx


class _Adapter(nn.Module):
    """tbptt runs ``module(x, hx) -> (output, hx)``; here x is the token ids and output
    the logits, with the time axis at 1 like the LSTM."""

    batch_first = True

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, hx=None):
        return self.model(tokens, hx)


def bits_per_char(model: CharLM, ids: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        logits, _ = model(ids[:-1].unsqueeze(0))
        nats = nn.functional.cross_entropy(logits[0], ids[1:]).item()
    model.train()
    return nats / math.log(2)


def sample(model: CharLM, alphabet: list[str], prompt: str, length: int) -> str:
    index = {c: i for i, c in enumerate(alphabet)}
    ids = torch.tensor([[index[c] for c in prompt if c in index]])
    generator = torch.Generator().manual_seed(0)
    model.eval()
    out, hx = [], None
    with torch.no_grad():
        logits, hx = model(ids, hx)
        for _ in range(length):
            probs = torch.softmax(logits[0, -1] / 0.8, -1)
            next_id = torch.multinomial(probs, 1, generator=generator)
            out.append(alphabet[next_id.item()])
            logits, hx = model(next_id.view(1, 1), hx)
    model.train()
    return prompt + "".join(out)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=400_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a small corpus and model (for CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.chars, args.hidden, args.epochs = 40_000, 64, 1
    torch.manual_seed(0)
    text = load_corpus(args.chars)
    alphabet = sorted(set(text))
    index = {c: i for i, c in enumerate(alphabet)}
    ids = torch.tensor([index[c] for c in text])
    split = int(0.9 * len(ids))
    train, held_out = ids[:split], ids[split:]
    per_stream = len(train) // args.streams
    streams = train[: per_stream * args.streams].view(args.streams, per_stream)
    inputs, targets = streams[:, :-1], streams[:, 1:]
    model = CharLM(len(alphabet), args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def loss_fn(logits: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets[:, start:stop].flatten())

    print(f"corpus: {len(text)} characters of Python stdlib source, {len(alphabet)} symbols")
    held_bpc = float("nan")
    for epoch in range(1, args.epochs + 1):
        begin = time.perf_counter()
        result = tbptt(_Adapter(model), inputs, loss_fn, args.chunk, optimizer=optimizer)
        train_bpc = sum(result.losses) / len(result.losses) / math.log(2)
        held_bpc = bits_per_char(model, held_out)
        print(f"epoch {epoch}  train {train_bpc:.3f} bits/char  held-out {held_bpc:.3f} bits/char  "
              f"{time.perf_counter() - begin:.1f} s", flush=True)
    print("sample:\n" + sample(model, alphabet, "def ", 200 if not args.quick else 40))
    return held_bpc


if __name__ == "__main__":
    main()
