"""Pictures: attention heatmaps, learning curves, BLEU against α.

matplotlib is an optional extra (`pip install 'nmt[plot]'`): training and translation do not
need it, and it is a large install for a server that only translates. Every function here
raises MissingDependency, with the install command, when it is absent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nmt.errors import DataError, MissingDependency
from nmt.files import atomic_write
from nmt.rundir.layout import LEARNING_CURVES, METRICS
from nmt.rundir.records import read_metrics

if TYPE_CHECKING:
    from nmt.evaluation.tuning import TuneResult
    from nmt.translate import Translation

INSTALL = "pip install 'nmt[plot]' (or pip install matplotlib)"


def _pyplot():
    """matplotlib.pyplot with the file-only Agg backend."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency(f"drawing needs matplotlib: {INSTALL}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Write the figure as a PNG atomically (a kill never leaves half a picture)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    fig.clf()
    return path


def attention_png(translation: Translation, path: str | Path, title: str = "") -> Path:
    """One heatmap: output subwords down, source subwords across, weight as colour."""
    plt = _pyplot()
    if translation.attention is None:
        raise ValueError("the translation carries no attention weights (search with attention=True)")
    weights = translation.attention.numpy()  # (T, S)
    T, S = weights.shape
    fig = plt.figure(figsize=(max(4.0, 0.45 * S + 2.0), max(3.0, 0.4 * T + 1.5)))
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), translation.src_pieces[:S], rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(T), translation.tgt_pieces[:T], fontsize=9)
    ax.set_xlabel("source subwords")
    ax.set_ylabel("output subwords")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    result = _save(fig, path)
    plt.close(fig)
    return result


def learning_curves_png(
    run_dir: str | Path, path: str | Path | None = None, note: Callable[[str], None] | None = None
) -> Path:
    """Training loss, dev loss and dev BLEU against steps, from RUN_DIR/metrics.jsonl (`note`:
    see read_metrics)."""
    plt = _pyplot()
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / METRICS, note)
    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "valid"]
    if not train and not valid:
        raise DataError(f"{run_dir / METRICS}: no training or validation records to draw")
    fig = plt.figure(figsize=(10, 4))
    loss_ax, bleu_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if train:
        loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="training loss (smoothed labels)")
    if valid:
        steps = [r["step"] for r in valid]
        loss_ax.plot(steps, [r["dev_loss"] for r in valid], "o-", label="dev loss")
        bleu_ax.plot(steps, [r["dev_bleu"] for r in valid], "o-", color="tab:green")
        best = [r for r in valid if r.get("best")]
        if best:
            bleu_ax.plot(
                [r["step"] for r in best],
                [r["dev_bleu"] for r in best],
                "*",
                color="tab:red",
                markersize=12,
                label="new best",
            )
            bleu_ax.legend()
    loss_ax.set(xlabel="step", ylabel="cross-entropy per token", title="loss")
    loss_ax.legend()
    bleu_ax.set(xlabel="step", ylabel="BLEU", title="dev BLEU (greedy)")
    for ax in (loss_ax, bleu_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    result = _save(fig, path or run_dir / LEARNING_CURVES)
    plt.close(fig)
    return result


def tune_png(results: list[TuneResult], path: str | Path) -> Path:
    """Dev BLEU against alpha, one line per beam size."""
    plt = _pyplot()
    fig = plt.figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for beam in sorted({r.beam_size for r in results}):
        rows = sorted((r for r in results if r.beam_size == beam), key=lambda r: r.alpha)
        ax.plot([r.alpha for r in rows], [r.bleu for r in rows], "o-", label="greedy" if beam == 1 else f"beam {beam}")
    ax.set(xlabel="alpha (length normalisation)", ylabel="dev BLEU", title="BLEU against alpha")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    result = _save(fig, path)
    plt.close(fig)
    return result
