"""The evaluation text that perplexity is measured on: built-in, or the user's own file.

The built-in text (``runner/data/eval_text.jsonl``, see ``EVAL_TEXT.md`` there) is a list
of passages, each of a kind (prose, code, dialogue), so perplexity can be split by kind.
A user's file (``quality.text_path``) is one passage of kind ``text``. A file that is
missing, empty, not UTF-8 or not text is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from runner.user_files import read_user_file

BUILTIN_TEXT = "eval_text.jsonl"
BUILTIN_SOURCE = f"builtin:runner/data/{BUILTIN_TEXT}"
USER_KIND = "text"
SEPARATOR = "\n\n"  # between passages, scored like any other text


class QualityInputError(ValueError):
    """A quality input the user gave cannot be used; the message is one line."""


@dataclass(frozen=True)
class EvalText:
    """Passages ``(kind, text)`` in order, where they came from, and the hash of the bytes."""

    source: str
    sha256: str
    passages: tuple[tuple[str, str], ...]


def builtin_text() -> EvalText:
    raw = resources.files("runner.data").joinpath(BUILTIN_TEXT).read_bytes()
    passages = []
    for line in raw.decode("utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            passages.append((str(item["kind"]), str(item["text"])))
    return EvalText(BUILTIN_SOURCE, hashlib.sha256(raw).hexdigest(), tuple(passages))


def user_text(path: str) -> EvalText:
    """The file at ``path`` as one passage; :class:`QualityInputError` saying why not."""
    label = f"quality.text_path={path}"
    raw, text = read_user_file(path, label, "a text file", QualityInputError)
    if not text.strip():
        raise QualityInputError(f"{label}: the file is empty")
    return EvalText(str(path), hashlib.sha256(raw).hexdigest(), ((USER_KIND, text),))


def load_text(path: str | None) -> EvalText:
    """The user's text when ``path`` is set, else the built-in one."""
    return builtin_text() if path is None else user_text(path)
