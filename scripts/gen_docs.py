"""Write the references generated from the code, so that they cannot drift from it:

    docs/reference/cli.md     the `nmt` command: every subcommand and option (nmt/cli/parser.py)
    docs/reference/config.md  every config key: type, default, range, help (nmt/config/sections.py)
    configs/reference.yaml    the same keys as YAML with their defaults (nmt.config.reference_yaml)
    docs/reference/http.md    the HTTP API of `nmt serve` (nmt/serve: schema.py, app.py, the limits)

    python scripts/gen_docs.py          # write them
    python scripts/gen_docs.py --check  # exit 1, naming the files that differ (tests/test_docs.py)

The pages do not depend on the machine: a default computed from it (`nmt serve --workers`: one
per core) is found by building the parser as if on machines of different core counts, and shown
in the words of MACHINE_DEFAULTS; a new such default stops this script until it has words there.
What the code cannot say in words (what an endpoint, a status code, a response field is for) is
written here, keyed by what the code declares; an undeclared or undescribed one stops it too.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import typing
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python scripts/gen_docs.py"
USAGE_WIDTH = 88

#: defaults that depend on the machine ("COMMAND --option"), in words
MACHINE_DEFAULTS = {"serve --workers": "one per usable core, at most 64"}


def generated_by(source: str) -> str:
    return f"<!-- Generated from {source} by `{COMMAND}`: edit the code, then run that command. -->\n"


def md(text: str) -> str:
    """Text for Markdown that reads the same on GitHub and in mkdocs: `code` spans kept, the
    characters Markdown would take for markup escaped elsewhere."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        part = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts[i] = re.sub(r"([\\*\[\]|]|(?<!\w)_|_(?!\w))", r"\\\1", part)
    return "".join(parts)


def code(value: str) -> str:
    if "`" in value or "|" in value:
        raise ValueError(f"cannot show {value!r} as code in a table")
    return f"`{value}`"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def sentence(text: str) -> str:
    """'train a model' -> 'Train a model.'"""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."


def number(value) -> str:
    """1.0 -> '1', 1e-05 -> '1e-5', 0.25 -> '0.25'."""
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m[1].replace("+", "") + m[2], f"{value:g}")
    return str(value)


# --- the command line ------------------------------------------------------------------------


def _parser(cores: int) -> argparse.ArgumentParser:
    """The `nmt` parser as built on a machine with `cores` cores."""
    from nmt.cli.parser import build_parser

    with (
        mock.patch("os.cpu_count", return_value=cores),
        mock.patch("os.sched_getaffinity", return_value=set(range(cores)), create=True),
    ):
        return build_parser()


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in the order of `nmt --help`."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(c.dest, c.help, sub.choices[c.dest]) for c in sub._choices_actions]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def machine_neutral_commands() -> list[tuple[str, str, argparse.ArgumentParser, dict[str, str]]]:
    """_commands, each with {dest: words} for its defaults that depend on the machine (their help
    as on a machine of 3 cores, its ' (default 3)' taken out)."""
    a, b = _commands(_parser(3)), _commands(_parser(5))
    out = []
    for (name, text, pa), (_, _, pb) in zip(a, b):
        words = {}
        for x, y in zip(_options(pa), _options(pb)):
            if (x.default, x.help) == (y.default, y.help):
                continue
            key = f"{name} {x.option_strings[-1] if x.option_strings else x.dest}"
            if key not in MACHINE_DEFAULTS:
                raise SystemExit(
                    f"gen_docs: the default of `nmt {key}` depends on the machine: add words to MACHINE_DEFAULTS"
                )
            x.help = (x.help or "").replace(f" (default {x.default})", "")
            if x.help != (y.help or "").replace(f" (default {y.default})", ""):
                raise SystemExit(f"gen_docs: the help of `nmt {key}` depends on the machine beyond its default")
            words[x.dest] = MACHINE_DEFAULTS[key]
        out.append((name, text, pa, words))
    return out


