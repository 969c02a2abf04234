"""`selfens report`: finished runs side by side, with uncertainty and paired comparisons.

`load` reads the runs, `compare` computes the statistics, `tables` and `plots` write them out and
`command` is the command line."""
