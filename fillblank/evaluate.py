"""How good the fills are: the one pycocoevalcap wrapper, and the metrics of the pipeline.

`score(refs, runs)` scores runs of hypotheses against references with pycocoevalcap: the
PTB tokenizer, then BLEU-1 to 4, METEOR, ROUGE-L and CIDEr (not SPICE: it needs a
download). Java runs the tokenizer and METEOR and takes seconds to start, so every run
goes through one tokenizer call and one METEOR process.

`read_results(root, dataset, methods)` reads what the evaluate and report stages need.
`read_fills(folder, methods, blanks)` reads `<method>.parquet` of each method from a fills
folder (columns as in `fillblank.decode`: blank_id, setting, fill, sentence, score, length,
seconds) and checks it against the blank set. `evaluate(fills, blanks, captions)` scores the whole
filled sentence against all captions of its image, per setting, method and blank ratio,
laid out as `metrics/<dataset>.json`:

    {"known":   {"<method>": {"<ratio>": {"BLEU-1": ..., "BLEU-2": ..., "BLEU-3": ...,
                                           "BLEU-4": ..., "METEOR": ..., "ROUGE-L": ...,
                                           "CIDEr": ..., "exact_match": ...,
                                           "mean_score": ..., "search_error": ...}}},
     "unknown": {... the same, plus "length_error"},
     "seconds_per_blank": {"known": {"<method>": ...}, "unknown": {...}},
     "provenance": {"forward": {...}, "backward": {...}, "fill": {"<method>": {...}}}}

    exact_match    share of blanks filled with exactly the removed words
    mean_score     mean S(Y) = log P_fwd(Y|I) + log P_bwd(Y|I) of the filled sentences
    length_error   mean |chosen length - removed length| (unknown length only)
    search_error   share of blanks where the method's S(Y) is below that of the oracle
                   (`exact`, the exhaustive search; only where it ran, and not for itself);
                   with the length unknown, S(Y) + the oracle's length bonus x words, which
                   the oracle maximises there (fillblank/decode/length.py), and only for
                   the methods of the oracle's scale, which maximise the same

Ratios are keys such as "0.25"; methods come in the order given to `read_fills`. Values
are rounded to 6 decimals, so that equal runs give byte-equal files.
Timings live apart under `seconds_per_blank`: they are the only values that differ
between two runs of the same pipeline. `provenance` (`read_provenance`) records the
machine each captioner was trained on and each method's fills were made on (torch
version, CPU capability, threads, device; `fillblank.provenance`): when two machines
give different metrics, it says where they came from.
"""

import json
import shutil
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from tqdm import tqdm

from fillblank import tables
from fillblank.decode import registry
from fillblank.decode.step import SLACK
from fillblank.errors import UserError

COCO_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
SETTINGS = ("known", "unknown")
LOWER_IS_BETTER = ("length_error", "search_error")

FILL_COLUMNS = ("blank_id", "setting", "fill", "sentence", "score", "length", "seconds")
BLANK_COLUMNS = ("blank_id", "image_id", "sentence_id", "ratio", "left", "blank", "right")
CAPTION_COLUMNS = ("image_id", "filename", "raw", "tokens")

JAVA_MISSING = (
    "pycocoevalcap needs Java (its PTB tokenizer and METEOR are Java programs) and `java` is not "
    "on PATH: install a Java runtime, e.g. `sudo apt-get install default-jre-headless` (Debian, Ubuntu) "
    "or `brew install openjdk` (macOS), and check that `java -version` works"
)


def score(
    refs: Mapping[Hashable, Sequence[str]], runs: Mapping[Hashable, Mapping[Hashable, str]]
) -> dict[Hashable, dict[str, float]]:
    """Score each run, `{key: hypothesis}`, against `refs`, `{key: [reference, ...]}`.

    Returns `{run: {"BLEU-1": ..., ..., "CIDEr": ...}}`. Corpus-level scores: CIDEr's
    document frequencies come from the references of each run's own keys.
    """
    every = tokenized(refs, runs)
    meteor = Meteor()
    results = {}
    for run, (gts, res) in tqdm(every.items(), desc="pycocoevalcap", unit="run"):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        results[run] = {
            **{f"BLEU-{n}": float(value) for n, value in enumerate(bleu, 1)},
            "METEOR": float(meteor.compute_score(gts, res)[0]),
            "ROUGE-L": float(Rouge().compute_score(gts, res)[0]),
            "CIDEr": float(Cider().compute_score(gts, res)[0]),
        }
    return results


def cider(
    refs: Mapping[Hashable, Sequence[str]], runs: Mapping[Hashable, Mapping[Hashable, str]]
) -> dict[Hashable, dict[Hashable, float]]:
    """CIDEr alone of each hypothesis of each run, `{run: {key: score}}`, as `score`
    computes it (a run's CIDEr is the mean of its hypotheses'): for tuning on many runs,
    where the other metrics (METEOR above all) would cost more than the search."""
    scored = {}
    for run, (gts, res) in tokenized(refs, runs).items():
        _, each = Cider().compute_score(gts, res)  # in the order of gts's keys
        scored[run] = {key: float(score) for key, score in zip(gts, each, strict=True)}
    return scored


