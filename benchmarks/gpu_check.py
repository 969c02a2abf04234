"""The equivalences on a GPU, in bf16, with the compiled flex backend: one table, PASS, FAIL or SKIP.

    python benchmarks/gpu_check.py                       # CUDA: tiny models and the embedded SmolLM2
    python benchmarks/gpu_check.py --device cpu --quick  # a smoke test of this script (the tests run it)

Per model: our decode loop == transformers `generate` (greedy, a left-padded batch, both ending at
the model's EOS ids); attention fusion with N = 1 == origin (flex); flex == dense (attention
fusion, N = 5); a batch == each example alone (origin). Each is the share of examples whose answers
agree; bf16 may flip a near-tie, so a check passes at `--min-agreement` (default 0.95) or more.

The tiny models are those of the tests' architecture matrix (tests/helpers.py FAMILIES), built
here with head_dim 16: compiled FlexAttention (Triton) takes no head dimension below 16, and the
tests' tiny models have 8. A model whose head_dim is still below 16 on CUDA gets its two flex checks
SKIPped, with the reason. On the CPU, FlexAttention runs eagerly (selfens.attention.backend), at
any head dimension.

The script runs to the end: each model and each check runs in its own try, an error is a FAIL
with its message (the traceback goes to stderr) and the next check runs. The JSON summary
(`--out`) is rewritten after every check and at the end, whatever happened; the exit status is 1
when any check FAILed, 0 otherwise (a SKIP is no failure).

Test only: `--fail TARGET` raises an injected error in the checks of a model (TARGET = its name:
it fails to load), in one check of every model (the check's name) or in one check of one model
("MODEL: CHECK"), so that the tests can see the script go on after a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from selfens.attention.backend import attn_implementation  # noqa: E402
from selfens.data import ParaRel, collate  # noqa: E402
from selfens.data.base import prefix_batches  # noqa: E402
from selfens.decoding.loop import decode  # noqa: E402
from selfens.decoding.prompt import Prompt, left_pad  # noqa: E402
from selfens.methods import AttentionFusion, Origin  # noqa: E402
from selfens.model.language_model import LanguageModel  # noqa: E402
from selfens.model.registry import EMBEDDED, model_config, resolve_dtype  # noqa: E402

GENERATE = "decode == generate"
FLEX_ONE = "attention N=1 == origin (flex)"
FLEX_DENSE = "flex == dense (attention, N=5)"
BATCH = "batch == alone (origin)"
CHECKS = (GENERATE, FLEX_ONE, FLEX_DENSE, BATCH)
FLEX_CHECKS = (FLEX_ONE, FLEX_DENSE)
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

MIN_FLEX_HEAD_DIM = 16  # compiled FlexAttention on CUDA: Triton's tl.dot takes no smaller head dimension
QUICK_FAMILIES = ("llama", "gemma2")  # gemma2: eager attention, soft-capped scores (a flex score_mod)
QUICK_LIMIT, LIMIT = 6, 40


class InjectedFailure(RuntimeError):
    """The error `--fail` raises (tests only)."""


# -- the checks ------------------------------------------------------------------------------------
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


def until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    """The tokens before the first EOS id."""
    return tokens[: next((i for i, t in enumerate(tokens) if t in eos), len(tokens))]


def decode_vs_generate(origin, data: ParaRel, max_new_tokens: int = 8) -> float:
    """Our loop against `generate` on the same left-padded single prompts (paraphrase 0), both ending
    at the model's EOS ids (generation config and tokenizer), both cut there the same way."""
    eos_ids = origin.eos_ids
    prompts = [e.segments.prompt(0) for e in data.examples]
    ids, valid = left_pad(prompts, data.tokenizer.pad_token_id)
    ids, valid = ids.to(origin.device), valid.to(origin.device)
    ours = decode(
        origin.hf_model, Prompt.left_padded(ids, valid), max_new_tokens=max_new_tokens, eos_ids=eos_ids
    ).tokens
    theirs = origin.hf_model.generate(
        input_ids=ids,
        attention_mask=valid.long(),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos_ids,
        pad_token_id=data.tokenizer.pad_token_id,
    )[:, ids.shape[1] :].tolist()
    eos = set(eos_ids)
    ours, theirs = [until_eos(row, eos) for row in ours], [until_eos(row, eos) for row in theirs]
    return sum(a == b for a, b in zip(ours, theirs)) / len(ours)


def once(make: Callable):
    """make(), called on first use and kept (an error is raised again on the next use, not kept)."""
    made = []

    def get():
        if not made:
            made.append(make())
        return made[0]

    return get


