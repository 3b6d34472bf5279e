"""int8 decoding on the CPU (`--precision int8`): PyTorch's dynamic quantization of the layers
where it gains.

`torch.ao.quantization.quantize_dynamic` replaces an `nn.Linear` (or `nn.LSTM`, `nn.GRU`) by a module
that keeps its weight matrix in int8 (one scale per matrix) and, at every call, quantizes the
input activations on the fly, multiplies in int8 with fbgemm/oneDNN kernels and returns fp32:
activations, attention, the softmax and the search stay fp32; only the products of the chosen
weight matrices are int8.

Which layers (`int8_layers`): those where int8 was measured to be faster (docs/results.md): the
output layer W_o (Hd x V, 256 x 8000 for the reference model: the largest product of every
step), the decoder's products (W_hh, the input feeding's W_a, W_c's two halves; the
`bahdanau` arrangement's W_x of the context), and the encoder's LSTMs (or GRUs). W_e stays
fp32: search looks its products up in a table made once (`FrozenSeq2Seq._input_table`), which is
exact and measured a little faster than the int8 product (1.64x fp32 against 1.60x). The fast
decoder fuses its products as `addmm`s on the weight tensors; for an int8 layer
(`nmt.model.decoder.plus_product`) it adds the layer's own product instead. They gain at the
rows of batched search (640 rows: 3-4x faster in int8 than in fp32) and lose a little at a
single sentence's 5 rows, where a step's time is mostly elsewhere. The attention's W and U stay
fp32: no gain measured (a small product, or one per batch). A model in its textbook form
(`model.textbook`) reads the decoder's weights itself: there only W_o is int8.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from nmt.errors import ConfigError
from nmt.model import Seq2Seq

#: the decoder's layers quantized to int8 (module names in a Seq2Seq), fast and textbook form
_PRODUCTS = ("decoder.w_hh", "decoder.w_feed", "decoder.w_ctx", "decoder.w_cs", "decoder.w_cc")
DECODER_INT8 = {False: ("output", *_PRODUCTS), True: ("output",)}
#: the encoder's recurrent layers PyTorch has dynamic int8 kernels for (not the vanilla RNN)
ENCODER_INT8 = (nn.LSTM, nn.GRU)


def int8_layers(model: nn.Module) -> list[str]:
    """The names of the layers that `quantize_int8` makes int8 in `model` (a Seq2Seq, or an
    ensemble of them): in each Seq2Seq, DECODER_INT8's and the encoder's LSTMs or GRUs."""
    out = []
    for prefix, part in model.named_modules():
        if isinstance(part, Seq2Seq):
            names = dict(part.named_modules())
            decoder = [n for n in DECODER_INT8[part.textbook] if isinstance(names.get(n), nn.Linear)]
            encoder = [n for n, m in names.items() if n.startswith("encoder.") and isinstance(m, ENCODER_INT8)]
            out += [f"{prefix}.{n}" if prefix else n for n in decoder + encoder]
    return out


def int8_engine() -> str:
    """The quantized engine to pack the int8 weights for: oneDNN where the CPU has AMX tiles (its
    int8 products use them: the reference model's output layer in 1/6 of fp32's time on this
    project's Xeon, against 3/5 with fbgemm), else torch's default (fbgemm's AVX2/AVX-512 kernels)."""
    try:
        amx = bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        amx = False
    engines = torch.backends.quantized.supported_engines
    return "onednn" if amx and "onednn" in engines else torch.backends.quantized.engine


def quantize_int8(model: nn.Module, device: torch.device, layers: list[str] | None = None) -> nn.Module:
    """A copy of `model` (in eval mode, on the CPU) with the `int8_layers` (or the named `layers`:
    nn.Linear, nn.LSTM or nn.GRU modules, for measuring others) dynamically quantized."""
    if device.type != "cpu":
        raise ConfigError(f"decoding.precision: int8 is for the CPU (PyTorch's quantized kernels), not {device.type}")
    if not torch.backends.quantized.supported_engines or torch.backends.quantized.engine == "none":
        raise ConfigError("decoding.precision: int8: this build of PyTorch has no quantized CPU kernels")
    chosen = set(int8_layers(model) if layers is None else layers)
    engine = torch.backends.quantized.engine
    try:  # the weights are packed for the engine set now; it is the process's setting: restored after
        torch.backends.quantized.engine = int8_engine()
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model.eval(), chosen, dtype=torch.qint8)
    finally:
        torch.backends.quantized.engine = engine
