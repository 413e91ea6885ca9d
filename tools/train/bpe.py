"""A small, faithful encoder/decoder for the BLOOM-pipeline tokenizer.json.

It reproduces what the Hugging Face `tokenizers` library does for this file:

1. added (special) tokens are matched in the raw text first; the text between them is encoded normally;
2. pre-tokenizer `Split(regex, Isolated)` with the Oniguruma pattern
   `` ?[^(\\s|[.,!?…。，、।۔،])]+``.  In Oniguruma the inner ``[...]`` is a *nested* class, so the negated
   class also excludes the literal characters ``(``, ``|`` and ``)``.  Python's `regex` module only nests classes
   in VERSION1 mode, so the class is spelled out flat below.  "Isolated" keeps both the matches and the gaps
   between them as separate pieces;
3. pre-tokenizer `ByteLevel(use_regex=false)`: each piece's UTF-8 bytes are mapped through GPT-2's
   bytes_to_unicode table;
4. model `BPE`: within each piece, repeatedly merge the adjacent pair of lowest merge rank (leftmost first).

Only the features this tokenizer.json uses are implemented; anything else is rejected loudly.
"""
import json

import regex

# Flat equivalent of the Oniguruma pattern ` ?[^(\s|[.,!?…。，、।۔،])]+` (see the module docstring).
SPLIT_PATTERN = " ?[^\\s()|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c]+"
ONIGURUMA_PATTERN = " ?[^(\\s|[.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c])]+"


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class BloomTokenizer:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        self._check_supported(spec)
        model = spec["model"]
        self.vocab = model["vocab"]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.unk_id = self.vocab[model["unk_token"]]
        self.special = {t["content"]: t["id"] for t in spec["added_tokens"]}
        for content, i in self.special.items():
            self.id_to_token[i] = content
        # Longest first, so that a special token that is a prefix of another cannot win.
        alternatives = sorted(self.special, key=len, reverse=True)
        self.special_re = regex.compile("|".join(regex.escape(s) for s in alternatives)) if alternatives else None
        self.split_re = regex.compile(SPLIT_PATTERN)
        self.byte_map = bytes_to_unicode()
        self.byte_unmap = {c: b for b, c in self.byte_map.items()}
        self.cache = {}

    @staticmethod
    def _check_supported(spec):
        pre = spec["pre_tokenizer"]
        assert spec["normalizer"] is None, "normalizer not supported"
        assert pre["type"] == "Sequence" and len(pre["pretokenizers"]) == 2
        split, byte_level = pre["pretokenizers"]
        assert split["type"] == "Split" and split["behavior"] == "Isolated" and not split["invert"]
        assert split["pattern"]["Regex"] == ONIGURUMA_PATTERN, "unexpected split pattern"
        assert byte_level["type"] == "ByteLevel" and not byte_level["use_regex"] and not byte_level["add_prefix_space"]
        model = spec["model"]
        assert model["type"] == "BPE" and not model.get("byte_fallback") and model.get("dropout") is None
        assert model.get("continuing_subword_prefix") is None and model.get("end_of_word_suffix") is None
        for t in spec["added_tokens"]:
            assert not (t["lstrip"] or t["rstrip"] or t["single_word"] or t["normalized"])

    def _pieces(self, text):
        """Split(Isolated): the regex matches and the gaps between them, in order."""
        pos = 0
        for m in self.split_re.finditer(text):
            if m.start() > pos:
                yield text[pos:m.start()]
            yield m.group()
            pos = m.end()
        if pos < len(text):
            yield text[pos:]

    def _bpe(self, piece):
        """BPE ids of one pre-tokenized piece (cached: the corpora repeat words a lot)."""
        ids = self.cache.get(piece)
        if ids is not None:
            return ids
        symbols = [self.byte_map[b] for b in piece.encode("utf-8")]
        while len(symbols) > 1:
            best, best_rank = None, None
            for k in range(len(symbols) - 1):
                rank = self.ranks.get((symbols[k], symbols[k + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = k, rank
            if best is None:
                break
            # Merge every occurrence of the winning pair, left to right without overlap.
            pair, merged, k = (symbols[best], symbols[best + 1]), [], 0
            while k < len(symbols):
                if k + 1 < len(symbols) and (symbols[k], symbols[k + 1]) == pair:
                    merged.append(pair[0] + pair[1])
                    k += 2
                else:
                    merged.append(symbols[k])
                    k += 1
            symbols = merged
        ids = [self.vocab.get(s, self.unk_id) for s in symbols]
        self.cache[piece] = ids
        return ids

    def _encode_plain(self, text, out):
        for piece in self._pieces(text):
            out.extend(self._bpe(piece))

    def encode(self, text):
        """Token ids of `text`, no special tokens added (add_special_tokens=false)."""
        out, pos = [], 0
        if self.special_re is not None:
            for m in self.special_re.finditer(text):
                self._encode_plain(text[pos:m.start()], out)
                out.append(self.special[m.group()])
                pos = m.end()
        self._encode_plain(text[pos:], out)
        return out

    def decode(self, ids):
        """Text of `ids` (skip_special_tokens=false); invalid UTF-8 becomes U+FFFD."""
        data = bytearray()
        for i in ids:
            token = self.id_to_token[i]
            if i in self.special.values():
                data.extend(token.encode("utf-8"))
            else:
                data.extend(self.byte_unmap[c] for c in token)
        return data.decode("utf-8", errors="replace")


def verify(tokenizer, vectors_path):
    """Check encode (exact ids) and decode against vectors produced by Hugging Face `tokenizers`."""
    with open(vectors_path, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    for case in cases:
        ids = tokenizer.encode(case["text"])
        assert ids == case["ids"], f"encode mismatch for {case['text']!r}: {ids} != {case['ids']}"
        decoded = tokenizer.decode(ids)
        assert decoded == case["decoded"], f"decode mismatch for {case['text']!r}: {decoded!r}"
    return len(cases)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Verify the encoder against tokenizer test vectors.")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--vectors", required=True)
    args = parser.parse_args()
    print(f"{verify(BloomTokenizer(args.tokenizer), args.vectors)} cases match")
