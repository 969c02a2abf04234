"""`selfens mask --config CONFIG [--index I] [--out PATH] [--generated G] [config overrides]`:
draw the attention mask of one packed example of an AttentionFusion config.

Writes a PNG (default lightning_logs/mask_<layout>_<index>.png) and prints a segment-level text
picture. Only the tokenizer loads (the model itself loads in configure_model), so this is cheap.
Options other than --index, --out and --generated go to the config parser, e.g.
``--data.init_args.limit 3`` or ``--model.init_args.layout isolated_fewshot``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selfens.errors import ConfigError

ATTENTION = "selfens.methods.AttentionFusion"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="selfens mask",
        description="Draw the packed attention mask of one example of an AttentionFusion config. "
        "Other options (--config, --model.init_args.*, --data.init_args.*) go to the config parser.",
        allow_abbrev=False,  # never swallow a config override that starts like one of ours
        add_help=False,
    )
    p.add_argument("--index", type=int, default=0, help="example index in the evaluated data (default 0)")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default lightning_logs/mask_<layout>_<index>.png)")
    p.add_argument("--generated", type=int, default=3, help="generated tokens appended to the picture (default 3)")
    p.add_argument("-h", "--help", action="store_true", help="show this help and the config options, then exit")
    return p


def main(argv: list[str]) -> None:
    from selfens.attention.draw import extend_with_generated, mask_figure, mask_text
    from selfens.attention.packing import pack
    from selfens.cli.lightning import build, connect
    from selfens.data.batch import collate
    from selfens.methods.attention import AttentionFusion

    p = parser()
    opts, rest = p.parse_known_args(argv)
    if opts.help:
        p.print_help()
        print("\nConfig options:")
        build(["--help"], run=False)  # prints LightningCLI's help and exits
        return
    if opts.generated < 0:
        raise ConfigError(f"--generated must be >= 0, got {opts.generated}")

    parsed = build(rest, run=False)
    model, dm = parsed.model, parsed.datamodule
    if not isinstance(model, AttentionFusion):
        kind = type(model)
        raise ConfigError(
            f"the config's model is {kind.__module__}.{kind.__qualname__}; this command needs "
            f"{ATTENTION} (the packed attention mask exists only for attention-level fusion)."
        )

    connect(dm, model)
    dm.setup("test")
    count = len(dm.examples)
    if not 0 <= opts.index < count:
        raise ConfigError(
            f"--index {opts.index} is out of range: the data has {count} example(s) "
            f"(valid: 0..{count - 1}; data limit: {dm.limit})."
        )
    example = dm.examples[opts.index]
    batch = collate([example], pad_id=model.tokenizer.pad_token_id)
    try:
        packed = model.pack(batch)
        problem = None
    except ValueError as err:  # the prompt does not suit first_token; the mask is still worth seeing
        packed, problem = pack(batch.segments, model.layout, model.tokenizer.pad_token_id), str(err)

    mask, labels = extend_with_generated(packed, 0, opts.generated)
    settings = f"layout: {model.layout}  positions: {model.positions}  first_token: {model.first_token}" + (
        f" (fused with {model.hparams.first_fusion})" if model.first_token == "block_ends" else ""
    )
    title = f"example {opts.index} ({example.id}), N={len(example.segments.blocks)}\n{settings}"
    out = opts.out or Path("lightning_logs") / f"mask_{model.layout}_{opts.index}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    mask_figure(mask, labels, title).savefig(out)

    print(
        f"example {opts.index} ({example.id}): {len(example.segments.blocks)} paraphrases, "
        f"{int(packed.valid.sum())} packed tokens + {opts.generated} generated"
    )
    print(mask_text(mask, labels))
    print(settings)
    if problem:
        print(f"warning: this config would fail to decode: {problem}")
    print(f"wrote {out}")
