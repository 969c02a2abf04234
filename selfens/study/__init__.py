"""`selfens study`: a grid of models x methods x N as ordinary runs, and one report."""
