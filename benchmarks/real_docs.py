"""A real-document text corpus assembled from what this machine has offline (no downloads).

    python benchmarks/real_docs.py [--out /tmp/dsir-bench/real-docs.jsonl]   # prints per-genre counts

Genres (each document is one JSON line ``{"id", "text", "genre", "tokens"}``; ``tokens`` counts
DSIR's WordPunct tokens ``\\w+|[^\\w\\s]+``; documents under ``MIN_TOKENS`` are dropped, nothing is
truncated; a file over ``SPLIT_TOKENS`` is cut at blank lines into blocks of about ``BLOCK_TOKENS``):
  man        English man pages, /usr/share/man/man[1-8]/*.gz, roff markup stripped crudely
  changelog  /usr/share/doc/*/changelog*.gz (Debian and upstream), consecutive entries merged
             into blocks of >= MIN_TOKENS
  copyright  /usr/share/doc/*/copyright
  licence    /usr/share/common-licenses/*, LICENSE*/COPYING* files of installed Python packages
  readme     METADATA (package descriptions) of installed Python packages
  docstring  module / class / function docstrings of the stdlib and of the installed packages
  source     top-level def / class blocks of the same Python files

``build_corpus`` walks these once (a few minutes) and caches the result at ``--out``;
``pool_and_target`` draws a pool where ``target_genre`` is a minority and a disjoint target
sample of that genre.
"""

from __future__ import annotations

import argparse
import ast
import glob
import gzip
import json
import os
import re
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

MIN_TOKENS = 100
SPLIT_TOKENS = 20_000
BLOCK_TOKENS = 10_000
_TOK = re.compile(r"\w+|[^\w\s]+")
PY_ROOTS = [f"/usr/lib/python3.{v}" for v in range(8, 14)] + [
    os.path.join(os.path.dirname(os.path.dirname(np.__file__)))]  # the stdlib(s) and this venv's site-packages


def ntok(text: str) -> int:
    return sum(1 for _ in _TOK.finditer(text))


def _read(path: str) -> str:
    try:
        raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    except OSError:
        return ""
    return raw.decode("utf-8", errors="replace")


_ROFF_ESC = re.compile(r"\\f[BIRP1-4]|\\f\[[^\]]*\]|\\\([a-zA-Z-]{2}|\\\[[^\]]*\]|\\[&\-e|^~0:%/,]|\\s[-+]?\d|\\\*\(?..|\\\*.")


def strip_roff(src: str) -> str:
    out = []
    for line in src.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\}', ".\\\\\"")):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].split(None, 1)
            line = parts[1].replace('"', "") if len(parts) > 1 else ""
            if not line:
                out.append("")
                continue
        out.append(_ROFF_ESC.sub("", line).replace("\\", ""))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _blocks(text: str) -> list[str]:
    """A text as-is, or cut at blank lines into ~BLOCK_TOKENS pieces when it is over SPLIT_TOKENS."""
    if ntok(text) <= SPLIT_TOKENS:
        return [text]
    out, cur, n = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        k = ntok(para)
        if cur and n + k > BLOCK_TOKENS:
            out.append("\n\n".join(cur))
            cur, n = [], 0
        cur.append(para)
        n += k
    if cur:
        out.append("\n\n".join(cur))
    return out


def _merge_small(pieces: list[str]) -> list[str]:
    """Consecutive pieces joined until each block has >= MIN_TOKENS."""
    out, cur, n = [], [], 0
    for p in pieces:
        cur.append(p)
        n += ntok(p)
        if n >= MIN_TOKENS:
            out.append("\n".join(cur))
            cur, n = [], 0
    return out


def man_pages():
    for path in sorted(glob.glob("/usr/share/man/man[1-8]/*")):
        yield strip_roff(_read(path))


def changelogs():
    for path in sorted(glob.glob("/usr/share/doc/*/changelog*")):
        text = _read(path)
        if "changelog.Debian" in path:  # one entry per " -- maintainer  date" trailer
            entries = re.split(r"(?<=\n) -- [^\n]*\n", text)
        else:
            entries = re.split(r"\n\s*\n(?=\S)", text)
        yield from _merge_small([e.strip() for e in entries if e.strip()])


def copyrights():
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        yield _read(path)


