"""Process settings that make the CPU path fast: threads and the memory allocator.

Training and decoding allocate and free tensors of the same large sizes (the (N, V) logits,
their gradient) at every step. glibc's malloc serves blocks above its mmap threshold (at most
32 MB) with fresh pages from the kernel and hands them back on free, so every step pays a
page fault per 4 KB of them (what that costs on a small VM: see docs/results.md).
`keep_freed_memory` tells malloc to keep freed memory for reuse instead. The cost: the
process's resident memory stays at its peak, so it is a choice for a whole process that the
`nmt` command and `nmt train` make; library calls (`Translator.load`) leave malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

from nmt.errors import ConfigError

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (glibc's malloc.h)
_done = False


def keep_freed_memory() -> bool:
    """Serve every allocation from malloc's heap and never trim it (glibc only; once per process).

    Returns whether the setting took effect (False on other C libraries and platforms).
    """
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc
        _done = False
    return _done


def configure(num_threads: int = 0) -> None:
    """Set torch's CPU threads (0 keeps torch's default: one per core) and the allocator."""
    if num_threads:
        torch.set_num_threads(num_threads)
    keep_freed_memory()


HALF_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Mixed precision for config key `precision`: bf16 or fp16; autocast off for fp32 (and int8,
    whose activations are fp32: nmt.translate.quantize)."""
    return torch.autocast(device.type, dtype=HALF_TYPES.get(precision, torch.bfloat16), enabled=precision in HALF_TYPES)


def fast_precision(device: torch.device, precision: str) -> bool:
    """Whether matrix products in `precision` are fast here: fp32 always; bf16 and fp16 on CUDA,
    and on the CPU only where oneDNN has kernels for them (bf16: AVX-512 BF16 or AMX; fp16:
    AVX-512 FP16 or AMX-FP16). Elsewhere torch falls back to a reference loop that is hundreds
    of times slower than fp32 (bf16 on an AVX2-only AMD EPYC)."""
    if device.type != "cpu" or precision == "fp32":
        return True
    try:
        probe = {"bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported, "fp16": torch.ops.mkldnn._is_mkldnn_fp16_supported}
        return bool(probe[precision]())
    except (AttributeError, RuntimeError):
        return False


def check_precision(device: torch.device, precision: str, key: str) -> None:
    """Refuse fp16 off the GPU: oneDNN has no fp16 LSTM for most CPUs ("could not create a
    primitive descriptor"), and bf16 is the CPU's half precision (same exponent range as fp32,
    so no loss scaling either)."""
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(f"{key}: int8 is for the CPU (PyTorch's quantized kernels): --device cpu, or bf16 on a GPU")
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError(f"{key}: fp16 is for GPUs; on the CPU use bf16 (or fp32)")


def resolve_device(name: str) -> torch.device:
    """The torch device for config key `device`: auto picks CUDA when there is one."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device (use auto or cpu)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation that failed: Python's MemoryError, torch's
    OutOfMemoryError (CUDA), or the CPU allocator's RuntimeError ("can't allocate memory")."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(error)
