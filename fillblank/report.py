"""What people read: the results tables, the CSVs behind the plots, and the gallery.

All three are built from what `fillblank.evaluate` produces:

- `tables(metrics, title)`: markdown laid out like Table 1 of the BiBS paper, one table per
  setting and metric: methods as rows, blank ratios as columns, the best value of each
  column that is not the oracle's in bold, and a last row per BiBS method with its
  relative gain over the best baseline (positive: BiBS is better).
- `plot_csvs(metrics)`: `{"<setting>.csv": text}`, one row per method and ratio, for
  `dvc plots` to draw each metric against the ratio, one line per method; `chart(metrics,
  metric, title)`: the same as an SVG image that needs no network to render.
- `gallery(examples, images, title)`: one standalone HTML page (images embedded as data
  URIs) showing, per example, the image, the blanked caption, each method's filled
  caption with the filled words marked, and the references. `pick_examples` chooses the
  examples where the methods differ most by nltk's sentence BLEU; `thumbnails` reads the
  images from the dataset's zip archives.
"""

import base64
import html
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from PIL import Image
from tqdm import tqdm

from fillblank import images
from fillblank.decode.registry import with_role
from fillblank.errors import UserError
from fillblank.evaluate import COCO_METRICS, LOWER_IS_BETTER, SETTINGS
from fillblank.extract import base_name, member_index

TABLE_METRICS = (
    "CIDEr",
    *(m for m in COCO_METRICS if m != "CIDEr"),
    "exact_match",
    "mean_score",
    "length_error",
    "search_error",
)
SETTING_TITLES = {"known": "Known blank length", "unknown": "Unknown blank length"}
THUMBNAIL = 320  # pixels, the longer side: big enough to see, small enough for a page of dozens


def tables(metrics: dict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "Each table is one metric in one setting: methods as rows, blank ratios (the share of",
        "a caption's words removed) as columns. The whole filled sentence is scored against all",
        f"captions of its image. An oracle ({', '.join(with_role('oracle'))}) is no contender; bold marks the",
        "best of the others. The last rows give each bidirectional method's relative gain over",
        f"the best baseline ({', '.join(with_role('baseline'))}); positive means it is better.",
    ]
    for setting in SETTINGS:
        if setting not in metrics:
            continue
        lines += ["", f"## {SETTING_TITLES[setting]}"]
        ratios, names = layout(metrics[setting])
        for metric in names:
            lines += ["", f"### {metric}", "", table(metrics[setting], ratios, metric)]
    return "\n".join(lines) + "\n"


def layout(by_method: dict) -> tuple[list[str], list[str]]:
    """The ratios, in order, and the metrics, in `TABLE_METRICS` order, of one setting."""
    ratios = sorted({ratio for per_ratio in by_method.values() for ratio in per_ratio}, key=float)
    present = {name for per_ratio in by_method.values() for values in per_ratio.values() for name in values}
    return ratios, [name for name in TABLE_METRICS if name in present]


def table(by_method: dict, ratios: list[str], metric: str) -> str:
    """One markdown table: `by_method` is `{method: {ratio: {metric: value}}}`."""
    lower = metric in LOWER_IS_BETTER
    oracles = with_role("oracle")
    better = min if lower else max

    def value(method: str, ratio: str) -> float | None:
        return by_method[method].get(ratio, {}).get(metric)

    best = {}
    for ratio in ratios:
        candidates = [v for m in by_method if m not in oracles and (v := value(m, ratio)) is not None]
        best[ratio] = better(candidates) if candidates else None

    rows = [f"| method | {' | '.join(ratios)} |", f"|:--|{'--:|' * len(ratios)}"]
    for method in (m for m in by_method if any(value(m, ratio) is not None for ratio in ratios)):
        cells = []
        for ratio in ratios:
            v = value(method, ratio)
            text = "—" if v is None else f"{v:.3f}"
            cells.append(f"**{text}**" if v is not None and v == best[ratio] and method not in oracles else text)
        rows.append(f"| {method} | {' | '.join(cells)} |")

    for bibs in (m for m in with_role("bidirectional") if m in by_method):
        cells = []
        for ratio in ratios:
            baselines = [v for m in with_role("baseline") if m in by_method and (v := value(m, ratio)) is not None]
            ours = value(bibs, ratio)
            if not baselines or ours is None or better(baselines) == 0:
                cells.append("—")
                continue
            baseline = better(baselines)
            gain = (baseline - ours if lower else ours - baseline) / abs(baseline)
            cells.append(f"{gain:+.1%}")
        if any(cell != "—" for cell in cells):
            rows.append(f"| {bibs} vs best baseline | {' | '.join(cells)} |")
    return "\n".join(rows)