def licences():
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            yield _read(path)
    for root in PY_ROOTS[-1:]:
        for path in sorted(glob.glob(f"{root}/*.dist-info/*")):
            if re.match(r"(LICEN[CS]E|COPYING|NOTICE)", os.path.basename(path), re.I) and os.path.isfile(path):
                yield _read(path)
        for path in sorted(glob.glob(f"{root}/*.dist-info/licenses/**/*", recursive=True)):
            if os.path.isfile(path):
                yield _read(path)


def readmes():
    for path in sorted(glob.glob(f"{PY_ROOTS[-1]}/*.dist-info/METADATA")):
        yield _read(path)


def python_docs():
    """(genre, text): docstrings and top-level def/class blocks of every parseable .py file."""
    seen: set[str] = set()
    for root in PY_ROOTS:
        if not os.path.isdir(root):
            continue
        for path in sorted(glob.glob(f"{root}/**/*.py", recursive=True)):
            real = os.path.realpath(path)
            if real in seen or "/test" in path:
                continue
            seen.add(real)
            src = _read(path)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = ast.parse(src)
            except (SyntaxError, ValueError, RecursionError):
                continue
            lines = src.splitlines()
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        yield "docstring", doc
            for node in tree.body:
                if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
                    yield "source", "\n".join(lines[node.lineno - 1:node.end_lineno])


def iter_docs():
    for genre, gen in [("man", man_pages()), ("changelog", changelogs()), ("copyright", copyrights()),
                       ("licence", licences()), ("readme", readmes())]:
        for text in gen:
            yield genre, text
    yield from python_docs()


def build_corpus(out: Path) -> Path:
    """All documents with >= MIN_TOKENS tokens, distinct texts, as JSONL at ``out`` (cached)."""
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    seen: set[int] = set()
    n = 0
    with open(tmp, "w") as f:
        for genre, text in iter_docs():
            for block in _blocks(text):
                block = block.strip()
                k = ntok(block)
                h = hash(block)
                if k < MIN_TOKENS or h in seen:
                    continue
                seen.add(h)
                f.write(json.dumps({"id": n, "text": block, "genre": genre, "tokens": k}) + "\n")
                n += 1
    os.replace(tmp, out)
    return out


def pool_and_target(corpus: Path, docs: int, target_docs: int, target_genre: str = "man",
                    target_share: float = 0.05, seed: int = 0):
    """(pool, target) Polars frames: ``target_docs`` documents of ``target_genre`` held out, and a
    pool of ``docs`` documents of which ``target_share`` are of that genre (the others drawn
    uniformly from the other genres). When the corpus is smaller than ``docs``, the pool repeats
    it (each copy gets new ids), so a large pool keeps the same mix."""
    import polars as pl

    df = pl.read_ndjson(corpus)
    rng = np.random.default_rng(seed)
    tgt = df.filter(pl.col("genre") == target_genre)
    perm = rng.permutation(tgt.height)
    target = tgt[perm[:target_docs]]
    rest_t = tgt[perm[target_docs:]]
    other = df.filter(pl.col("genre") != target_genre)
    n_t = int(round(docs * target_share))

    def draw(frame: pl.DataFrame, n: int) -> pl.DataFrame:
        reps = [frame[rng.permutation(frame.height)] for _ in range(n // frame.height + 1)]
        return pl.concat(reps).head(n)

    pool = pl.concat([draw(rest_t, n_t), draw(other, docs - n_t)])
    pool = pool[rng.permutation(pool.height)].with_columns(pl.int_range(pool.height, dtype=pl.Int64).alias("id"))
    return pool, target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/dsir-bench/real-docs.jsonl"))
    args = ap.parse_args()
    path = build_corpus(args.out)
    import polars as pl

    df = pl.read_ndjson(path)
    stats = df.group_by("genre").agg(pl.len().alias("docs"), pl.col("tokens").median().alias("median_tokens"),
                                     pl.col("tokens").max().alias("max_tokens"),
                                     (pl.col("tokens") >= 10_000).sum().alias("docs_10k_plus"),
                                     (pl.col("text").str.len_bytes().sum() / 1e6).round(1).alias("mb"))
    print(stats.sort("docs", descending=True))
    print(f"{df.height} documents, {df['text'].str.len_bytes().sum() / 1e6:.0f} MB", file=sys.stderr)
    print(json.dumps(dict(Counter(df["genre"].to_list()))))


if __name__ == "__main__":
    main()
