"""How many rows decode at once (`decode_rows`), and how many examples make a batch (`batch_size: auto`).

A decoding row holds its KV cache over all its tokens (prompt and answer), its logits over the
vocabulary at one position, and what one decode step computes on the way; the memory left once the
weights are in place, divided by that, is how many rows fit. On CUDA that is the budget: more rows
in one forward cost little more time. On the CPU, compute runs out first: past a knee, more rows
only make each step longer, so the rows are capped there too.

The knee (`CPU_ROW_KNEE`), measured with the embedded model (SmolLM2-135M, fp32) on this
project's 2-core x86_64 machine: one decode step over R rows of ~150 keys, timed by CPU time with
one thread (the machine was shared, load 6-10: a step's wall time swung up to 4x for one R), the
median over 4 runs of

    python benchmarks/bench_rows.py --threads 1 --clock cpu --steps 3 --repeats 3

        R   ms/step   ms/row-step   ms/row-step vs the previous R, each run
        1     146.4        146.42
        8     304.0         38.00   0.22 0.22 0.32 0.28
       16     387.3         24.20   0.71 0.62 0.61 0.56
       32     520.1         16.25   0.61 0.70 0.67 0.71
       64     703.2         10.99   0.76 0.64 0.69 0.77
      128    1258.5          9.83   0.83 0.96 0.83 0.88
      256    2088.2          8.15   0.83 0.89 0.82 0.91; with --rows 128 256 512 (3 runs): 0.97 0.94 0.99
      512                           (--rows 128 256 512) 0.91 1.10 0.99

Each doubling up to 128 rows saves 15% or more per row-step (medians); from 128 to 256, 1-18%
(median 9% over all 7 runs); from 256 to 512, nothing.

A Lightning batch (`batch_size: auto`) holds enough rows to fill the decode rows several times
over (`BATCH_FILLS`), so that finished rows always have waiting examples to take their places, but
no more than an even share of the examples per process.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import torch

CUDA_MEMORY_FRACTION = 0.8
"""Of the GPU memory free once the weights are in: the rest is headroom for the allocator's
fragments, prefill activations and the cache's copies as it grows."""
CPU_MEMORY_FRACTION = 0.5
"""Of the memory available (MemAvailable): the machine is shared with other processes."""
CPU_MEMORY_CAP = 16 * 2**30
"""The most one process plans to take on the CPU; the knee caps rows long before that with small models."""
CPU_ROW_KNEE = 128
"""The most rows a CPU decode step runs: beyond it, ms per row-step falls by ~10% or less (table above)."""
BATCH_FILLS = 4
"""A batch (`batch_size: auto`) holds this many times the decode rows."""
MEMO_SHARE_CUDA = 8
"""On CUDA a prefill memo keeps the prompt KV of at most decode_rows / this many rows (`memo_rows`)."""
FP32_LOGIT_COPIES = 2
"""fp32 [rows, vocab] tensors a step holds besides the model's own logits: the float() copy that
decode fuses, and the softmax of the fused scores."""


