"""The house rules of the package, checked so that they keep: no module over 400 lines, no
function over 60, rooms that import only from the rooms below them, one module that names the
files of a run, the model package free of I/O and printing, and library calls that leave the
process as they found it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nmt"
MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_short(path):
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 400, f"{path.name}: split it (one module per concept)"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= 60, f"{path.name}: {node.name} has {length} lines"


#: the package's rooms, lowest first: a module imports only from its own room and those before it
ROOMS = ["foundations", "config", "rundir", "data", "model", "search", "translate", "evaluation", "plots"]
ROOMS += ["training", "serve", "cli"]
FOUNDATIONS = {"errors", "files", "untrusted", "runtime"}  # modules at the top of nmt/


def _room(module: str) -> str | None:
    """The room of a module name (nmt.X...), or None for the package itself (nmt, and the names
    nmt/__init__.py defines: nmt.__version__, nmt.submodules_on_use)."""
    parts = module.split(".")
    is_module = len(parts) > 1 and ((PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file())
    if not is_module or parts[1] == "__main__":
        return None
    return "foundations" if parts[1] in FOUNDATIONS else parts[1]


def _nmt_imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nmt":
            out += [node.module] if node.module != "nmt" else [f"nmt.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "nmt"]
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_rooms_import_only_from_the_rooms_below(path):
    """foundations <- config <- rundir <- data <- model <- search <- translate <- evaluation <-
    plots <- training <- serve <- cli: no circle between rooms, no arrow back up (lazy imports
    inside functions count too)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    own = _room(module)
    if own is None:
        return
    assert own in ROOMS, f"{module}: a room not in ROOMS"
    for target in _nmt_imports(ast.parse(path.read_text(encoding="utf-8"))):
        room = _room(target)
        assert room is None or ROOMS.index(room) <= ROOMS.index(own), f"{module} ({own}) imports {target} ({room})"


def test_only_the_layout_names_the_files_of_a_run():
    """Every file name of a run is spelled in nmt/rundir/layout.py alone, and each of its names
    is one nmt owns (a new run file cannot be left out of what --overwrite may delete)."""
    from nmt.rundir import layout

    names = {value for key, value in vars(layout).items() if key.isupper() and isinstance(value, str)}
    assert names - set(layout.OWNED_FOLDERS) <= layout.OWNED_FILES
    assert {layout.hypotheses(split) for split in layout.SPLITS} <= layout.OWNED_FILES
    spelled = names | layout.OWNED_FILES
    for path in MODULES:
        if path.name == "layout.py" and path.parent.name == "rundir":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in spelled, f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}"
                assert not node.value.endswith(".hyp"), f"{path.relative_to(PACKAGE)}:{node.lineno}: use layout"


def test_the_model_package_does_no_io():
    """nmt/model is what a student reads: tensors in, tensors out."""
    for path in (PACKAGE / "model").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        assert not names & {"print", "open"}, path.name
        assert not imported & {"os", "sys", "yaml", "json", "pathlib"}, path.name


def test_loading_and_translating_leave_the_process_as_it_was(tmp_path):
    """Translator.load and translate do not touch malloc's settings or torch's threads: the
    allocator tuning is the nmt command's choice (nmt.runtime), not a library call's."""
    code = f"""
import torch
from nmt import runtime
from nmt.config import Config, ModelConfig, config_to_dict
from nmt.rundir.checkpoint import save_checkpoint
from nmt.model import build_model
import io, sentencepiece as spm
from nmt.data.tokenizer import PAD, UNK, BOS, EOS
proto = io.BytesIO()
spm.SentencePieceTrainer.train(sentence_iterator=iter(["a b c", "b c d", "c d a"] * 5), model_writer=proto,
    model_type="word", vocab_size=8, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, minloglevel=2)
cfg = Config(model=ModelConfig(emb_size=4, enc_hidden_size=4, dec_hidden_size=4, attention_size=4))
model = build_model(cfg.model, 8, 8)
save_checkpoint({{"config": config_to_dict(cfg), "tokenizers": {{"src": proto.getvalue(), "tgt": None}},
                 "model": model.state_dict()}}, {str(tmp_path / "m.pt")!r})
threads = torch.get_num_threads()
from nmt.translate import Translator
Translator.load({str(tmp_path / "m.pt")!r}).translate(["a b"])
assert torch.get_num_threads() == threads
assert runtime._done is False, "Translator.load changed malloc's settings"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_every_mutant_of_scripts_mutants_still_applies():
    """scripts/mutants.py's one-line mutants name text that is still in the package, once each
    (run the script itself to see that the tests catch them all)."""
    sys.path.insert(0, str(PACKAGE.parent / "scripts"))
    try:
        import mutants
    finally:
        sys.path.pop(0)
    assert len(mutants.MUTANTS) >= 10
    for m in mutants.MUTANTS:
        assert (PACKAGE.parent / m.file).read_text(encoding="utf-8").count(m.old) == 1, m.name


def test_every_module_is_reachable_by_its_dotted_name_after_import_nmt():
    """`import nmt` and then `nmt.evaluation.metrics.bleu(...)`, as the docs write it: every room and
    module of the package is an attribute path from `nmt` (imported on first use)."""
    dotted = [
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in MODULES
        if not p.name.startswith("__main__")
    ]
    code = "import functools, nmt\nfor name in %r:\n    functools.reduce(getattr, name.split('.')[1:], nmt)\n" % [
        name for name in dotted if name != "nmt"
    ]
    code += "print(nmt.evaluation.metrics.bleu(['a b c d'], [['a b c d']]).score)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and float(result.stdout) == pytest.approx(100.0), result.stderr[-2000:]
