"""Typed view of `params.yaml`: every knob of the pipeline, validated before any work.

Each section is a model that refuses unknown keys and values of the wrong type, so a typo
such as `dvc exp run -S train.hiden=256` stops the stage at once with one line naming the
key. Values have no defaults here: `params.yaml` is the one place they live, and DVC
tracks them key by key from there.
"""

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from fillblank.errors import UserError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ShapesSource(Section):
    """Settings of the embedded, generated dataset (see `fillblank.data.sources.shapes`)."""

    seed: int
    train: int = Field(ge=1)
    val: int = Field(ge=1)
    test: int = Field(ge=1)
    image_size: int = Field(ge=32)


class Sources(Section):
    """Where each dataset comes from: `shapes` is generated from its settings; the others
    are downloaded from their official locations when `null`, or copied from a local folder
    holding the same files the official download gives. A field here declares a dataset;
    its `fetch` lives in `fillblank/data/sources/<name>.py`."""

    shapes: ShapesSource
    flickr8k: str | None
    flickr30k: str | None
    coco: str | None


DATASETS: tuple[str, ...] = tuple(Sources.model_fields)
Dataset = Literal[DATASETS]


class Prepare(Section):
    min_count: int = Field(ge=1)
    max_dropped: float = Field(ge=0, le=1)  # share of captions that may be dropped (empty, or of an image without any)


class TrainSettings(Section):
    """How one captioner is trained (fillblank/train.py); the seed's values live in params.yaml."""

    seed: int
    embed: int = Field(ge=1)
    hidden: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)  # on the non-recurrent connections
    lr: float = Field(gt=0)  # RMSprop's learning rate
    rms_decay: float = Field(gt=0, lt=1)  # RMSprop's running-average decay (torch's `alpha`)
    clip: float = Field(gt=0)  # each gradient element is clipped to [-clip, clip], as in the seed
    batch_size: int = Field(ge=1)  # captions per update, over all processes together
    max_epochs: int = Field(ge=1)
    patience: int = Field(ge=1)  # epochs without a better validation perplexity before stopping


def overrides(settings: type[Section]) -> type[Section]:
    """Per dataset, the keys of `settings` whose values differ, each optional; a dataset
    that keeps the defaults needs no entry."""
    optional = {
        name: ((Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation) | None, None)
        for name, field in settings.model_fields.items()
    }
    override = create_model(settings.__name__.replace("Settings", "Override"), __base__=Section, **optional)
    return create_model(
        settings.__name__.replace("Settings", "Overrides"),
        __base__=Section,
        **{dataset: (override, override()) for dataset in DATASETS},
    )


def for_dataset(section: Section, settings: type[Section], dataset: str) -> Section:
    """`section`'s `settings`, with `dataset`'s overrides written over them."""
    defaults = section.model_dump(exclude={"overrides"})
    return settings(**defaults | getattr(section.overrides, dataset).model_dump(exclude_none=True))


class TrainSection(TrainSettings):
    """Section `train`: the seed's settings, and per dataset the ones that differ from them."""

    overrides: overrides(TrainSettings)

    def settings(self, dataset: str) -> TrainSettings:
        """The settings that train captioners of `dataset`."""
        return for_dataset(self, TrainSettings, dataset)


class InfillerSettings(Section):
    """How the context encoder for captions is built and trained (fillblank/infiller.py)."""

    seed: int
    width: int = Field(ge=1)  # d_model: every token's vector
    heads: int = Field(ge=1)  # attention heads; must divide width
    layers: int = Field(ge=1)  # encoder layers, and as many decoder layers
    feedforward: int = Field(ge=1)  # the hidden size of each layer's feed-forward block
    image_tokens: int = Field(ge=1)  # the image feature becomes this many input tokens
    dropout: float = Field(ge=0, lt=1)
    lr: float = Field(gt=0)  # AdamW's learning rate
    clip: float = Field(gt=0)  # each gradient element is clipped to [-clip, clip]
    batch_size: int = Field(ge=1)  # captions (one blank each) per update, over all processes together
    max_epochs: int = Field(ge=1)
    patience: int = Field(ge=1)  # epochs without a better validation loss of the blank words before stopping


