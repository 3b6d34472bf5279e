"""Fingerprint a run: hashes that change when training or search changes by a single bit.

    python scripts/fingerprint.py RUN_DIR [--translate FILE]

Prints one JSON object: a SHA-256 of every weight of checkpoints/last.pt (names, shapes and
raw bytes, in name order), of its optimizer state, of the training losses in metrics.jsonl
(as logged, at full precision), and, with --translate, of the run's beam-search translations
of FILE. Refactorings that promise "no behaviour change" run the same training before and
after, and compare the two fingerprints: equal hashes mean bit-identical training and search.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch


def tensor_hash(named: dict) -> str:
    """SHA-256 over (name, shape, dtype, bytes) of every tensor in a flat or nested dict."""
    digest = hashlib.sha256()

    def visit(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{prefix}.{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{prefix}.{i}", item)
        elif isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{prefix}{tuple(value.shape)}{t.dtype}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            digest.update(f"{prefix}={value!r}".encode())

    visit("", named)
    return digest.hexdigest()


def fingerprint(run_dir: Path, translate: Path | None) -> dict:
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    dev = [(r["step"], r["dev_loss"], r["dev_bleu"]) for r in records if r.get("kind") == "valid"]
    out = {
        "step": state["progress"]["step"],
        "weights": tensor_hash(state["model"]),
        "optimizer": tensor_hash(state["optimizer"]),
        "train_losses": hashlib.sha256(repr(losses).encode()).hexdigest(),
        "dev": hashlib.sha256(repr(dev).encode()).hexdigest(),
        "last_loss": losses[-1] if losses else None,
    }
    if translate is not None:
        from nmt.translate import Translator

        lines = translate.read_text(encoding="utf-8").splitlines()
        hyps = Translator.load(run_dir).translate(lines)
        out["translations"] = hashlib.sha256("\n".join(hyps).encode()).hexdigest()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--translate", type=Path, help="also hash the run's translations of this file")
    args = p.parse_args()
    json.dump(fingerprint(args.run_dir, args.translate), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
