"""Library behind the HPA protein-localization workflow.

Each module holds one stage's logic; the entry scripts in ``workflow/scripts``
only read the ``snakemake`` object and call into here.
"""

__version__ = "0.1.0"
