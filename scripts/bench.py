#!/usr/bin/env python
"""Benchmark: training throughput and MFU, decoding speed, memory, on this machine.

    python scripts/bench.py --config configs/multi30k_de_en.yaml [--json OUT] [--model RUN_DIR ...]
                            [--device cpu|cuda] [--precisions fp32,bf16,fp16,int8] [--decode-only]

Reports, for fp32 and each other precision asked for that runs fast here (suffix _bf16, _fp16)
- fp32_peak_gflops (bf16_peak_gflops, ...): the best of several large square matmuls, measured
  here in this run with the same threads;
- train_tgt_tokens_per_s: target tokens (no padding, EOS included) per second over `--steps`
  real training steps after `--warmup` steps (batching, forward, backward, clipping,
  optimizer step included: `Trainer.train_step`, what `nmt train` runs), with
  training.precision set to the precision (autocast);
- mfu: the analytic matmul FLOPs of those steps (scripts/flops.py: forward counted product by
  product over the padded batch as the model runs it, training = 3x forward) per second,
  divided by the precision's peak;
- greedy_sents_per_s, beam5_sents_per_s: translating the config's test split (all lines, after
  a warm-up on 64; the best of `--repeats` runs) with `Translator` in batches of the config's
  decoding.batch_size sentences, decoding.precision set to the precision; the model is
  `--model RUN_DIR` if given (a checkpoint file too; several: their ensemble), else the model
  of the fp32 steps above (briefly trained: speed only, its translations are poor and their
  lengths unlike a real model's); beam5_bleu: the BLEU of those beam-5 translations (sacrebleu);
  greedy_sents_per_cpu_s, beam5_sents_per_cpu_s: the same per second of the process's CPU time
  (the steadier figure where other jobs share the machine; with one thread: `--set
  training.num_threads=1`);
- int8 (decoding only, CPU): the same model with its int8 layers (nmt.translate.quantize, listed in
  int8_layers) dynamically quantized; `--decode-only` (with `--model`) skips training;
- peak_rss_mb: the process's peak resident memory; peak_gpu_mb: on CUDA, the most GPU memory
  torch held for tensors.

`--profile N` first prints torch.profiler's table of N fp32 training steps (the operators
that take the time), which is where every optimisation of the training step started.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flops import train_step_flops  # noqa: E402 (scripts/flops.py, beside this file)

from nmt import runtime  # noqa: E402
from nmt.config import load_config  # noqa: E402
from nmt.data.corpus import read_parallel  # noqa: E402
from nmt.data.prepare import prepare_data  # noqa: E402
from nmt.evaluation.metrics import bleu  # noqa: E402
from nmt.rundir.log import Log  # noqa: E402
from nmt.training.trainer import Trainer  # noqa: E402
from nmt.translate import Translator  # noqa: E402
from nmt.translate.quantize import int8_layers, quantize_int8  # noqa: E402


def machine_name(device: torch.device) -> str:
    """The GPU's name on CUDA; else the CPU model (Linux), with torch's vector instruction level
    and the core count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores"


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul in `dtype` (n = 8192 on a GPU)."""
    n = 8192 if device.type == "cuda" else n
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up (oneDNN kernels are built on first use)
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (timings on CUDA measure work done, not work queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(trainer: Trainer, batches: list[list[int]], warmup: int, steps: int) -> tuple[float, float, int]:
    """(target tokens/s, matmul FLOP/s, steps) over `steps` batches after `warmup` batches."""
    for indices in batches[:warmup]:
        trainer.train_step([indices])
    timed = batches[warmup : warmup + steps]
    vocab = trainer.model.output.out_features
    flops = 0  # counted before the clock starts
    for indices in timed:
        batch = trainer.sampler.batch(indices)
        flops += train_step_flops(trainer.cfg.model, batch.src_lengths.tolist(), batch.tgt_in.size(1), vocab)
    tokens = 0
    synchronize(trainer.device)
    t0 = time.perf_counter()
    for indices in timed:
        tokens += trainer.train_step([indices])[1]
    synchronize(trainer.device)
    seconds = time.perf_counter() - t0
    return tokens / seconds, flops / seconds, steps


def print_profile(trainer: Trainer, warmup: list[list[int]], batches: list[list[int]], rows: int = 20) -> None:
    """torch.profiler's operator table (by own CPU time) of training steps on `batches`."""
    from torch.profiler import ProfilerActivity, profile

    for indices in warmup:
        trainer.train_step([indices])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for indices in batches:
            trainer.train_step([indices])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def decode_speed(
    translator: Translator, lines: list[str], beam: int, repeats: int = 1
) -> tuple[float, float, list[str]]:
    """(sentences per second, sentences per CPU second of this process, the translations): the
    best of `repeats` timed runs after a warm-up. On a machine other jobs share, the CPU-time
    rate (with one thread) is the steadier figure: it does not count the time others hold the cores."""
    translator.translate(lines[:64], beam=beam)  # warm-up (kernels, allocator)
    best, best_cpu = 0.0, 0.0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = translator.translate(lines, beam=beam)
        best = max(best, len(lines) / (time.perf_counter() - t0))
        best_cpu = max(best_cpu, len(lines) / (time.process_time() - c0))
    assert len(out) == len(lines)
    return best, best_cpu, out