def tokenized(refs: Mapping[Hashable, Sequence[str]], runs: Mapping[Hashable, Mapping[Hashable, str]]) -> dict:
    """`{run: (gts, res)}`: each run's references and hypotheses, PTB-tokenized in one call,
    in the form pycocoevalcap's scorers read."""
    if shutil.which("java") is None:
        raise UserError(JAVA_MISSING)
    for run, hyps in runs.items():
        if not hyps:
            raise ValueError(f"run {run!r} has no hypotheses")
        if missing := hyps.keys() - refs.keys():
            raise ValueError(f"run {run!r}: no references for {len(missing)} keys, e.g. {next(iter(missing))!r}")
    keys = set().union(*(hyps.keys() for hyps in runs.values()))
    sentences = {("ref", key): [{"caption": ref} for ref in refs[key]] for key in keys}
    for run, hyps in runs.items():
        sentences |= {("hyp", run, key): [{"caption": hyp}] for key, hyp in hyps.items()}
    tokens = PTBTokenizer().tokenize(sentences)
    return {
        run: ({key: tokens[("ref", key)] for key in hyps}, {key: tokens[("hyp", run, key)] for key in hyps})
        for run, hyps in runs.items()
    }


def read_table(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """The named columns of a parquet file, list columns as Python lists."""
    table = tables.read(path, columns)
    frame = table.to_pandas()
    for name in columns:
        if pa.types.is_list(table.schema.field(name).type):
            frame[name] = frame[name].map(list)
    return frame


def read_results(root: Path, dataset: str, methods: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the evaluate and report stages read in the project at `root`: the fills of
    `methods`, the blank set and the captions of `dataset`, as (fills, blanks, captions)."""
    blanks = read_table(root / "data/blanks" / f"{dataset}.parquet", BLANK_COLUMNS)
    captions = read_table(root / "data/prepared" / dataset / "captions.parquet", CAPTION_COLUMNS)
    return read_fills(root / "data/fills" / dataset, methods, blanks), blanks, captions


def read_fills(folder: Path, methods: Sequence[str], blanks: pd.DataFrame) -> pd.DataFrame:
    """The fills of `methods` in `folder`, one table with a `method` column, in that order.

    Only the methods named: a file left behind by a method no longer run is no result.
    """
    frames = []
    for method in methods:
        path = Path(folder) / f"{method}.parquet"
        fills = read_table(path, FILL_COLUMNS)
        check_fills(fills, blanks, path, registry.entry(method).settings)
        frames.append(fills.assign(method=method))
    return pd.concat(frames, ignore_index=True)


def read_provenance(folder: Path, methods: Sequence[str]) -> dict:
    """`{"forward": ..., "backward": ..., "fill": {method: ...}}`: what computed the fills of
    `methods` in `folder`, from their metadata (`fillblank.decode.fill_table`); None where
    a file does not say. The captioners' are those of the first method's fills: every fill
    stage reads the same two."""
    made = {}
    for method in methods:
        metadata = pq.read_schema(Path(folder) / f"{method}.parquet").metadata or {}
        made[method] = json.loads(metadata.get(b"provenance", b"{}"))
    first = made[methods[0]] if methods else {}
    return {
        "forward": first.get("forward"),
        "backward": first.get("backward"),
        "fill": {m: made[m].get("fill") for m in methods},
    }


def check_fills(fills: pd.DataFrame, blanks: pd.DataFrame, path: Path, settings: Sequence[str]) -> None:
    """Stop with one line unless `fills` fills every blank of the set once in each of the
    method's `settings`, with a finite score: a stale file holding one setting, or none,
    would otherwise drop the method from the tables without a word."""
    remedy = "were these fills made from another blank set? `dvc repro` makes them again"
    if unknown := set(fills["setting"]) - set(SETTINGS):
        raise UserError(f"{path}: unknown setting(s) {', '.join(map(repr, sorted(unknown)))} (expected known, unknown)")
    if missing := [setting for setting in settings if setting not in set(fills["setting"])]:
        raise UserError(
            f"{path}: no fills with the length {' or '.join(missing)}, which the method runs in; "
            "`dvc repro` makes them again"
        )
    if len(odd := fills[~np.isfinite(fills["score"].to_numpy(dtype=float))]):
        where = f"blank {odd['blank_id'].iloc[0]} ({odd['setting'].iloc[0]} length)"
        raise UserError(f"{path}: {where} has score {odd['score'].iloc[0]}, not a finite number")
    twice = fills[fills.duplicated(["setting", "blank_id"])]
    if len(twice):
        raise UserError(
            f"{path}: blank {twice['blank_id'].iloc[0]} is filled twice in the {twice['setting'].iloc[0]} setting"
        )
    expected = set(blanks["blank_id"])
    for setting, group in fills.groupby("setting"):
        ids = set(group["blank_id"])
        if stray := ids - expected:
            raise UserError(
                f"{path}: {setting}-length fills for {some(stray)}, which are not in the blank set; {remedy}"
            )
        if missing := expected - ids:
            covered = f"cover {len(ids)} of {len(expected)} blanks ({some(missing)} missing)"
            raise UserError(f"{path}: the {setting}-length fills {covered}; {remedy}")

    rows = fills.merge(blanks, on="blank_id")
    for row in rows.itertuples():
        where = f"{path}: blank {row.blank_id} ({row.setting} length)"
        if row.sentence != " ".join([*row.left, *row.fill, *row.right]):
            raise UserError(
                f"{where}: sentence {row.sentence!r} is not the blank's left words + fill + right words; {remedy}"
            )
        if row.length != len(row.fill) or (row.setting == "known" and row.length != len(row.blank)):
            raise UserError(
                f"{where}: fill {' '.join(row.fill)!r} has length {row.length}, the blank {len(row.blank)} words"
            )


def some(ids: set[int]) -> str:
    """ "blank 3", "blanks 3, 5, 8" or "blanks 3, 5, 8 and 12 more": a message's worth of ids."""
    first = sorted(ids)[:3]
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return f"blank{'s' if len(ids) > 1 else ''} {', '.join(map(str, first))}{more}"


def references(captions: pd.DataFrame) -> pd.Series:
    """Each image's captions (columns image_id, tokens) as references, by image id: in the one
    normalised form the models speak (`fillblank.data.text`), so that the original caption,
    put back into its blank, matches its own reference."""
    return captions.groupby("image_id")["tokens"].agg(lambda rows: [" ".join(c) for c in rows])


def evaluate(
    fills: pd.DataFrame, blanks: pd.DataFrame, captions: pd.DataFrame, bonuses: Mapping[str, float] | None = None
) -> dict:
    """The metrics of the module docstring, from `read_fills`, the blank set and the captions;
    `bonuses` are the length rule's by scale (`length.bonuses`): the search error counts the
    oracle's with the length unknown."""
    refs_of_image = references(captions)
    if orphans := set(blanks["image_id"]) - set(refs_of_image.index):
        raise UserError(
            f"the blank set has images without captions (e.g. image {min(orphans)}): blanks of another dataset?"
        )
    if blanks["image_id"].nunique() < 2:
        raise UserError(
            "the blank set holds the captions of one image: CIDEr weighs an n-gram by how few images' "
            "references hold it, so with one image it is 0 for every fill; blank two images or more"
        )
    refs = dict(zip(blanks["blank_id"], refs_of_image.loc[blanks["image_id"]], strict=True))

    methods = list(dict.fromkeys(fills["method"]))
    oracle = next((m for m in methods if registry.entry(m).role == "oracle"), None)
    bonus = (bonuses or {}).get(registry.entry(oracle).scale, 0.0) if oracle else 0.0
    rows = fills.merge(blanks[["blank_id", "ratio", "blank"]], on="blank_id")
    rows["ranked"] = (
        rows["score"] + (rows["setting"] == "unknown") * bonus * rows["length"]
    )  # what the oracle maximised
    groups = dict(list(rows.groupby(["setting", "method", "ratio"])))
    in_order = sorted(groups, key=lambda key: (SETTINGS.index(key[0]), methods.index(key[1]), key[2]))
    groups = {key: groups[key] for key in in_order}
    coco = score(
        refs, {key: dict(zip(group["blank_id"], group["sentence"], strict=True)) for key, group in groups.items()}
    )
    best = rows[rows["method"] == oracle].set_index(["setting", "blank_id"])["ranked"]

    metrics: dict = {}
    for (setting, method, ratio), group in groups.items():
        values = coco[setting, method, ratio] | {
            "exact_match": (group["fill"] == group["blank"]).mean(),
            "mean_score": group["score"].mean(),
        }
        if setting == "unknown":
            values["length_error"] = (group["length"] - group["blank"].map(len)).abs().mean()
        # With the length unknown the search error is counted for the methods that rank lengths
        # on the oracle's scale only: the others maximise another score, which the oracle's
        # answer need not beat.
        ran = method != oracle and setting in best.index.get_level_values("setting")
        if ran and (setting == "known" or registry.entry(method).scale == registry.entry(oracle).scale):
            exact = best.loc[setting].loc[group["blank_id"]].to_numpy()
            # SLACK: a sentence scored in another batch differs in the last bits, and that is no search error
            values["search_error"] = (group["ranked"].to_numpy() < exact - SLACK).mean()
        metrics.setdefault(setting, {}).setdefault(method, {})[f"{ratio:g}"] = {
            name: round(float(value), 6) for name, value in values.items()
        }
    seconds = rows.groupby(["setting", "method"])["seconds"].mean()
    metrics["seconds_per_blank"] = {
        setting: {method: round(float(seconds[setting, method]), 6) for method in metrics[setting]}
        for setting in SETTINGS
        if setting in metrics
    }
    return metrics