def plot_csvs(metrics: dict) -> dict[str, str]:
    """`{"<setting>.csv": text}`: one row per method and ratio (columns ratio, method, then
    every metric), the long form that `.dvc/plots/by_method.json` draws one line per method
    from, so that no plot lists the methods by hand."""
    files = {}
    for setting in (s for s in SETTINGS if s in metrics):
        by_method = metrics[setting]
        ratios, names = layout(by_method)
        lines = [",".join(["ratio", "method", *names])]
        for method, per_ratio in by_method.items():
            for ratio in (r for r in ratios if r in per_ratio):
                cells = (per_ratio[ratio].get(name) for name in names)
                lines.append(",".join([ratio, method, *("" if v is None else repr(v) for v in cells)]))
        files[f"{setting}.csv"] = "\n".join(lines) + "\n"
    return files


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def chart(metrics: dict, metric: str, title: str) -> str:
    """An SVG line chart of `metric` against the blank ratio, one line per method and
    setting (solid: length known, dashed: unknown). A plain file that renders anywhere, with
    no script and no network, unlike `dvc plots show`'s page, which loads Vega from a CDN."""
    lines = {
        (method, setting): sorted((float(r), v[metric]) for r, v in per_ratio.items() if metric in v)
        for setting in SETTINGS
        if setting in metrics
        for method, per_ratio in metrics[setting].items()
    }
    lines = {key: points for key, points in lines.items() if points}
    xs = sorted({x for points in lines.values() for x, _ in points})
    ys = [y for points in lines.values() for _, y in points]
    low, high = min(ys), max(ys)
    low, high = (low - 0.5, high + 0.5) if high == low else (low - 0.05 * (high - low), high + 0.05 * (high - low))
    width, height, left, top, plot_w, plot_h = 640, 360, 60, 40, 380, 270

    def at(x: float, y: float) -> str:
        fx = 0.5 if len(xs) == 1 else (x - xs[0]) / (xs[-1] - xs[0])
        return f"{left + fx * plot_w:.1f},{top + (1 - (y - low) / (high - low)) * plot_h:.1f}"

    e = html.escape
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="22" font-size="14">{e(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for i in range(5):
        y = low + (high - low) * i / 4
        svg.append(f'<text x="{left - 6}" y="{at(xs[0], y).split(",")[1]}" text-anchor="end" dy="4">{y:.3g}</text>')
    for x in xs:
        svg.append(f'<text x="{at(x, low).split(",")[0]}" y="{top + plot_h + 16}" text-anchor="middle">{x:g}</text>')
    svg.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" text-anchor="middle">blank ratio</text>')
    methods = list(dict.fromkeys(method for method, _ in lines))
    for n, ((method, setting), points) in enumerate(lines.items()):
        colour, dash = (
            PALETTE[methods.index(method) % len(PALETTE)],
            ' stroke-dasharray="6,4"' if setting == "unknown" else "",
        )
        path = " ".join(at(x, y) for x, y in points)
        svg.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        svg += [f'<circle cx="{c.split(",")[0]}" cy="{c.split(",")[1]}" r="3" fill="{colour}"/>' for c in path.split()]
        ly = top + 8 + n * 16
        x1, x2 = left + plot_w + 16, left + plot_w + 40
        svg.append(f'<line x1="{x1}" y1="{ly}" x2="{x2}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
        svg.append(f'<text x="{left + plot_w + 46}" y="{ly + 4}">{e(method)}, {setting}</text>')
    return "\n".join(svg + ["</svg>"]) + "\n"


def pick_examples(fills: pd.DataFrame, blanks: pd.DataFrame, captions: pd.DataFrame, count: int) -> list[dict]:
    """The `count` (blank, setting) pairs whose methods' fills differ most in sentence BLEU.

    `fills` as from `fillblank.evaluate.read_fills`. Each example is a dict: the blank's row
    (blank_id, image_id, ratio, left, blank, right), `setting`, `filename`, `references`
    (the raw captions) and `fills`: `[(method, fill, bleu), ...]` in the fills' order.
    """
    refs = captions.groupby("image_id")["tokens"].agg(list).to_dict()
    smooth = SmoothingFunction().method1  # short captions often share no 4-gram with any reference
    cache: dict[tuple[int, str], float] = {}
    rows = fills.merge(blanks, on="blank_id")
    bleus = []
    for image, sentence in tqdm(
        zip(rows["image_id"], rows["sentence"], strict=True), total=len(rows), desc="sentence BLEU"
    ):
        if (image, sentence) not in cache:
            cache[image, sentence] = sentence_bleu(refs[image], sentence.split(), smoothing_function=smooth)
        bleus.append(cache[image, sentence])
    rows["bleu"] = bleus

    spread = (
        rows.groupby(["setting", "blank_id"])["bleu"].agg(lambda b: b.max() - b.min()).rename("spread").reset_index()
    )
    chosen = spread.sort_values(["spread", "setting", "blank_id"], ascending=[False, True, True]).head(count)
    first = captions.drop_duplicates("image_id").set_index("image_id")
    raws = captions.groupby("image_id")["raw"].agg(list)
    examples = []
    for setting, blank_id in zip(chosen["setting"], chosen["blank_id"], strict=True):
        group = rows[(rows["setting"] == setting) & (rows["blank_id"] == blank_id)]
        head = group.iloc[0]
        examples.append(
            {
                **{key: head[key] for key in ("blank_id", "image_id", "ratio", "left", "blank", "right")},
                "setting": setting,
                "filename": first.loc[head["image_id"], "filename"],
                "references": raws[head["image_id"]],
                "fills": list(zip(group["method"], group["fill"], group["bleu"], strict=True)),
            }
        )
    return examples


def thumbnails(folder: Path, filenames: Iterable[str]) -> dict[str, str]:
    """`{filename: data URI}` of JPEG thumbnails, each image found in the zip archives of
    `folder` (the raw layout of every dataset) as the features stage finds it."""
    wanted = {base_name(name): name for name in filenames}
    where = member_index(sorted(Path(folder).glob("*.zip")), set(wanted))
    if missing := sorted(wanted.keys() - where.keys()):
        raise UserError(f"{folder}: no image {missing[0]} in its zip archives ({len(missing)} missing)")
    uris = {}
    for base, (archive, member) in where.items():
        with zipfile.ZipFile(archive) as zipped:
            uris[wanted[base]] = data_uri(zipped.read(member), f"{archive}:{member}")
    return uris


def data_uri(encoded: bytes, where: str) -> str:
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image = images.rgb(image)
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            out = io.BytesIO()
            image.save(out, "JPEG", quality=85)
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise UserError(f"{where}: unreadable image ({error})") from None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; color: #222; }
.example { display: flex; gap: 1.5em; padding: 1.5em 0; border-top: 1px solid #ccc; }
.example img { width: 240px; height: auto; align-self: flex-start; }
h2 { font-size: 1.1em; margin-top: 0; }
.blanked { font-size: 1.2em; }
.gap { color: #b00; font-weight: bold; }
mark { background: #fe8; padding: 0 .15em; }
table { border-collapse: collapse; }
td, th { padding: .2em .8em; text-align: left; }
td.bleu { text-align: right; font-variant-numeric: tabular-nums; color: #666; }
ol { color: #555; }
"""


def gallery(examples: list[dict], images: dict[str, str], title: str) -> str:
    """The HTML page; `images` maps each example's filename to its data URI."""
    e = html.escape
    parts = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{STYLE}</style></head><body>',
        f"<h1>{e(title)}</h1>",
        "<p>The blanks where the methods' fills differ most in sentence BLEU (nltk, against all "
        "captions of the image). Marked words are each method's fill. All the scores: "
        '<a href="table.md">table.md</a>; against the blank ratio: '
        '<a href="plots/CIDEr.svg">CIDEr</a>, <a href="plots/BLEU-4.svg">BLEU-4</a>.</p>',
    ]
    for ex in examples:
        known = ex["setting"] == "known"
        gap = " ".join(["___"] * len(ex["blank"])) if known else "___"
        length = f"{len(ex['blank'])} words" if known else f"length not given; {len(ex['blank'])} words removed"
        parts += [
            f'<section class="example" id="blank-{ex["blank_id"]}-{ex["setting"]}">',
            f'<img src="{images[ex["filename"]]}" alt="{e(ex["filename"])}">',
            "<div>",
            f"<h2>blank {ex['blank_id']} · ratio {ex['ratio']:g} · {length}</h2>",
            f'<p class="blanked">{e(" ".join(ex["left"]))} <span class="gap">{gap}</span> '
            f"{e(' '.join(ex['right']))}</p>",
            "<table><tr><th>method</th><th>filled caption</th><th>sentence BLEU</th></tr>",
        ]
        for method, fill, bleu in ex["fills"]:
            sentence = f"{e(' '.join(ex['left']))} <mark>{e(' '.join(fill)) or '∅'}</mark> {e(' '.join(ex['right']))}"
            cells = f'<td>{e(method)}</td><td>{sentence}</td><td class="bleu">{bleu:.3f}</td>'
            parts.append(f'<tr data-method="{e(method)}">{cells}</tr>')
        parts += [
            "</table>",
            "<ol>",
            *(f"<li>{e(ref)}</li>" for ref in ex["references"]),
            "</ol>",
            "</div>",
            "</section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
