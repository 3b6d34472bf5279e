"""The config's sections: every key, its type, its default, its allowed range and its help,
in one place (dataclasses, one per YAML section; nmt.config.parse reads YAML onto them).

A field's `check` (in its metadata) is (test, text for a float, text for an int): e.g. POSITIVE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# --- value checks used in field metadata ----------------------------------------------

# (predicate, what is expected of a float field, of an int field)
POSITIVE = (lambda x: x > 0, "a positive number", "a positive integer")
NON_NEGATIVE = (lambda x: x >= 0, "a number >= 0", "an integer >= 0")
PROBABILITY = (lambda x: 0 <= x < 1, "a number in [0, 1)", "")
AT_LEAST_ONE = (lambda x: x >= 1, "a number >= 1", "an integer >= 1")
FRACTION = (lambda x: 0 < x < 1, "a number in (0, 1)", "")
COVERAGE = (lambda x: 0 < x <= 1, "a number in (0, 1]", "")


def _up_to(high: int, low: int = 1) -> tuple:
    """An integer in [low, high]: upper bounds keep a config (or a checkpoint's: anyone's) from
    asking for a model, a batch or a search that no machine allocates, or a decode without end."""
    return (lambda x: low <= x <= high, f"a number in [{low:,}, {high:,}]", f"an integer from {low:,} to {high:,}")


SIZE = _up_to(8192)  # embedding, hidden and attention sizes
LAYERS = _up_to(16)
BEAM = _up_to(1000)
LENGTH_RATIO = (lambda x: 0 < x <= 10, "a number in (0, 10]", "")
ALPHA = (lambda x: 0 <= x <= 10, "a number in [0, 10]", "")  # lp(T) = T^10 is already 1e30 at T = 1000
LENGTH_OFFSET = _up_to(1000, low=0)
SAMPLING_ALPHA = (lambda x: 0 <= x <= 10, "a number in [0, 10]", "")
NBEST = _up_to(512, low=2)  # sentencepiece's largest n-best
SEED = (lambda x: -(2**63) <= x < 2**63, "", "an integer in [-2^63, 2^63 - 1] (torch.manual_seed's range, with room)")


#: the parts of the model `training.freeze` may name (nmt.model.seq2seq.Seq2Seq.parts)
MODEL_PARTS = Literal["embeddings", "src_embeddings", "tgt_embeddings", "encoder", "decoder", "attention", "output"]


def expected(check: tuple, tp: Any) -> str:
    """The words for what a checked field accepts."""
    return check[2] if tp is int else check[1]


def _f(default: Any, check: tuple | None = None, help: str = "") -> Any:
    """A dataclass field with a default, an optional range check and a help text."""
    return field(default=default, metadata={"check": check, "help": help})


# --- the sections ----------------------------------------------------------------------


@dataclass
class DataConfig:
    """Parallel text: each split is a prefix, its files are `{prefix}.{lang}` (or `.gz`)."""

    src_lang: str = _f("src", help="source file suffix, e.g. de")
    tgt_lang: str = _f("tgt", help="target file suffix, e.g. en")
    train: str = _f("", help="training prefix (required for nmt train)")
    dev: str = _f("", help="dev prefix: validation loss and BLEU, early stopping")
    test: str = _f("", help="test prefix: nmt evaluate, and the score after training")
    generate: Literal["dates"] | None = _f(
        None, help="write the built-in task's missing files where a prefix is DIR/train, DIR/dev or DIR/test"
    )
    max_src_length: int = _f(100, AT_LEAST_ONE, "drop training pairs with longer source (subwords)")
    max_tgt_length: int = _f(100, AT_LEAST_ONE, "drop training pairs with longer target (subwords)")


@dataclass
class SamplingConfig:
    """Subword regularisation (Kudo 2018): each epoch the training pairs are segmented afresh,
    every word drawn from its n best segmentations by P^alpha (unigram models; nmt.data.sampling).
    Dev, test and translation always use the one best segmentation."""

    alpha: float = _f(
        0.0,
        SAMPLING_ALPHA,
        "0 off; else the sharpness of the distribution a word's segmentation is drawn from "
        "(P^alpha: lower is more varied; Kudo used 0.1-0.5)",
    )
    nbest_size: int = _f(64, NBEST, "each word is drawn from its n best segmentations")
    sides: Literal["both", "source", "target"] = _f("both", help="which side of the training pairs is sampled")


@dataclass
class TokenizerConfig:
    """SentencePiece, trained on the training data at the start of `nmt train` unless given."""

    type: Literal["unigram", "bpe"] = _f("unigram")
    vocab_size: int = _f(8000, AT_LEAST_ONE, "upper limit; small data may give fewer pieces")
    joint: bool = _f(True, help="one model for both languages (else one per side)")
    model: str | None = _f(None, help="existing joint .model file (skips training)")
    src_model: str | None = _f(None, help="existing source .model (joint: false)")
    tgt_model: str | None = _f(None, help="existing target .model (joint: false)")
    character_coverage: float = _f(1.0, COVERAGE, "fraction of characters the model covers")
    split_digits: bool = _f(False, help="one piece per digit (good for numbers and dates)")
    max_sentences: int = _f(1_000_000, AT_LEAST_ONE, "sample at most this many lines to train on")
    remap: bool = _f(
        False,
        help="with training.init_from: train new sentencepiece models on this data and copy the parent's "
        "embedding and output rows of the pieces both know (else the parent's models are used)",
    )
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class ModelConfig:
    """The attention model: BiRNN encoder, RNN decoder with attention (two arrangements)."""

    encoder: Literal["birnn"] = _f("birnn", help="the encoder (nmt.model.seq2seq.ENCODERS)")
    rnn_type: Literal["lstm", "gru", "rnn"] = _f("lstm")
    emb_size: int = _f(256, SIZE)
    enc_hidden_size: int = _f(256, SIZE, "per direction; encoder states are 2x this")
    enc_layers: int = _f(1, LAYERS)
    dec_hidden_size: int = _f(256, SIZE)
    dec_layers: int = _f(1, LAYERS)
    decoder: Literal["luong", "bahdanau"] = _f(
        "luong", help="luong: query s_t, predict from ã_t; bahdanau: query s_{t-1}, c_t into the RNN"
    )
    attention: Literal["bahdanau", "luong_dot", "luong_general"] = _f("bahdanau", help="the score e_tj")
    attention_size: int = _f(256, SIZE, "bahdanau: size of W s + U h")
    input_feeding: bool = _f(True, help="luong decoder: feed the previous attentional vector to the RNN")
    bridge: bool = _f(True, help="decoder initial state = tanh(W [enc final fwd; bwd])")
    dropout: float = _f(0.2, PROBABILITY)
    word_dropout: float = _f(
        0.0, PROBABILITY, "in training, each source and target input token's embedding is zeroed with this probability"
    )
    tie_embeddings: bool = _f(False, help="target embedding = output layer (emb = dec hidden)")
    tie_source_embeddings: bool = _f(
        False, help="with tie_embeddings and a joint tokenizer: the source embedding is that matrix too"
    )
    textbook: bool = _f(
        False,
        help="compute as the equations read: torch's cells step by step, tanh "
        "attention, F.cross_entropy (same weights and results, slower)",
    )


@dataclass
class TrainingConfig:
    """Optimisation, batching, validation and stopping."""

    optimizer: Literal["adam", "adamw"] = _f("adam")
    lr: float = _f(1e-3, POSITIVE)
    weight_decay: float = _f(0.0, NON_NEGATIVE)
    clip_norm: float = _f(1.0, NON_NEGATIVE, "max gradient norm; 0 turns clipping off")
    label_smoothing: float = _f(0.1, PROBABILITY)
    batch_size: int = _f(4096, _up_to(1_000_000), "per batch and process: tokens or sentences, see batch_type")
    batch_type: Literal["tokens", "sentences"] = _f("tokens")
    lr_schedule: Literal["constant", "plateau", "inverse_sqrt", "linear"] = _f("plateau")
    warmup_steps: int = _f(0, NON_NEGATIVE, "linear warmup before the schedule")
    plateau_factor: float = _f(0.5, FRACTION, "plateau: lr *= factor when dev stalls")
    plateau_patience: int = _f(2, NON_NEGATIVE, "plateau: validations without gain")
    min_lr: float = _f(1e-5, NON_NEGATIVE)
    max_steps: int = _f(0, NON_NEGATIVE, "0 means no limit")
    max_epochs: int = _f(0, NON_NEGATIVE, "0 means no limit")
    max_minutes: float = _f(0.0, NON_NEGATIVE, "0 means no limit")
    keep_last: int = _f(
        5, AT_LEAST_ONE, "checkpoints/step-N.pt files kept: the newest ones (nmt average --last N averages them)"
    )
    keep_best: int = _f(1, AT_LEAST_ONE, "... and the best ones by valid_metric (last.pt, best.pt always)")
    save_every: int = _f(0, NON_NEGATIVE, "steps between step-N.pt saves besides validations (nmt average); 0 off")
    valid_every: int = _f(500, AT_LEAST_ONE, "steps between validations")
    valid_metric: Literal["bleu", "accuracy", "loss"] = _f("bleu", help="for best and patience")
    patience: int = _f(0, NON_NEGATIVE, "stop after this many validations without gain; 0 off")
    log_every: int = _f(50, AT_LEAST_ONE, "steps between log lines when not on a terminal")
    show_examples: int = _f(3, NON_NEGATIVE, "dev/test translations printed")
    num_threads: int = _f(0, NON_NEGATIVE, "torch CPU threads; 0 keeps torch's default")
    precision: Literal["fp32", "bf16", "fp16"] = _f(
        "fp32", help="bf16/fp16: autocast the forward pass; fp16 scales the loss (GPUs without bf16)"
    )
    init_from: str | None = _f(
        None,
        help="fine-tuning: a new run starts from the weights of this run directory's best checkpoint "
        "(or of this checkpoint file); its model section must match; ignored once the run has a checkpoint",
    )
    freeze: tuple[Literal[MODEL_PARTS], ...] = _f((), help="parts of the model kept fixed, e.g. [encoder]")
    tensorboard: bool = _f(
        False, help="also write metrics.jsonl's numbers as TensorBoard events in RUN_DIR/events (nmt[tensorboard])"
    )


@dataclass
class DecodingConfig:
    """Search defaults for translation, evaluation and the score after training."""

    beam_size: int = _f(5, BEAM, "1 means greedy")
    alpha: float = _f(1.0, ALPHA, "length normalisation exponent")
    length_penalty: Literal["average", "gnmt"] = _f("average", help="score/T^a or /((5+T)/6)^a")
    n_best: int = _f(1, BEAM)
    max_length_ratio: float = _f(1.5, LENGTH_RATIO, "max output length = ratio * source + offset")
    max_length_offset: int = _f(10, LENGTH_OFFSET)
    batch_size: int = _f(64, _up_to(10_000), "sentences per batch (x beam_size rows in beam search)")
    precision: Literal["fp32", "bf16", "fp16", "int8"] = _f(
        "fp32", help="bf16/fp16: autocast; int8: CPU, nmt.translate.quantize"
    )
    stop: Literal["exact", "fast"] = _f(
        "exact",
        help="beam search stops when nothing can beat the n-best (exact), "
        "or when nothing is more probable (fast: the usual heuristic)",
    )
    no_unk: bool = _f(False, help="never output the unknown token (sampling never draws it anyway)")


@dataclass
class Config:
    """A whole experiment. `run_dir` will hold everything translation needs."""

    name: str = _f("nmt")
    run_dir: str = _f("runs/nmt", help="config, sentencepiece models, checkpoints, logs")
    seed: int = _f(1, SEED)
    device: Literal["auto", "cpu", "cuda"] = _f("auto")
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)


# --- building and checking ---------------------------------------------------------------
