"""`python -m selfens.harness ARGS`: lm-eval's own command line (`lm_eval ARGS`) with the `selfens`
model registered, for an lm-eval that finds no models of other packages by itself (0.4.13):

    python -m selfens.harness run --model selfens --model_args method=avg,paraphrases=F \
        --tasks selfens_capitals --include_path <selfens>/resources/lm_eval_tasks
"""

from lm_eval.__main__ import cli_evaluate

import selfens.harness  # noqa: F401  (registers the model)

if __name__ == "__main__":
    cli_evaluate()
