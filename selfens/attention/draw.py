"""Pictures of a packed example's attention mask: a matplotlib figure and a terminal sketch.

Pure functions over a packed example; torch and matplotlib are imported only when called, so
importing this module costs nothing.

A mask here is one example's dense mask ``[L, L]`` bool, query rows and key columns, True =
attend, and ``labels`` its segments as ``(name, start, end)`` half-open token spans in packed order
(as `Packed.labels`, with padding stripped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor

    from selfens.attention.packing import Packed

Label = tuple[str, int, int]

# Terminal cells: every query of the row segment sees every key of the column segment / the causal
# triangle of a segment over itself / some but not all / none.
FULL, CAUSAL, PARTIAL, NONE = "█", "◣", "▒", "·"
LEGEND = f"{FULL} sees all  {CAUSAL} causal within the segment  {PARTIAL} sees some  {NONE} sees none"
TOKEN_LEVEL_MAX = 80  # mask_text adds a token-level picture up to this many tokens


def extend_with_generated(packed: Packed, example: int, num_generated: int = 3) -> tuple[Tensor, list[Label]]:
    """One example's dense mask, padding stripped, with `num_generated` generated tokens appended.

    Generated tokens are level 3 (FUSED): they see every real token and the earlier generated ones,
    as `decode_mask` gives them during decoding. The rule "same segment or lower level" needs them
    to share the segment of the level-3 suffix when there is one (a separate level-3 segment would
    not see the suffix); otherwise they get a new segment id.

    Returns (mask [L', L'] bool, labels) with L' = real tokens + num_generated, labels shifted to the
    stripped sequence plus ("generated", L, L') when num_generated > 0.
    """
    import torch

    from selfens.attention.masks import dense_mask, packed_mask_mod
    from selfens.attention.packing import FUSED

    if not 0 <= example < packed.valid.shape[0]:
        raise IndexError(f"example {example} is out of range for a batch of {packed.valid.shape[0]}")
    if num_generated < 0:
        raise ValueError(f"num_generated must be >= 0, got {num_generated}")
    keep = packed.valid[example]
    level, segment = packed.level[example][keep], packed.segment[example][keep]
    offset = int(keep.long().argmax()) if keep.any() else 0  # left padding before the real tokens
    real = int(keep.sum())

    fused = segment[level == FUSED]
    gen_segment = int(fused[0]) if len(fused) else (int(segment.max()) + 1 if real else 0)
    level = torch.cat([level, torch.full((num_generated,), FUSED, dtype=torch.long)])
    segment = torch.cat([segment, torch.full((num_generated,), gen_segment, dtype=torch.long)])
    valid = torch.ones(real + num_generated, dtype=torch.bool)

    length = real + num_generated
    mask = dense_mask(packed_mask_mod((level[None], segment[None], valid[None])), 1, length)[0, 0]
    labels = [(name, start - offset, end - offset) for name, start, end in packed.labels[example]]
    if num_generated:
        labels.append(("generated", real, length))
    return mask, labels


def short_name(name: str) -> str:
    """Column code of a segment: pre, ins, s<k>, p<k>, suf, gen (else the first 3 letters)."""
    word, _, number = name.partition(" ")
    code = {"prefix": "pre", "instruction": "ins", "shot": "s", "paraphrase": "p", "suffix": "suf", "generated": "gen"}
    return code.get(word, word[:3]) + number


def _cell(block: Tensor, same: bool) -> str:
    if same and block.shape[0] == block.shape[1]:
        import torch

        if bool((block == torch.ones_like(block).tril()).all()):
            return CAUSAL
    if bool(block.all()):
        return FULL
    return PARTIAL if bool(block.any()) else NONE


def mask_text(mask: Tensor, labels: Sequence[Label], token_level: bool | None = None) -> str:
    """A terminal picture of the mask: one row and one column per segment, plus a legend.

    Cells: ``█`` every query of the row segment sees every key of the column segment, ``◣`` the
    causal triangle of a segment over itself, ``▒`` some keys, ``·`` none. With `token_level` (by
    default when L <= 80) a token-level picture follows: ``#`` attend, ``.`` not, a space between
    segments.
    """
    import torch

    mask = torch.as_tensor(mask, dtype=torch.bool)
    labels = sorted(labels, key=lambda x: x[1])
    codes = [short_name(name) for name, _, _ in labels]
    width = max(3, *map(len, codes)) + 1
    spans = [f"{start}:{end}" for _, start, end in labels]
    name_w = max(len(name) for name, _, _ in labels)
    span_w = max(map(len, spans))
    head_w = name_w + 1 + span_w + 1 + 5  # "name span (code)"

    def header(i: int) -> str:
        return f"{labels[i][0]:<{name_w}} {spans[i]:>{span_w}} {'(' + codes[i] + ')':<5}"

    lines = [
        f"attention mask, {mask.shape[0]} tokens (rows: query segment, columns: key segment)",
        " " * head_w + "".join(f"{c:^{width}}" for c in codes),
    ]
    for i, (_, qs, qe) in enumerate(labels):
        cells = [_cell(mask[qs:qe, ks:ke], i == j) for j, (_, ks, ke) in enumerate(labels)]
        lines.append(header(i) + "".join(f"{c:^{width}}" for c in cells))
    lines.append(LEGEND)

    if token_level is None:
        token_level = mask.shape[0] <= TOKEN_LEVEL_MAX
    if token_level:
        code_w = max(map(len, codes))
        lines += ["", "token level (# attend, . not; a space between segments):"]
        for i, (_, qs, qe) in enumerate(labels):
            for q in range(qs, qe):
                row = " ".join("".join("#" if v else "." for v in mask[q, ks:ke].tolist()) for _, ks, ke in labels)
                lines.append(f"{codes[i]:>{code_w}} {row}")
    return "\n".join(line.rstrip() for line in lines)


def _tick_labels(labels: Sequence[Label], points_per_token: float, fontsize: float):
    """Tick positions, texts and pads: "name (tokens)" at each segment's centre; a segment too short
    for that (its centre closer than ~1.3 font heights to a neighbour's) gets its short code instead,
    alternating between two pads so that neighbouring codes do not overlap."""
    centres = [(start + end - 1) / 2 for _, start, end in labels]
    gaps = [(b - a) * points_per_token for a, b in zip(centres, centres[1:])]
    names, pads, stagger = [], [], 0
    for i, (name, start, end) in enumerate(labels):
        near = min(gaps[i - 1] if i else float("inf"), gaps[i] if i < len(gaps) else float("inf"))
        if near >= 1.3 * fontsize:
            names.append(f"{name} ({end - start})")
            pads.append(3.0)
            stagger = 0
        else:
            names.append(short_name(name))
            pads.append(3.0 + (stagger % 2) * 2.6 * fontsize)
            stagger += 1
    return centres, names, pads


def mask_figure(mask: Tensor, labels: Sequence[Label], title: str = "") -> Figure:
    """The mask as an image (query rows, key columns; dark = attend), with thin lines at segment
    boundaries and the segment names at their centres on both axes. Readable up to ~600 tokens.

    Built on `matplotlib.figure.Figure` (no pyplot state); `fig.savefig(path)` renders with Agg.
    """
    import torch
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
    length = mask.shape[0]
    labels = sorted(labels, key=lambda x: x[1])
    size = min(14.0, max(9.0, 6.0 + length / 75))  # inches: ~1.2 pt per token at 600 tokens
    fig = Figure(figsize=(size + 0.5, size), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    colors = ["#f3f3f3", "#1f4e8c"]
    ax.imshow(mask.numpy(), cmap=ListedColormap(colors), vmin=0, vmax=1, interpolation="nearest", aspect="equal")

    for _, start, _ in labels[1:]:
        ax.axhline(start - 0.5, color="#d62728", linewidth=0.5, alpha=0.8)
        ax.axvline(start - 0.5, color="#d62728", linewidth=0.5, alpha=0.8)

    fontsize = 8 if len(labels) <= 16 else 7
    points_per_token = 0.72 * size * 72 / max(length, 1)  # the axes take roughly 72% of the figure
    centres, names, pads = _tick_labels(labels, points_per_token, fontsize)
    ax.set_xticks(centres, names, rotation=90, fontsize=fontsize)
    ax.set_yticks(centres, names, fontsize=fontsize)
    ax.tick_params(length=0)
    for axis in (ax.xaxis, ax.yaxis):
        for tick, pad in zip(axis.get_major_ticks(), pads):
            tick.set_pad(pad)
    # Token-index ticks on the opposite axes, for locating single tokens.
    for secondary in (ax.secondary_xaxis("top"), ax.secondary_yaxis("right")):
        secondary.tick_params(labelsize=6, length=2)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_xlim(-0.5, length - 0.5)
    ax.set_ylim(length - 0.5, -0.5)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(
        handles=[Patch(color=colors[1], label="attends"), Patch(facecolor=colors[0], edgecolor="#999", label="masked")],
        loc="upper right",
        fontsize=7,
        framealpha=0.9,
    )
    return fig
