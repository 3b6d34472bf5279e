"""The house rules of the package (issue 17), checked so that they keep: no module over 400
lines, no function over 60, the model package free of I/O and printing, and library calls that
leave the process as they found it."""

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
from nmt.checkpoint import save_checkpoint
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