def model_checks(path: str, device: torch.device, dtype: str, limit: int) -> dict[str, Callable[[], float]]:
    """check name -> its agreement, to be computed. Loads the dense copy of the model and the data
    (an error here fails every check of the model); the flex copy loads in the first flex check."""
    # Two copies, so that each keeps its attention implementation for the whole check.
    dense_lm = LanguageModel(path).load(dtype, "sdpa", device=device).to(device)
    flex_lm = once(lambda: LanguageModel(path).load(dtype, attn_implementation("flex"), device=device).to(device))
    origin = module(Origin, dense_lm, device, dtype)
    one, five = data(path, origin.tokenizer, 1, limit), data(path, origin.tokenizer, 5, limit)
    fusion = lambda lm, backend: module(AttentionFusion, lm, device, dtype, backend=backend, first_token="block_ends")
    return {
        GENERATE: lambda: decode_vs_generate(origin, one),
        FLEX_ONE: lambda: agreement(answers(fusion(flex_lm(), "flex"), one, 8), answers(origin, one, 8)),
        FLEX_DENSE: lambda: agreement(
            answers(fusion(flex_lm(), "flex"), five, 8), answers(fusion(dense_lm, "dense"), five, 8)
        ),
        BATCH: lambda: agreement(answers(origin, one, 8), answers(origin, one, 1)),
    }


def head_dim(config) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads


def flex_skip_reason(path: str, device: torch.device) -> Optional[str]:
    """Why the flex checks cannot run for this model here, or None. On the CPU FlexAttention runs
    eagerly and takes any head dimension; compiled on CUDA it takes no fewer than 16."""
    if device.type != "cuda":
        return None
    dim = head_dim(model_config(path))
    if dim < MIN_FLEX_HEAD_DIM:
        return f"head_dim {dim} < {MIN_FLEX_HEAD_DIM}: compiled FlexAttention (Triton) cannot run it"
    return None


# -- the models ------------------------------------------------------------------------------------
def _with_flex_head_dim(settings: dict, heads: int = 4) -> dict:
    """Settings of a tiny config changed so that its head_dim is MIN_FLEX_HEAD_DIM."""
    if "head_dim" in settings:  # set explicitly; Gemma scales its queries by the same number
        scalar = {"query_pre_attn_scalar": MIN_FLEX_HEAD_DIM} if "query_pre_attn_scalar" in settings else {}
        return {"head_dim": MIN_FLEX_HEAD_DIM, **scalar}
    # Derived as hidden_size / num_attention_heads (tiny_config: 4 heads unless the family sets them).
    return {"hidden_size": MIN_FLEX_HEAD_DIM * settings.get("num_attention_heads", heads)}


def flex_overrides(family: str) -> dict:
    """build_tiny_model overrides that give `family` head_dim 16 (the tests' tiny models have 8)."""
    import helpers

    own = helpers.FAMILIES[family][2]
    if "text_config" in own:  # a multimodal wrapper: its language model's config
        text_class, text = own["text_config"]
        return {"text_config": (text_class, {**text, **_with_flex_head_dim(text)})}
    return _with_flex_head_dim(own)


def build_tiny(folder: Path, family: str) -> str:
    """The tiny test model of `family`, with head_dim 16, saved in `folder`."""
    import helpers

    return str(helpers.build_tiny_model(folder, family=family, **flex_overrides(family)))


def default_models(folder: Path, quick: bool) -> dict[str, Callable[[], str]]:
    """name -> how to get its folder or registry name (built when its turn comes, in its try)."""
    import helpers

    families = QUICK_FAMILIES if quick else tuple(helpers.FAMILIES)
    models = {f"tiny {f}": (lambda f=f: build_tiny(folder / f, f)) for f in families}
    if not quick:
        models["embedded smollm2"] = lambda: EMBEDDED
    return models


# -- running ---------------------------------------------------------------------------------------
def one_line(error: BaseException, limit: int = 500) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def row(model: str, check: str, status: str, share: Optional[float] = None, error: Optional[str] = None) -> dict:
    return {"model": model, "check": check, "status": status, "agreement": share, "error": error}


def show(r: dict) -> None:
    share = "" if r["agreement"] is None else f"{r['agreement']:.1%}"
    note = f"  {r['error'][:150]}" if r["error"] else ""  # in full in the summary and the closing list
    print(f"{r['model']:<22} {r['check']:<32} {share:>6}  {r['status']}{note}", flush=True)


def injected(fail: Optional[str], model: str, check: Optional[str] = None) -> None:
    """Raise the `--fail` error here when it names this model (check None: its loading), this check, or both."""
    if fail is None:
        return
    if (check is None and fail == model) or (check is not None and fail in (check, f"{model}: {check}")):
        raise InjectedFailure(f"injected by --fail {fail!r}")