class InfillerSection(InfillerSettings):
    """Section `infiller`: its settings, and per dataset the ones that differ from them."""

    overrides: overrides(InfillerSettings)

    def settings(self, dataset: str) -> InfillerSettings:
        """The settings that train the infiller of `dataset`."""
        return for_dataset(self, InfillerSettings, dataset)


class Report(Section):
    examples: int = Field(ge=1)  # blanks shown in reports/<dataset>/examples.html


class BlankSettings(Section):
    """Section `blanks`: the blank sets (fillblank/blanks.py): each test caption is cut once per ratio."""

    ratios: list[Annotated[float, Field(gt=0, lt=1)]] = Field(min_length=1)
    # The first N test images only (a quick run); null: all. Two at least: CIDEr weighs an
    # n-gram by how few images' references hold it, and with one image every weight is 0.
    test_images: Annotated[int, Field(ge=2)] | None

    @field_validator("ratios")
    @classmethod
    def distinct(cls, ratios: list[float]) -> list[float]:
        keys = [f"{ratio:g}" for ratio in ratios]  # as the metrics name them (fillblank/evaluate.py)
        if twice := next((key for key in keys if keys.count(key) > 1), None):
            raise ValueError(f"two ratios are both {twice} in the metrics' keys (6 significant digits); give each once")
        return ratios


Bonus = float | Literal["tuned"]


class Fill(Section):
    """How the blanks are filled (fillblank/decode)."""

    methods: list[str] = Field(min_length=1)  # one fill stage each; stage source checks them against the registry
    beam: int = Field(ge=1)  # hypotheses kept per blank by every beam search
    sweeps: int = Field(ge=0)  # BiBS sweeps after the first forward beam search, at most
    m_best: int = Field(ge=1)  # BiBS: each sweep's best fills scored by S(Y), and fills returned per blank
    max_length: int = Field(ge=1)  # longest fill considered when the length is unknown
    batch: int = Field(ge=1)  # blanks decoded together
    exact_max_rows: int = Field(ge=1)  # prefixes per blank that exact search keeps before giving up proof
    device: Literal["auto", "cpu", "cuda"]  # where the models decode (fillblank.decode.device)
    # Nats per word when lengths compete (fillblank/decode/length.py): one number or `tuned` for every scoring
    # scale, or a mapping from scale to either; stage source checks the scales' names against the registry.
    length_bonus: Bonus | dict[str, Bonus]
    tune_images: int | None = Field(ge=1)  # val images whose captions tune length_bonus; None: all


class Features(Section):
    """The image features (fillblank/features.py)."""

    backbone: str  # efficientnet_lite0/1/2, or a torchvision classification model (resnet50, ...)
    weights: str  # IMAGENET1K for efficientnet_lite*, torchvision's enum name (IMAGENET1K_V2, ...), or none
    batch_size: int = Field(ge=1)
    workers: int = Field(ge=0)  # DataLoader processes decoding images; 0 decodes in the stage itself
    max_skipped: float = Field(ge=0, le=1)  # the fraction of unreadable images a run tolerates


class Params(Section):
    datasets: list[Dataset] = Field(min_length=1)
    sources: Sources
    prepare: Prepare
    features: Features
    train: TrainSection
    infiller: InfillerSection
    report: Report
    blanks: BlankSettings
    fill: Fill


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; any problem is one `UserError` line."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (run from the project root)") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: {yaml_problem(error)}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise UserError(f"{path}: {describe(error)}") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong with a YAML file, and where: "not valid YAML at line 98, column 11: ..."."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"not valid YAML{where}: {problem}"


def describe(error: ValidationError) -> str:
    """One validation problem as one line, naming the dotted key. An unknown key comes
    first: a misspelt key also leaves the right one missing, and the typo is the news."""
    problems = sorted(error.errors(), key=lambda problem: problem["type"] != "extra_forbidden")
    first = problems[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        missing = [str(p["loc"][-1]) for p in problems if p["type"] == "missing" and p["loc"][:-1] == first["loc"][:-1]]
        hint = f" (did you mean '{missing[0]}'?)" if missing else ""
        return f"unknown key '{key}'{hint}"
    if first["type"] == "missing":
        return f"missing key '{key}'"
    if first["type"] == "value_error":  # our own validators' messages name what was wrong
        return f"'{key}': {first['msg'].removeprefix('Value error, ')}"
    return f"'{key}': {first['msg']} (got {first.get('input')!r})"
