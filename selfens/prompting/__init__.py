"""Prompt formats (chat or raw, few-shot shots, where the cue goes) and the segments a tokenized prompt is cut into."""