def precision_translator(translator: Translator, precision: str, int8: list[str] | None = None) -> Translator:
    """The translator decoding in `precision`: the same model (autocast), or for int8 a quantized
    copy (layers `int8`, default nmt.translate.quantize's choice)."""
    cfg = copy.deepcopy(translator.cfg)
    cfg.decoding.precision = precision
    model = translator.model
    if precision == "int8":
        model = quantize_int8(model, translator.device, int8)
    return Translator(model, translator.src_tok, translator.tgt_tok, cfg, translator.device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--json", help="also write the results here")
    p.add_argument(
        "--model",
        action="append",
        help="run directory or checkpoint to decode with (default: the briefly trained model); repeated: an ensemble",
    )
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=30, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument(
        "--precisions", default="fp32,bf16", help="precisions to measure, of fp32, bf16, fp16, int8 (fp32 always)"
    )
    p.add_argument("--decode-only", action="store_true", help="with --model: measure decoding only")
    p.add_argument("--repeats", type=int, default=1, help="timed decoding runs; the best counts")
    p.add_argument(
        "--int8-layers", help="int8: these modules (comma-separated names) instead of nmt.translate.quantize's"
    )
    p.add_argument("--profile", type=int, default=0, metavar="N", help="print the profile of N fp32 training steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()

    cfg = load_config(args.config, args.set)
    device = runtime.resolve_device(args.device)
    runtime.configure(cfg.training.num_threads)
    if args.decode_only and not args.model:
        raise SystemExit("bench.py: --decode-only: give --model RUN_DIR (the model to decode with)")
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "config": args.config,
    }
    precisions = measurable_precisions(
        ["fp32"] + [x for x in args.precisions.split(",") if x != "fp32"], device, results
    )
    if args.model:
        translator, results["decode_model"] = Translator.load(args.model, args.device), " + ".join(args.model)
        translator.cfg.decoding.batch_size = cfg.decoding.batch_size  # a speed setting: the config's
    if not args.decode_only:
        trainer, src_tok, tgt_tok = measure_training(cfg, device, args, precisions, results)
    if not args.model:
        cfg.training.precision = "fp32"
        translator = Translator(trainer.model, src_tok, tgt_tok, cfg, device)
        results["decode_model"] = f"briefly trained ({args.warmup + args.steps} steps): speed only"
    int8 = args.int8_layers.split(",") if args.int8_layers else None
    measure_decoding(translator, cfg, precisions, args.repeats, results, int8)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        results["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20

    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:,.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def measure_training(cfg, device: torch.device, args, precisions: list[str], results: dict):
    """Training throughput and MFU in each training precision; returns (the fp32 trainer, tokenizers)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run_dir = tmp
        log = Log(Path(tmp))
        src_tok, tgt_tok, train, _ = prepare_data(cfg, log)
        for precision in (p for p in precisions if p in TRAINING_PRECISIONS):
            cfg.training.precision = precision
            torch.manual_seed(cfg.seed)
            trainer = Trainer(cfg, src_tok, tgt_tok, train, None, log, device)
            batches = trainer.sampler.epoch_batches(1)
            if args.profile and precision == "fp32":
                print_profile(trainer, batches[: args.warmup], batches[-args.profile :])
            rate, flops, _ = train_throughput(trainer, batches, args.warmup, args.steps)
            results[f"train_tgt_tokens_per_s{suffix(precision)}"] = rate
            results[f"mfu{suffix(precision)}"] = flops / 1e9 / results[f"{precision}_peak_gflops"]
            if precision == "fp32":
                fp32_trainer = trainer
        log.close()
    return fp32_trainer, src_tok, tgt_tok


def measure_decoding(
    translator: Translator, cfg, precisions: list[str], repeats: int, results: dict, int8: list[str] | None
) -> None:
    """Greedy and beam-5 sentences/s and beam-5 BLEU on the config's test split, per precision
    (int8: the layers `int8`, default nmt.translate.quantize's)."""
    src, ref = read_parallel(cfg.data.test, cfg.data.src_lang, cfg.data.tgt_lang)
    results["decode_sentences"] = len(src)
    for precision in precisions:
        tr = precision_translator(translator, precision, int8)
        if precision == "int8":
            results["int8_layers"] = ", ".join(int8 or int8_layers(translator.model))
        for name, beam in (("greedy", 1), ("beam5", 5)):
            rate, cpu_rate, out = decode_speed(tr, src, beam, repeats)
            results[f"{name}_sents_per_s{suffix(precision)}"] = rate
            results[f"{name}_sents_per_cpu_s{suffix(precision)}"] = cpu_rate
        results[f"beam5_bleu{suffix(precision)}"] = bleu(out, [ref]).score


TRAINING_PRECISIONS = ("fp32", "bf16", "fp16")


def suffix(precision: str) -> str:
    """The key suffix of a precision's figures: none for fp32, else _bf16 / _fp16 / _int8."""
    return "" if precision == "fp32" else f"_{precision}"


def measurable_precisions(asked: list[str], device: torch.device, results: dict) -> list[str]:
    """The asked precisions that run fast here, with their matmul peaks in `results`; a note
    (and None figures) for the others."""
    dtypes = {"fp32": torch.float32, **runtime.HALF_TYPES}
    out = []
    for precision in asked:
        if precision not in dtypes and precision != "int8":
            raise SystemExit(f"bench.py: --precisions: expected fp32, bf16, fp16 or int8, got {precision!r}")
        if precision == "int8":
            if device.type == "cpu":
                out.append(precision)  # decoding only: int8 is not a training precision
            else:
                results["int8_note"] = "not measured: int8 decoding is for the CPU"
        elif precision == "fp16" and device.type == "cpu":
            results["fp16_note"] = "not measured: fp16 is for GPUs (oneDNN has no fp16 LSTM for this CPU)"
        elif runtime.fast_precision(device, precision):
            results[f"{precision}_peak_gflops"] = matmul_peak_gflops(dtypes[precision], device)
            out.append(precision)
        else:  # a 2048^2 bf16 product took 58 s on such a CPU: the figures would take hours
            results[f"train_tgt_tokens_per_s{suffix(precision)}"] = None
            results[f"{precision}_note"] = (
                f"not measured: this CPU has no {precision} matrix kernels "
                "(oneDNN reports none; AVX-512 BF16 or AMX needed)"
            )
    return out


if __name__ == "__main__":
    main()
