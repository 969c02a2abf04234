"""The report in TensorBoard: each run logs one value per metric (a single dot in the scalars tab),
so the comparison is written as a run of its own, `<out>/report/`, beside the runs it compares:
its plots as images and its tables as markdown text. `tensorboard --logdir <out>` lists it as the
run "report"."""

from __future__ import annotations

from pathlib import Path


def write_board(out: Path, sections: list[tuple[str, str, str]], notes: list[str], plots: list[Path]) -> Path:
    """`<out>/report/`: the `plots` (PNG files) as images `plots/<name>`, and each of the report's
    `sections` (tag, heading, markdown table) as text under its tag, with the `notes` as `notes`."""
    import matplotlib.image
    from torch.utils.tensorboard import SummaryWriter

    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()  # the report written again: TensorBoard would show both
    with SummaryWriter(str(folder)) as writer:
        for path in plots:
            # image: [H, W, 4] RGBA floats in [0, 1]; TensorBoard takes RGB
            writer.add_image(f"plots/{path.stem}", matplotlib.image.imread(path)[..., :3], 0, dataformats="HWC")
        for tag, heading, table in sections:
            writer.add_text(tag, f"**{heading}**\n\n{table}", 0)
        writer.add_text("notes", "\n".join(notes), 0)
    return folder