def _metavar(a: argparse.Action, braces: bool) -> str:
    if a.metavar is not None:
        m = a.metavar
    elif braces and a.choices:
        m = "{" + ",".join(map(str, a.choices)) + "}"
    else:
        m = a.dest.upper() if a.option_strings else a.dest
    return {None: m, "?": f"[{m}]", "*": f"[{m} ...]", "+": f"{m} [{m} ...]", 0: ""}.get(a.nargs, m)


def _usage_part(a: argparse.Action, bare: bool = False) -> str:
    args = _metavar(a, braces=True)
    if not a.option_strings:
        return args
    text = f"{a.option_strings[0]} {args}".strip()
    return text if a.required or bare else f"[{text}]"


def usage(name: str, parser: argparse.ArgumentParser) -> str:
    """`usage: nmt NAME ...` as argparse writes it, wrapped the same on every Python."""
    group_of = {a: g for g in parser._mutually_exclusive_groups for a in g._group_actions}
    parts, seen = ["[-h]"], set()
    for a in _options(parser):
        g = group_of.get(a)
        if a.option_strings and g is None:
            parts.append(_usage_part(a))
        elif g is not None and id(g) not in seen:
            seen.add(id(g))
            inner = " | ".join(_usage_part(x, bare=True) for x in g._group_actions)
            parts.append(f"({inner})" if g.required else f"[{inner}]")
    parts += [_usage_part(a) for a in _options(parser) if not a.option_strings]
    prefix = f"usage: nmt {name} "
    lines, line = [], prefix
    for part in parts:
        if len(line) + len(part) > USAGE_WIDTH and line.strip() != prefix.strip():
            lines.append(line.rstrip())
            line = " " * len(prefix)
        line += part + " "
    return "\n".join([*lines, line.rstrip()])


def _default(a: argparse.Action, words: dict[str, str]) -> str | None:
    if a.dest in words:
        return words[a.dest]
    d = a.default
    if d is None or d is argparse.SUPPRESS or d is False or d == []:
        return None
    shown = ",".join(number(v) for v in d) if isinstance(d, list) else number(d)
    return f"`{shown}`"


def _help(a: argparse.Action) -> str:
    """The option's help as `--help` shows it, less a closing '(default X)' (shown apart)."""
    text = (a.help or "") % {**vars(a), "default": a.default}
    return text.removesuffix(f" (default {a.default})")


def _says_default(a: argparse.Action, text: str) -> bool:
    """Whether help `text` gives the option's default itself ('default 8000; 0: any')."""
    shown = (_default(a, {}) or "").strip("`")
    return any(f"default{sep}{value}" in text for sep in (" ", ": ") for value in (shown, str(a.default)))


def option_item(a: argparse.Action, words: dict[str, str]) -> str:
    """One option as a list item: its name and argument, its help, default and choices."""
    arg = _metavar(a, braces=False)
    term = ", ".join(a.option_strings) + (f" {arg}" if arg else "") if a.option_strings else arg
    notes = ["required"] if a.required and a.option_strings else []
    help_text, default = _help(a), _default(a, words)
    notes += ["repeatable"] if isinstance(a, argparse._AppendAction) and "repeat" not in help_text else []
    default = None if a.dest not in words and _says_default(a, help_text) else default
    if a.choices:
        notes.append("one of " + ", ".join(f"`{c}`" for c in a.choices))
    if default:
        notes.append(f"default {default}")
    tail = f" ({'; '.join(notes)})" if notes else ""
    return f"- `{term}`: {md(help_text)}{tail}"


def cli_page() -> str:
    from nmt.cli.parser import build_parser

    commands = machine_neutral_commands()
    out = [
        generated_by("nmt/cli/parser.py"),
        "# Command-line reference\n",
        "Every command of `nmt`, with every option, its default and the values it takes, as "
        "`nmt COMMAND --help` gives them. `nmt --version` prints the version. The config keys that "
        "`--set KEY=VALUE` overrides are in the [config reference](config.md); the HTTP API of "
        "`nmt serve` is in the [HTTP reference](http.md).\n",
        f"{md(build_parser().description)}\n",
        table(["Command", "What it does"], [[f"[`nmt {n}`](#nmt-{n})", md(t)] for n, t, _, _ in commands]),
    ]
    for name, text, parser, words in commands:
        out.append(f"## nmt {name}\n")
        out.append(md(sentence(text)) + "\n")
        if parser.description:
            out.append(f"{md(parser.description)}\n")
        out.append(f"```text\n{usage(name, parser)}\n```\n")
        out.append("\n".join(option_item(a, words) for a in _options(parser)) + "\n")
    return "\n".join(out)


