"""What subword regularisation costs: the time to make an epoch's sampled segmentation, and the
memory of the words' tables, on a corpus and on the same corpus repeated (a larger one).

    python scripts/bench_sampling.py SPM_MODEL --train PREFIX --src de --tgt en [--repeat 100]
        [--alpha 0.5] [--nbest 64] [--epochs 3]

For the corpus as it is and, with --repeat R, for its lines written R times into a temporary
corpus (the same words: the tables are built once, every epoch samples R times as many lines),
it makes epochs 1..E the way training does (nmt.data.sampling.SampledEpochs.make: the training
files streamed, the best segmentation, the draw, the corpus file written) on one thread, and
prints a Markdown table: seconds for the first epoch (the words' n-best tables built) and for
each later one, the word types and candidates per side, the tables' bytes and the file's size.
Training makes each epoch in the background while the previous one trains.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from nmt.config import Config
from nmt.data.corpus import read_lines, split_path
from nmt.data.prepare import prepare_data
from nmt.data.sampling import SampledEpochs
from nmt.data.tokenizer import Tokenizer
from nmt.rundir.log import Log


def repeated(prefix: str, langs: tuple[str, str], times: int, folder: Path) -> str:
    """PREFIX's files with every line written `times` times over: a larger corpus (plain text)."""
    for lang in langs:
        text = "".join(line + "\n" for line in read_lines(split_path(prefix, lang)))
        with open(folder / f"train.{lang}", "w", encoding="utf-8") as out:
            for _ in range(times):
                out.write(text)
    return str(folder / "train")


def measure(cfg: Config, epochs: int) -> dict:
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(cfg.tokenizer.model)
    t0 = time.perf_counter()
    src_tok, tgt_tok, train, _ = prepare_data(cfg, Log(None), (tok, tok))
    encode = time.perf_counter() - t0
    sampled = SampledEpochs(cfg, (src_tok, tgt_tok), train, Log(None))
    seconds = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        corpus = sampled.make(epoch)
        seconds.append(time.perf_counter() - t0)
    tables = {
        side: (len(s.types), len(s.keys), s.keys.itemsize * len(s.keys) + s.pieces.itemsize * len(s.pieces))
        for side, s in sampled.samplers.items()
    }
    sampled.close()
    return {
        "pairs": len(train),
        "encode": encode,
        "seconds": seconds,
        "tables": tables,
        "size": corpus.path.stat().st_size,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a unigram sentencepiece model (joint)")
    ap.add_argument("--train", required=True)
    ap.add_argument("--src", default="de")
    ap.add_argument("--tgt", default="en")
    ap.add_argument("--repeat", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--nbest", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sampling-"))
    try:
        rows = []
        for times in [1] + ([args.repeat] if args.repeat > 1 else []):
            train = args.train if times == 1 else repeated(args.train, (args.src, args.tgt), times, work)
            cfg = Config()
            cfg.run_dir = str(work / f"run{times}")
            cfg.data.src_lang, cfg.data.tgt_lang, cfg.data.train = args.src, args.tgt, train
            cfg.tokenizer.model = args.model
            cfg.tokenizer.sampling.alpha, cfg.tokenizer.sampling.nbest_size = args.alpha, args.nbest
            cfg.training.num_threads = 1
            rows.append(measure(cfg, args.epochs))
        print(f"alpha {args.alpha}, nbest {args.nbest}, one thread\n")
        print(
            "| pairs | best segmentation (train.bin) | epoch 1 (tables built) | later epochs "
            "| word types (src / tgt) | candidates | tables | epoch file |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            (ts, cs, bs), (tt, ct, bt) = r["tables"]["source"], r["tables"]["target"]
            later = ", ".join(f"{s:.1f}" for s in r["seconds"][1:])
            print(
                f"| {r['pairs']:,} | {r['encode']:.1f} s | {r['seconds'][0]:.1f} s | {later} s | {ts:,} / {tt:,} | "
                f"{cs + ct:,} | {(bs + bt) / 2**20:.1f} MiB | {r['size'] / 2**20:.1f} MiB |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
