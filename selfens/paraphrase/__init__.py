"""The paraphraser: a LightningModule that rephrases questions with a model (`module`), its prompt,
the filters that reject a paraphrase and their summary; `selfens paraphrase` is `selfens.cli.paraphrase`."""
