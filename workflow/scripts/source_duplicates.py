"""Rule source_duplicates: near-duplicate pairs within the source's own training and test images."""

import numpy as np

from hpa.data.cache import open_cache
from hpa.external.within import cache_codes, pair_tables
from hpa.files import setup_logging, write_csv

log = setup_logging(snakemake.log[0])
ids, splits, codes = [], [], []
for split in ("train", "test"):
    cache, index = open_cache(snakemake.input[f"{split}_npy"], snakemake.input[f"{split}_index"])
    ok = index[index["ok"].astype(bool)]
    ids += ok["Id"].tolist()
    splits += [split] * len(ok)
    codes.append(cache_codes(cache, ok["row"].to_numpy(), workers=snakemake.threads))
leaks, duplicates = pair_tables(np.array(ids, dtype=object), np.array(splits), np.concatenate(codes),
                                snakemake.params.max_distance, workers=snakemake.threads)
log.info("%d test images duplicate a training image; %d training images in %d duplicate clusters",
         leaks["test_id"].nunique(), len(duplicates), duplicates["cluster"].nunique())
write_csv(leaks, snakemake.output.leaks)
write_csv(duplicates, snakemake.output.duplicates)