# -- the size of a row -----------------------------------------------------------------------------
def text_config(config):
    """The decoder's config: a multimodal model's text part (e.g. Gemma 3 4B), else the config itself."""
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Bytes of keys and values that one token adds to the KV cache, over all layers (every layer
    keeps all its keys: `selfens.attention.layers.full_cache`, sliding windows are in the masks)."""
    config = text_config(config)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return config.num_hidden_layers * 2 * kv_heads * head_dim * element_size(dtype)


def row_bytes(config, dtype: torch.dtype, tokens_per_row: int) -> int:
    """Bytes one decoding row holds: its KV over `tokens_per_row` tokens, its logits at one position
    (the model's, in `dtype`, and decode's fp32 copies) and a step's activations within a layer
    (the hidden state and its projections, the MLP's widest, the attention scores over its keys)."""
    config = text_config(config)
    size = element_size(dtype)
    kv = kv_bytes_per_token(config, dtype) * tokens_per_row
    logits = config.vocab_size * (size + FP32_LOGIT_COPIES * 4)
    intermediate = getattr(config, "intermediate_size", None) or 4 * config.hidden_size
    scores = config.num_attention_heads * tokens_per_row * 4
    activations = (4 * config.hidden_size + 3 * intermediate) * size + scores
    return kv + logits + activations


# -- the memory there is -----------------------------------------------------------------------------
def mem_available(meminfo: str) -> Optional[int]:
    """Bytes of MemAvailable in the text of /proc/meminfo (None if it has no such line)."""
    for line in meminfo.splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            return int(value.split()[0]) * 1024  # kB
    return None


def available_memory() -> int:
    """Bytes of system memory available: MemAvailable on Linux, else free pages; the cap if neither is known."""
    meminfo = Path("/proc/meminfo")
    found = mem_available(meminfo.read_text()) if meminfo.is_file() else None
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            found = CPU_MEMORY_CAP
    return found


def cuda_free_bytes(device: torch.device) -> int:
    """Free bytes on a GPU, counting what PyTorch's allocator holds but does not use."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def memory_budget(model, device: torch.device) -> int:
    """Bytes that decoding rows may take on `device` once the model's weights are in place.

    CUDA: a fraction of the free memory of the GPUs the model uses, less the weights still to be
    moved there (Lightning moves the module after `configure_model`). Elsewhere: a fraction of the
    available system memory (which the loaded weights have already taken), capped."""
    if device.type != "cuda":
        return int(min(CPU_MEMORY_CAP, CPU_MEMORY_FRACTION * available_memory()))
    current = lambda d: torch.device("cuda", d.index if d.index is not None else torch.cuda.current_device())
    gpus = {current(device)} | {current(p.device) for p in model.parameters() if p.device.type == "cuda"}
    tensors = [*model.parameters(), *model.buffers()]
    to_move = sum(t.numel() * t.element_size() for t in tensors if t.device.type != "cuda")
    return max(0, int(CUDA_MEMORY_FRACTION * (sum(map(cuda_free_bytes, gpus)) - to_move)))


# -- the sizes -------------------------------------------------------------------------------------
def decode_rows(model, tokens_per_row: int, device, budget_bytes: Optional[int] = None) -> int:
    """How many rows of up to `tokens_per_row` tokens (prompt and answer) `model` may decode at once
    on `device`: the memory budget (`memory_budget` unless `budget_bytes` is given) over a row's
    bytes, on the CPU at most `CPU_ROW_KNEE`; at least 1."""
    if tokens_per_row < 1:
        raise ValueError(f"tokens_per_row must be at least 1, got {tokens_per_row}")
    device = torch.device(device)
    budget = memory_budget(model, device) if budget_bytes is None else budget_bytes
    rows = max(1, budget // row_bytes(model.config, model.dtype, tokens_per_row))
    return int(min(rows, CPU_ROW_KNEE) if device.type == "cpu" else rows)


def memo_rows(decode_rows: Optional[int], device) -> Optional[int]:
    """How many rows' prompt KV a `PrefillMemo` may keep beside `decode_rows` decoding rows (None:
    no limit). On the CPU as many as decode: compute caps the rows there, far below the memory
    budget. On CUDA the rows fill the budget: an eighth of them, whose prompt KV is at most an eighth
    of the rows' bytes, stays within the headroom the budget leaves (`CUDA_MEMORY_FRACTION`)."""
    if decode_rows is None:
        return None
    return decode_rows if torch.device(device).type != "cuda" else decode_rows // MEMO_SHARE_CUDA


def auto_batch_size(rows_per_example: int, max_rows: int, examples: int, world_size: int) -> int:
    """Examples per Lightning batch: enough for `BATCH_FILLS` x `max_rows` rows, but no more than
    each of `world_size` processes' share of `examples`, so that every process gets work; at least 1."""
    for name, value in (("rows_per_example", rows_per_example), ("max_rows", max_rows), ("world_size", world_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if examples < 0:
        raise ValueError(f"examples must be at least 0, got {examples}")
    wanted = math.ceil(BATCH_FILLS * max_rows / rows_per_example)
    return max(1, min(wanted, math.ceil(examples / world_size)))
