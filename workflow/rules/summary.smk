# The run's last words: a short summary on the terminal when the workflow ends (images used
# and rejected, each ensemble's honest macro F1 against no-skill, where the results are).
# The logic is in hpa.postprocess.summary; a summary that cannot be made never fails the run.


def last_words(failed, log):
    try:
        from hpa.postprocess.summary import Invocation, print_summary
    except ImportError as err:  # the library is not installed in this Python: say so, nothing more
        print(f"(no run summary: {err}; pip install -e . makes it importable)")
        return
    # The run's --configfile (and --directory): the report command it prints must load the same config.
    invocation = Invocation(
        configfiles=tuple(map(str, workflow.overwrite_configfiles or ())),
        directory=str(Path.cwd()),
        snakefile=str(workflow.main_snakefile),
    )
    print_summary(".", list(ENSEMBLES), failed=failed, log=log, invocation=invocation)


onsuccess:
    last_words(False, log)


onerror:
    last_words(True, log)
