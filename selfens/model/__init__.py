"""The models: the registry of embedded models and how they load (`registry`), and `LanguageModel`, the
wrapper of a loaded transformers model with its tokenizer that the methods share."""
