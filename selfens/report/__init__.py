"""The report: finished runs side by side, with uncertainty and paired comparisons (`selfens report`
is `selfens.cli.report`).

`load` reads the runs, `compare` computes the statistics, `tables`, `summary` and `plots` write them
out, `terminal` fits the printed tables to the terminal, and `board` writes the report for TensorBoard."""
