"""Which sources and references `nmt evaluate`, `nmt analyze` and `nmt tune` read: the --src/--ref
files, or the dev/test split the config names (PREFIX.SRC_LANG, PREFIX.TGT_LANG). The paths in a
checkpoint's config are read only when the user asks for its split by name (`--split`): a
checkpoint may come from anyone (`check_eval_choice`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nmt.data.corpus import read_lines, read_parallel, split_path
from nmt.errors import DataError

if TYPE_CHECKING:
    from nmt.config import DataConfig

#: `eval_data`'s message for a split the config does not name (analyze and tune, which take files)
NO_SPLIT = "data.{split}: the run's config names no {split} split; pass --src and --ref"
#: ... and nmt evaluate's, which takes a split only
NO_SPLIT_TO_EVALUATE = "data.{split}: this config names no {split} split to evaluate"
#: analyze's and tune's message when neither a split nor files are named
NO_DATA = "no data named: pass --split dev|test (the run's own split) or --src FILE --ref FILE"


def check_eval_choice(split: str | None, src: str | None, ref: str | None) -> None:
    """A DataError unless the user named the data: --src and --ref (both), or a split."""
    if src or ref:
        if not (src and ref):
            raise DataError("--src and --ref go together: give both files")
    elif split is None:
        raise DataError(NO_DATA)


def eval_data(
    data: DataConfig,
    split: str | None,
    src: str | None = None,
    ref: str | None = None,
    splits: DataConfig | None = None,
    missing: str = NO_SPLIT,
) -> tuple[list[str], list[str], str]:
    """Sources, references and a name for them (the source file, or the split's prefix).

    The files `src` and `ref` (both or neither, aligned line by line) if given; else the split
    `split` ('dev' or 'test'), whose prefix `splits` names (default: `data`), read in `data`'s
    languages. A split that is not named raises DataError(`missing`, formatted with `split`);
    neither files nor a split (None) raises DataError(NO_DATA).
    """
    check_eval_choice(split, src, ref)
    if src or ref:
        sources, references = read_lines(src), read_lines(ref)
        if len(sources) != len(references):
            raise DataError(f"{src} has {len(sources)} lines but {ref} has {len(references)}: expected aligned files")
        if not sources:
            raise DataError(f"{src}: no lines to translate")
        return sources, references, src
    prefix = getattr(splits or data, split)
    if not prefix:
        raise DataError(missing.format(split=split))
    sources, references = read_parallel(prefix, data.src_lang, data.tgt_lang)
    if not sources:
        raise DataError(f"{split_path(prefix, data.src_lang)}: no lines to translate")
    return sources, references, prefix
