"""The one text normaliser and the vocabulary.

Normalising follows NeuralTalk's preprocessing: lower-case, drop every character that is
not `a-z`, `0-9` or whitespace (so "don't" becomes "dont"), split on whitespace. Accented
letters are first folded to their ASCII base letter through Unicode's NFKD decomposition
("café naïve" becomes "cafe naive", not "caf nave"), and case is folded after decomposing,
so that letters that decompose to capitals count too ("ℌ" to "h", "№" to "no", "ß" to
"ss"); letters with no such base (ø, æ, CJK) are still dropped.

`vocab.json` layout:

    {"min_count": 5, "words": ["<pad>", "<start>", "<end>", "<unk>", "a", ...],
     "counts": [0, 0, 0, 1234, 9876, ...]}

Ids are positions in `words`. After the four specials, words are sorted by descending
train-split count, then alphabetically, so the file is byte-for-byte stable. The count of
`<unk>` is the number of train tokens it replaces.
"""

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from fillblank.atomic import write_text
from fillblank.errors import UserError

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = range(4)

_DROP = re.compile(r"[^a-z0-9\s]")
# Latin letters that no decomposition splits into a base letter and an accent, as in ASCII spelling
_LETTERS = str.maketrans({"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ħ": "h", "ı": "i"})


def normalise(text: str) -> list[str]:
    """Lower-case words of `[a-z0-9]`, accents folded, everything else dropped."""
    lower = unicodedata.normalize("NFKD", text).casefold().translate(_LETTERS)
    decomposed = unicodedata.normalize("NFKD", lower)  # "é" -> "e" + a combining accent
    return _DROP.sub("", "".join(c for c in decomposed if not unicodedata.combining(c))).split()


@dataclass(frozen=True)
class Vocab:
    words: tuple[str, ...]
    counts: tuple[int, ...]
    min_count: int

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int) -> "Vocab":
        """Count words over `sentences` (the train split only) and keep the frequent ones."""
        counts = Counter(word for sentence in sentences for word in sentence)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        unknown = sum(c for c in counts.values() if c < min_count)
        return cls(SPECIALS + tuple(kept), (0, 0, 0, unknown) + tuple(counts[w] for w in kept), min_count)

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(tuple(data["words"]), tuple(data["counts"]), data["min_count"])
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise UserError(
                f"{path}: not a vocab.json (written by the prepare stage): {type(error).__name__} {error}"
            ) from None

    def to_json(self) -> str:
        return json.dumps({"min_count": self.min_count, "words": self.words, "counts": self.counts}, indent=1) + "\n"

    def save(self, path: str | Path) -> None:
        write_text(path, self.to_json())

    @property
    def sha256(self) -> str:
        """Identity of this vocabulary; checkpoints record it so a model never meets the wrong one."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, words: Sequence[str]) -> list[int]:
        return [self.index.get(word, UNK_ID) for word in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids]

    @cached_property
    def index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.words)}
