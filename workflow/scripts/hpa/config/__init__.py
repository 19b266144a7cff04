"""The settings and their startup checks, torch-free: ``spec`` (the dataclasses a model, the
embedding and their loop read), ``checks`` (a whole config at DAG time), ``errors`` (config
mistakes said in a few lines). common.smk imports these when the workflow starts."""
