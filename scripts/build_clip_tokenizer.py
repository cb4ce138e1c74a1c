"""Build the CLIP BPE tokenizer files shipped in ``backend/configs/clip-tokenizer/``.

Run once by a developer, not at run time: the daemon must work offline, so the standard
CLIP vocabulary (used by SD1.x ``tokenizer`` and SDXL ``tokenizer``/``tokenizer_2``) is
committed as data. The source is OpenAI's ``bpe_simple_vocab_16e6.txt.gz``, taken from the
``open-clip-torch`` wheel on PyPI (a model hub is never contacted). The output is
byte-for-byte deterministic and reproduces CLIP's ``SimpleTokenizer`` vocabulary order:
49408 tokens, "a photo of a cat" -> [49406, 320, 1125, 539, 320, 2368, 49407].

Usage: ``python scripts/build_clip_tokenizer.py [--out DIR]``
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OPEN_CLIP_VERSION = "3.3.0"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# sha256 of the *decompressed* BPE text; it is the same file OpenAI shipped with CLIP.
BPE_TEXT_SHA256 = "67603cfda2e032ad77b5f8808af37789d590db664b26df8705d2bf8b3c553fc8"
VOCAB_SIZE = 49408
# CLIP keeps the first 49152 - 256 - 2 merges (the rest of the file is unused).
N_MERGES = 49152 - 256 - 2
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "backend" / "configs" / "clip-tokenizer"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode map; its order fixes the first 256 token ids."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def fetch_bpe_text() -> str:
    """Download the pinned open-clip-torch wheel with pip and read the BPE merges file."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        spec = f"open-clip-torch=={OPEN_CLIP_VERSION}"
        args = ["download", "--no-deps", "--only-binary=:all:", "-d", tmp, spec]
        subprocess.run(pip + args, check=True)
        wheels = sorted(Path(tmp).glob("open_clip_torch-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one open_clip_torch wheel in {tmp}, got {wheels}")
        with zipfile.ZipFile(wheels[0]) as zf:
            data = gzip.decompress(zf.read(BPE_MEMBER))
    digest = hashlib.sha256(data).hexdigest()
    if digest != BPE_TEXT_SHA256:
        raise RuntimeError(f"unexpected BPE file sha256 {digest} (want {BPE_TEXT_SHA256})")
    return data.decode("utf-8")


def build_vocab(bpe_text: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Reproduce CLIP SimpleTokenizer's encoder: bytes, bytes+</w>, merges, then specials."""
    lines = bpe_text.split("\n")[1 : N_MERGES + 1]  # line 0 is a version header
    pairs = [line.split() for line in lines]
    if len(pairs) != N_MERGES or any(len(pair) != 2 for pair in pairs):
        raise RuntimeError("malformed BPE merges file")
    merges = [(a, b) for a, b in pairs]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise RuntimeError(f"vocab has {len(vocab)} tokens, expected {VOCAB_SIZE}")
    return vocab, merges


def write_files(out: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """Write vocab.json (ordered by id) and merges.txt in the Hugging Face CLIP layout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(
        json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8", newline="\n"
    )
    body = "".join(f"{a} {b}\n" for a, b in merges)
    (out / "merges.txt").write_text("#version: 0.2\n" + body, encoding="utf-8", newline="\n")


def check(out: Path) -> list[int]:
    """Load the written files the way the daemon does and return ids of a reference prompt."""
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(out), model_max_length=77)
    ids = tok("a photo of a cat")["input_ids"]
    want = [49406, 320, 1125, 539, 320, 2368, 49407]
    if len(tok) != VOCAB_SIZE or ids != want:
        raise RuntimeError(f"tokenizer check failed: len={len(tok)} ids={ids}")
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--no-check", action="store_true", help="skip the transformers check")
    args = parser.parse_args(argv)
    vocab, merges = build_vocab(fetch_bpe_text())
    write_files(args.out, vocab, merges)
    print(f"wrote {args.out}/vocab.json ({len(vocab)} tokens) and merges.txt ({len(merges)})")
    if not args.no_check:
        print("check ok:", check(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