# --- the config ------------------------------------------------------------------------------


def _optional(tp):
    """X for `X | None`, else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal or type(None) not in args:
        return None
    return next(a for a in args if a is not type(None))


def type_name(tp) -> str:
    """A type hint in one or two words."""
    if typing.get_origin(tp) is typing.Literal:
        return "choice"
    if typing.get_origin(tp) is tuple:  # tuple[X, ...]: a YAML list
        return f"list of {type_name(typing.get_args(tp)[0])}s"
    if _optional(tp) is not None:
        return f"{type_name(_optional(tp))} or null"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}[tp]


def yaml_value(value) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return '""' if value == "" else number(value)


def accepts(key) -> str:
    """What a key accepts: its range, its choices, or anything of its type."""
    tp, each = _optional(key.type) or key.type, ""
    if typing.get_origin(tp) is tuple:
        tp, each = typing.get_args(tp)[0], "each of "
    if typing.get_origin(tp) is typing.Literal:
        return each + ", ".join(code(str(c)) for c in typing.get_args(tp))
    if tp is bool:
        return each + "`true`, `false`"
    return each + "any string" if tp is str else md(key.accepts)


def config_page() -> str:
    from nmt.config.parse import config_keys

    keys = config_keys()
    header = ["Key", "Type", "Default", "Accepts", "Meaning"]

    def rows(prefix: tuple[str, ...]) -> list[list[str]]:
        return [
            [code(".".join(k.path)), type_name(k.type), code(yaml_value(k.default)), accepts(k), md(k.help)]
            for k in keys
            if not k.is_section and k.path[:-1] == prefix
        ]

    out = [
        generated_by("nmt/config/sections.py"),
        "# Config reference\n",
        "A config is a YAML file of the sections below; it names only the keys it changes, and "
        "every other key takes its default. `--set section.key=value` overrides one key on the "
        "command line (`nmt train`, `nmt prepare`, `nmt evaluate`; see the [CLI reference](cli.md)). "
        "A wrong key, type or value stops the command with one line naming the key, in the words of "
        "the Accepts column. The same keys, as YAML with their defaults: `configs/reference.yaml`.\n",
        "## Top level\n",
        table(header, rows(())),
    ]
    for section in (k for k in keys if k.is_section):
        out.append(f"## {section.path[-1]}\n")
        out.append(md(" ".join(section.help.split())) + "\n")
        out.append(table(header, rows(section.path)))
    return "\n".join(out)


# --- the HTTP API ----------------------------------------------------------------------------

SERVE = ROOT / "nmt" / "serve"

ROUTES = {
    "/": "the page: type sentences, see their translations and attention",
    "/translate": "translate sentences: [below](#post-translate)",
    "/health": '`{"status": "ok", "model": NAME}` while the decoding workers run; '
    '503 with `"status": "stopping"` once the server stops',
    "/info": "the model and its config, the decoding defaults, the device, the limits: [below](#get-info)",
    "/metrics": "Prometheus text format: [below](#get-metrics)",
    "/static": "the page's own files (HTML, JavaScript, CSS)",
}
REQUEST = {
    "src": "the sentences, one string each (a blank one gives an empty entry)",
    "beam": "beam size (1: greedy search)",
    "alpha": "length normalisation exponent",
    "n_best": "how many translations per sentence, best first (at most `beam`)",
    "attention": "add the attention weights to each translation",
    "align": "true: add each translation's `alignment` (word links from attention, as `nmt translate --align`); "
    '"pieces": links between subwords',
    "prefix": 'what each sentence\'s translations begin with, one string per sentence ("": none); a last word '
    "without a space after it may be unfinished and is completed (as `nmt translate --prefix`)",
    "constraints": "phrases each sentence's translations must contain, a list per sentence (`[]`: none), as "
    "`nmt translate --constraints`; a phrase the target vocabulary cannot spell is a 422",
}
TRANSLATION = {
    "text": "the translation, one line",
    "score": "its log-probability divided by the length penalty (what beam search ranks by)",
    "log_prob": "its log-probability, summed over its subwords",
    "src_pieces": 'the subwords of the source, the last `"</s>"`',
    "tgt_pieces": 'the subwords of the translation, the last `"</s>"`',
    "attention": "only when asked for: one row per target subword, one column per source subword, "
    "weights rounded to 4 decimals",
    "alignment": "only with `align`: [source, target] index pairs, 0-based, one per target word (or subword), "
    "EOS dropped",
    "unmet_constraints": "only with `constraints`: the phrases the translation lacks (the search reached the "
    "length limit without them); empty when it has them all",
    "n_best": "the `n_best` translations, best first, each with text, score, log_prob, tgt_pieces (and attention, "
    "alignment, unmet_constraints)",
}
RESPONSE = {
    "translations": "one entry per sentence of `src`, in order: [below](#a-translation)",
    "model": "the model's name (its config's `name`; an ensemble: `ensemble of N (NAME first)`)",
    "elapsed_ms": "milliseconds from the request's arrival to its answer",
    "notes": "warnings, one string each: a sentence longer than any training source is translated whole, "
    "and said so here",
}
STATUS = {
    200: "the answer",
    400: "the body is not JSON, not UTF-8, or holds NaN or Infinity",
    401: "the server has a token (`--token-file`) and the request's `Authorization: Bearer TOKEN` header "
    "is missing or holds another (with `WWW-Authenticate: Bearer`)",
    404: "no such path",
    405: "a path without that method (`GET /translate`)",
    408: "the body did not all arrive within `--read-timeout-s` seconds",
    413: "too large: a body of more than `--max-bytes`, more sentences than `--max-sentences`, "
    "or a sentence of more subwords than `--max-pieces`",
    422: "JSON of the wrong shape: not an object, an unknown field, a value of the wrong type or out of "
    "range (`beam` above `--max-beam`, `n_best` above `beam`), a string that is not Unicode text",
    499: "never sent: the client went away before its answer (counted so in /metrics; its sentences leave the queue)",
    500: "decoding failed (the reason follows)",
    503: "the queue holds `--max-queue` sentences already: retry after the seconds of the `Retry-After` "
    "header (`GET /health`: the server is stopping)",
}
FRAMEWORK_STATUS = {200, 404, 405}  # starlette's own, not in nmt's code


def _tree(name: str) -> ast.Module:
    return ast.parse((SERVE / name).read_text(encoding="utf-8"))


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def routes() -> list[tuple[str, str, str]]:
    """(method, path, path as shown) of every route of nmt.serve.app.create_app."""
    out = []
    for node in ast.walk(_tree("app.py")):
        if isinstance(node, ast.Call) and _name(node.func) in ("Route", "Mount"):
            methods = next((ast.literal_eval(k.value) for k in node.keywords if k.arg == "methods"), ["GET"])
            path = ast.literal_eval(node.args[0])
            shown = path + "/FILE" if _name(node.func) == "Mount" else path
            out += [(m, path, shown) for m in methods]
    return out


def status_codes() -> set[int]:
    """Every HTTP status nmt.serve's code answers with."""
    codes = set()
    for name in ("app.py", "schema.py"):
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Call) and _name(node.func) in ("RequestError", "_error") and node.args:
                if isinstance(node.args[0], ast.Constant):
                    codes.add(node.args[0].value)
            if isinstance(node, ast.keyword) and node.arg == "status_code" and isinstance(node.value, ast.Constant):
                codes.add(node.value.value)
    return codes


