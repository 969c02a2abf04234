"""The equivalences on a GPU, in bf16, with the compiled flex backend: one table, PASS or FAIL.

    python benchmarks/gpu_check.py                       # CUDA: tiny models and the embedded SmolLM2
    python benchmarks/gpu_check.py --device cpu --quick  # a smoke test of this script (the tests run it)

Per model: our decode loop == transformers `generate` (greedy, a left-padded batch); attention
fusion with N = 1 == origin; flex == dense (attention fusion, N = 5); a batch == each example alone
(origin). Each is the share of examples whose answers agree; bf16 may flip a near-tie, so a check
passes at `--min-agreement` (default 0.95) or more. The tiny models are those of the tests'
architecture matrix (tests/conftest.py FAMILIES).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from selfens.attention.backend import attn_implementation  # noqa: E402
from selfens.data import ParaRel, collate  # noqa: E402
from selfens.data.base import prefix_batches  # noqa: E402
from selfens.decode import Prompt, decode  # noqa: E402
from selfens.lm import LanguageModel  # noqa: E402
from selfens.methods import AttentionFusion, Origin  # noqa: E402
from selfens.models import EMBEDDED, eos_token_ids  # noqa: E402
from selfens.padding import left_pad  # noqa: E402


def answers(module, data: ParaRel, batch_size: int) -> dict[str, str]:
    """id -> the module's answer, over the data in batches."""
    out = {}
    for group in prefix_batches(data.examples, batch_size):
        batch = collate(group, data.tokenizer.pad_token_id)
        out.update(zip(batch.ids, module.decode(batch).predictions))
    return out


def agreement(a: dict[str, str], b: dict[str, str]) -> float:
    return sum(a[k] == b[k] for k in a) / len(a)


def data(model: str, tokenizer, n: int, limit: int) -> ParaRel:
    dm = ParaRel(num_paraphrases=n, num_shots=4, limit=limit, prompt_style="raw", fill_style="completion")
    dm.connect(tokenizer, model)
    dm.setup("test")
    return dm


def module(cls, lm: LanguageModel, device, dtype: str, **kwargs):
    m = cls(model=lm, dtype=dtype, max_new_tokens=10, **kwargs)
    m.configure_model()  # the model is loaded already: this builds what the method needs around it
    return m.to(device)


def decode_vs_generate(origin, data: ParaRel) -> float:
    """Our loop against `generate` on the same left-padded single prompts (paraphrase 0)."""
    prompts = [e.segments.prompt(0) for e in data.examples]
    ids, valid = left_pad(prompts, data.tokenizer.pad_token_id)
    ids, valid = ids.to(origin.device), valid.to(origin.device)
    ours = decode(origin.lm, Prompt.left_padded(ids, valid), max_new_tokens=8, eos_ids=[]).tokens
    theirs = origin.lm.generate(
        input_ids=ids,
        attention_mask=valid.long(),
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=data.tokenizer.pad_token_id,
    )[:, ids.shape[1] :].tolist()
    eos = set(eos_token_ids(origin.lm, data.tokenizer))
    theirs = [[t for t in row][: next((i for i, t in enumerate(row) if t in eos), len(row))] for row in theirs]
    return sum(a == b for a, b in zip(ours, theirs)) / len(ours)


def check_model(model: str, device: torch.device, dtype: str, limit: int) -> list[tuple[str, float]]:
    # Two copies, so that each keeps its attention implementation for the whole check.
    dense_lm = LanguageModel(model).load(dtype, "sdpa", device=device).to(device)
    flex_lm = LanguageModel(model).load(dtype, attn_implementation("flex"), device=device).to(device)
    origin = module(Origin, dense_lm, device, dtype)
    one, five = data(model, origin.tokenizer, 1, limit), data(model, origin.tokenizer, 5, limit)
    checks = [("decode == generate", decode_vs_generate(origin, one))]
    flex_one = module(AttentionFusion, flex_lm, device, dtype, backend="flex", first_token="block_ends")
    checks.append(("attention N=1 == origin (flex)", agreement(answers(flex_one, one, 8), answers(origin, one, 8))))
    flex = module(AttentionFusion, flex_lm, device, dtype, backend="flex", first_token="block_ends")
    dense = module(AttentionFusion, dense_lm, device, dtype, backend="dense", first_token="block_ends")
    checks.append(("flex == dense (attention, N=5)", agreement(answers(flex, five, 8), answers(dense, five, 8))))
    checks.append(("batch == alone (origin)", agreement(answers(origin, one, 8), answers(origin, one, 1))))
    return checks


def tiny_models(folder: Path) -> dict[str, str]:
    """name -> folder of the tiny test model of every family in the architecture matrix."""
    import conftest

    return {
        f"tiny {family}": str(conftest.build_tiny_model(folder / family, family=family)) for family in conftest.FAMILIES
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--limit", type=int, default=40, help="facts per check")
    parser.add_argument("--quick", action="store_true", help="the tiny Llama only, 6 facts")
    parser.add_argument("--min-agreement", type=float, default=0.95)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/gpu_check.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    import conftest

    folder = Path(tempfile.mkdtemp(prefix="selfens-gpu-check-"))
    if args.quick:
        models, limit = {"tiny llama": str(conftest.build_tiny_model(folder / "llama"))}, 6
    else:
        models, limit = {**tiny_models(folder), "embedded smollm2": EMBEDDED}, args.limit
    rows, failed = [], 0
    for name, path in models.items():
        for check, share in check_model(path, device, args.dtype, limit):
            ok = share >= args.min_agreement
            failed += not ok
            rows.append({"model": name, "check": check, "agreement": share, "pass": ok})
            print(f"{name:<20} {check:<34} {share:6.1%}  {'PASS' if ok else 'FAIL'}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": str(device), "dtype": args.dtype, "torch": torch.__version__, "limit": limit}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"{len(rows) - failed} of {len(rows)} checks pass; written to {args.out}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
