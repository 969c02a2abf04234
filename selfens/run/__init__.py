"""The run record: what a run writes and reads (rows, results, costs), streamed per process, and resume."""
