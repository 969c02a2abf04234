"""`selfens report`: finished runs side by side, with uncertainty and paired comparisons.

`load` reads the runs, `compare` computes the statistics, `tables`, `summary` and `plots` write them
out, `fit` fits the printed tables to the terminal, `board` writes the report for TensorBoard and
`command` is the command line."""
