"""selfens: evaluate self-ensembling of language models over paraphrased prompts."""

__version__ = "0.1.0"
