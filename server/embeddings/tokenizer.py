"""WordPiece tokenization with the model's own ``tokenizer.json`` (``tokenizers`` package).

Texts are truncated to 256 tokens, as sentence-transformers does for this model;
padding is left to the encoder, which pads per length bucket.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from akidb.server.embeddings.model import MAX_TOKENS


class WordPiece:
    def __init__(self, path: Path, max_tokens: int = MAX_TOKENS) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_tokens)
        self.max_tokens = max_tokens

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids per text ([CLS] ... [SEP]), as int32 arrays of varying length."""
        return [np.asarray(e.ids, dtype=np.int32)
                for e in self._tok.encode_batch(texts, add_special_tokens=True)]