def _method_dict(method: str) -> ast.Dict:
    """The largest dict literal in Server.METHOD of nmt/serve/app.py (what it answers)."""
    server = next(n for n in _tree("app.py").body if isinstance(n, ast.ClassDef) and n.name == "Server")
    func = next(n for n in server.body if isinstance(n, ast.AsyncFunctionDef) and n.name == method)
    return max((n for n in ast.walk(func) if isinstance(n, ast.Dict)), key=lambda d: len(ast.dump(d)))


def _keys(d: ast.Dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in zip(d.keys, d.values):
        out.append(prefix + k.value)
        if isinstance(v, ast.Dict):
            out += _keys(v, f"{prefix}{k.value}.")
    return out


def metrics() -> list[tuple[str, str, str, list[str]]]:
    """(name as exposed, kind, help, labels) of nmt/serve/metrics.py's metrics."""
    out = []
    for node in ast.walk(ast.parse((SERVE / "metrics.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and _name(node.func) in ("Counter", "Gauge", "Histogram"):
            kind, name, text = _name(node.func), *(ast.literal_eval(a) for a in node.args[:2])
            labels = ast.literal_eval(node.args[2]) if len(node.args) > 2 else []
            out.append((name + "_total" if kind == "Counter" else name, kind.lower(), text, labels))
    return out


def _check(what: str, declared, described) -> None:
    if set(declared) != set(described):
        raise SystemExit(f"gen_docs: {what}: in the code {sorted(declared)}, described {sorted(described)}")


def _example() -> str:
    from nmt.serve.schema import translation_json
    from nmt.translate import Translation

    best = Translation("1979-05-03", -0.0123, -0.0492, ["▁3", "▁May", "▁1979", "</s>"], ["▁1979", "-05", "-03", "</s>"])
    entry = translation_json([best], attention=False)
    _check("a translation's fields", translation_json([best], True, "words", constrained=True), TRANSLATION)
    body = {"translations": [entry], "model": "dates", "elapsed_ms": 12.5, "notes": []}
    _check("the response's fields", _keys(_method_dict("translate")), RESPONSE)
    return _json(body)


def _json(value, indent: str = "") -> str:
    """JSON with a line per key, and lists of numbers or strings on one line."""
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_json(v, inner)}" for k, v in value.items()]
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [inner + _json(v, inner) for v in value]
    else:
        return json.dumps(value, ensure_ascii=False)
    brackets = "{}" if isinstance(value, dict) else "[]"
    return brackets[0] + "\n" + ",\n".join(items) + "\n" + indent + brackets[1]


def _limits(commands) -> list[list[str]]:
    from dataclasses import fields

    from nmt.serve import Limits

    name, _, parser, words = next(c for c in commands if c[0] == "serve")
    limits = {f.name for f in fields(Limits)}
    actions = [a for a in _options(parser) if a.dest in limits]
    _check("the server's limits", [a.dest for a in actions], limits)
    return [[code(a.option_strings[-1]), _default(a, words), md(_help(a))] for a in actions]


def _request() -> list[list[str]]:
    """The rows of the request's fields: the decoding ones as the config checks them."""
    from nmt.config.parse import config_keys
    from nmt.serve.schema import DECODING_FIELDS, FIELDS

    _check("the request's fields", FIELDS, REQUEST)
    decoding = {k.path[-1]: k for k in config_keys() if k.path[:1] == ("decoding",)}
    limit = "at most `--max-sentences`, each of at most `--max-pieces` subwords"
    rows = [[code("src"), "list of strings", "(required)", limit, REQUEST["src"]]]
    for field, key in DECODING_FIELDS.items():
        k = decoding[key]
        limit = md(k.accepts) + ("; at most `--max-beam`" if field == "beam" else "")
        rows.append([code(field), type_name(k.type), f"the run's `decoding.{key}`", limit, REQUEST[field]])
    rows.append([code("attention"), "boolean", code("false"), " ", REQUEST["attention"]])
    rows.append([code("align"), 'boolean or `"pieces"`', code("false"), " ", REQUEST["align"]])
    rows.append([code("prefix"), "list of strings", "none", "one per sentence of `src`", REQUEST["prefix"]])
    lists = "one per sentence of `src`"
    return rows + [[code("constraints"), "list of lists of strings", "none", lists, REQUEST["constraints"]]]


def http_page() -> str:
    commands = machine_neutral_commands()
    _check("the routes", [p for _, p, _ in routes()], ROUTES)
    _check("the status codes", status_codes() | FRAMEWORK_STATUS, STATUS)
    serve = next(p for n, _, p, _ in commands if n == "serve")
    host, port = (next(a.default for a in _options(serve) if a.dest == d) for d in ("host", "port"))
    assigned = {_name(n.targets[0]): n.value for n in _tree("app.py").body if isinstance(n, ast.Assign)}
    page_headers = ast.literal_eval(assigned["PAGE_HEADERS"])
    out = [
        generated_by("nmt/serve (schema.py, app.py, the options of nmt serve)"),
        "# HTTP API of `nmt serve`\n",
        f"`nmt serve -m RUN_DIR` answers on http://{host}:{port}/ (`--host`, `--port`: see the "
        "[CLI reference](cli.md#nmt-serve)). Requests and answers are JSON in UTF-8; errors are "
        '`{"error": "one line"}` with the status codes below. Started with `--token-file FILE` (or '
        "`NMT_SERVE_TOKEN` in its environment), the server wants `Authorization: Bearer TOKEN` on every "
        "path but `/health`, the page and its files; the page asks for the token once per tab. For "
        "TLS, users and rate limits, put it behind a proxy "
        "([serving](../serving.md#who-may-use-it-a-token-or-a-reverse-proxy)).\n",
        "## Endpoints\n",
        table(["Method", "Path", "Answer"], [[m, code(shown), ROUTES[p]] for m, p, shown in routes()]),
        "## POST /translate\n",
        "The request is a JSON object; every field but `src` may be left out.\n",
        table(["Field", "Type", "Default", "Limits", "Meaning"], _request()),
        '```bash\ncurl -s localhost:8000/translate -d \'{"src": ["3 May 1979"], "beam": 3}\'\n```\n',
        "The answer (an example: its numbers and pieces made up):\n",
        f"```json\n{_example()}\n```\n",
        table(["Field", "Meaning"], [[code(k), v] for k, v in RESPONSE.items()]),
        "### A translation\n",
        table(["Field", "Meaning"], [[code(k), v] for k, v in TRANSLATION.items()]),
        "## Status codes\n",
        table(["Status", "When"], [[str(s), t] for s, t in sorted(STATUS.items())]),
        "A 503 for a full queue carries `Retry-After`: whole seconds until the queue has probably "
        "drained, at the recent decoding rate. The page's files carry "
        + ", ".join(f"`{k}: {v}`" for k, v in page_headers.items())
        + ".\n",
        "## Limits\n",
        "Each is an option of `nmt serve` ([CLI reference](cli.md#nmt-serve)); a request past one is "
        "refused with the status in its line.\n",
        table(["Option", "Default", "What"], _limits(commands)),
        "## GET /info\n",
        "A JSON object: " + ", ".join(code(k) for k in _keys(_method_dict("info"))) + ".\n",
        "## GET /metrics\n",
        table(
            ["Metric", "Kind", "What", "Labels"],
            [[code(n), k, md(t), ", ".join(code(x) for x in labels)] for n, k, t, labels in metrics()],
        ),
    ]
    return "\n".join(out)


# --- writing and checking --------------------------------------------------------------------


def pages() -> dict[str, str]:
    """{path relative to the repository: text} of every generated file."""
    from nmt.config import reference_yaml

    return {
        "docs/reference/cli.md": cli_page(),
        "docs/reference/config.md": config_page(),
        "docs/reference/http.md": http_page(),
        "configs/reference.yaml": reference_yaml(),
    }


def stale(texts: dict[str, str]) -> list[str]:
    """The files whose text on disk is not `texts`'."""
    return [p for p, t in texts.items() if not (ROOT / p).is_file() or (ROOT / p).read_text(encoding="utf-8") != t]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 naming the files that differ")
    args = ap.parse_args(argv)
    texts = pages()
    differ = stale(texts)
    if args.check:
        for path in differ:
            print(f"{path}: differs from the code; run `{COMMAND}`", file=sys.stderr)
        return 1 if differ else 0
    for path in differ:
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / path).write_text(texts[path], encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
