"""A character vocabulary, built from the training split only.

Id 0 is the unknown symbol ``UNK`` (U+FFFD, the Unicode replacement character): a character
that never occurs in training, such as an accented letter of a validation play, is encoded as
0 instead of failing, and decoded as ``UNK``. Building the vocabulary from validation or test
text would leak which characters those splits contain.

Encoding is vectorised: the text becomes an array of Unicode code points, and one table
lookup (code point -> id) turns it into ids, with no Python loop over characters.
"""

from __future__ import annotations

import numpy as np
import torch

UNK = "\ufffd"


class CharVocab:
    def __init__(self, chars: str | list[str]):
        self.chars = sorted(set(chars) - {UNK})
        self.itos = [UNK, *self.chars]
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        self._lut = np.zeros(codes.max(initial=0) + 1, dtype=np.int32)  # code point -> id; 0 = unknown
        self._lut[codes] = np.arange(1, len(codes) + 1)

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(set(text))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """``(len(text),)`` ids, unknown characters as 0; uint8 when the vocabulary allows it."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = self._lut[np.minimum(codes, len(self._lut) - 1)]
        ids[codes >= len(self._lut)] = 0  # beyond the largest known code point
        return torch.from_numpy(ids.astype(np.uint8 if len(self) <= 256 else np.int32))

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in torch.as_tensor(ids).tolist())
