"""Peer run for the partitioning benchmark: hats-import (LSDB/HATS) on the same Parquet file, 2 dask workers.

usage: python3 benches/peers/hats_import_peer.py INPUT.parquet OUTDIR [PIXEL_THRESHOLD]
Prints the wall time; run it under /usr/bin/time for peak memory.
"""
import sys
import time

from dask.distributed import Client
from hats_import.catalog.arguments import ImportArguments
from hats_import.pipeline import pipeline_with_client


def main():
    src, out = sys.argv[1], sys.argv[2]
    threshold = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    args = ImportArguments(
        ra_column="ra",
        dec_column="dec",
        input_file_list=[src],
        file_reader="parquet",
        output_artifact_name="object",
        output_path=out,
        pixel_threshold=threshold,
        progress_bar=False,
    )
    start = time.time()
    with Client(n_workers=2, threads_per_worker=1, memory_limit="8GB") as client:
        pipeline_with_client(args, client)
    print(f"hats-import: {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
