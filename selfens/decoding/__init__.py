"""The decode engine: prompts as tensors, prefill and the decode loop, samplers, fusion rules, caches,
cost, and the memory budget that sizes a decode. Pure torch (and transformers types): no Lightning."""