def check_model(
    name: str, source: Callable[[], str], device: torch.device, dtype: str, limit: int, min_agreement: float, fail
) -> list[dict]:
    """The rows of one model, each check in its own try; printed as they come."""
    rows = []

    def add(r: dict) -> None:
        rows.append(r)
        show(r)

    try:
        injected(fail, name)
        path = source()
        checks = model_checks(path, device, dtype, limit)
        skip = flex_skip_reason(path, device)
    except Exception as error:  # the model does not load: every check fails with why
        traceback.print_exc()
        for check in CHECKS:
            add(row(name, check, FAIL, error=f"loading: {one_line(error)}"))
        return rows
    for check, run in checks.items():
        if skip is not None and check in FLEX_CHECKS:
            add(row(name, check, SKIP, error=skip))
            continue
        try:
            injected(fail, name, check)
            share = run()
        except Exception as error:
            traceback.print_exc()
            add(row(name, check, FAIL, error=one_line(error)))
            continue
        ok = share >= min_agreement
        add(row(name, check, PASS if ok else FAIL, share, None if ok else f"agreement below {min_agreement:.0%}"))
    return rows


def summary(meta: dict, rows: list[dict], complete: bool) -> dict:
    counts = {status: sum(r["status"] == status for r in rows) for status in (PASS, FAIL, SKIP)}
    return {"meta": meta, "complete": complete, "counts": counts, "rows": rows}


def write(out: Path, content: dict) -> None:
    """Replace `out` at once: a summary is never half written, even if the process is killed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}")
    staging.write_text(json.dumps(content, indent=2) + "\n")
    staging.replace(out)


def describe(device: torch.device, dtype: str, limit: int, args) -> dict:
    meta = {
        "device": str(device),
        "dtype": str(resolve_dtype(dtype, device)).removeprefix("torch."),
        "torch": torch.__version__,
        "limit": limit,
        "min_agreement": args.min_agreement,
        # selfens.attention.backend compiles FlexAttention on CUDA only; on the CPU it runs eagerly.
        "flex_compiled": device.type == "cuda",
    }
    try:
        import transformers

        meta["transformers"] = transformers.__version__
        if device.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name(device)
    except Exception as error:  # a machine without the GPU it was asked for: the checks will say so too
        meta["gpu"] = one_line(error)
    if args.fail is not None:
        meta["injected_failure"] = args.fail
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="auto", help="auto: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--limit", type=int, help=f"facts per check (default {LIMIT}; {QUICK_LIMIT} with --quick)")
    parser.add_argument(
        "--quick", action="store_true", help=f"tiny {' and tiny '.join(QUICK_FAMILIES)} only, {QUICK_LIMIT} facts"
    )
    parser.add_argument(
        "--model", action="append", help="a registry name or folder to check in place of the default models (repeat)"
    )
    parser.add_argument("--min-agreement", type=float, default=0.95)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/gpu_check.json"))
    parser.add_argument("--fail", help=argparse.SUPPRESS)  # tests only: see the module's docstring
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    limit = args.limit or (QUICK_LIMIT if args.quick else LIMIT)
    rows: list[dict] = []
    meta = {"device": str(device), "dtype": args.dtype, "limit": limit}
    complete = False
    try:
        meta = describe(device, args.dtype, limit, args)
        print(" ".join(f"{k}={v}" for k, v in meta.items()), flush=True)
        with tempfile.TemporaryDirectory(prefix="selfens-gpu-check-") as folder:
            if args.model:
                models = {m: (lambda m=m: m) for m in args.model}
            else:
                models = default_models(Path(folder), args.quick)
            for name, source in models.items():
                rows += check_model(name, source, device, args.dtype, limit, args.min_agreement, args.fail)
                write(args.out, summary(meta, rows, complete=False))
                if device.type == "cuda":  # each model compiles afresh, within dynamo's recompile limit
                    torch.compiler.reset()
                    torch.cuda.empty_cache()
        complete = True
    except Exception as error:  # outside every check: recorded, and the summary still written
        traceback.print_exc()
        rows.append(row("-", "the script itself", FAIL, error=one_line(error)))
        show(rows[-1])
    finally:
        result = summary(meta, rows, complete)
        write(args.out, result)
    counts = result["counts"]
    print(f"{counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[SKIP]} SKIP of {len(rows)} checks; written to {args.out}")
    for r in rows:
        if r["status"] == FAIL:
            print(f"FAIL  {r['model']}: {r['check']}: {r['error']}")
    if counts[FAIL]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
