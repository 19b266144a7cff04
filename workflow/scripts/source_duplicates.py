"""Rule source_duplicates: near-duplicate pairs within the source's own training and test images."""

from hpa.data.cache import open_cache
from hpa.external.clean import read_download
from hpa.external.within import pair_tables, source_codes
from hpa.files import setup_logging, write_csv

log = setup_logging(snakemake.log[0])
opened = {split: open_cache(snakemake.input[f"{split}_npy"], snakemake.input[f"{split}_index"])
          for split in ("train", "test")}
# hash_images's per-channel hashes of every source image when the external stage is on: no hashing here.
hashes = read_download(snakemake.input.hashes) if snakemake.input.hashes else None
ids, splits, codes = source_codes({s: index for s, (_, index) in opened.items()},
                                  {s: cache for s, (cache, _) in opened.items()}, hashes,
                                  snakemake.params.hash, snakemake.params.channels, workers=snakemake.threads)
leaks, duplicates = pair_tables(ids, splits, codes, snakemake.params.max_distance, workers=snakemake.threads)
log.info("%d test images duplicate a training image; %d training images in %d duplicate clusters",
         leaks["test_id"].nunique(), len(duplicates), duplicates["cluster"].nunique())
write_csv(leaks, snakemake.output.leaks)
write_csv(duplicates, snakemake.output.duplicates)
