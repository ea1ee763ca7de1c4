"""Typed view of `params.yaml`: every knob of the pipeline, validated before any work.

Each section is a model that refuses unknown keys and values of the wrong type, so a typo
such as `dvc exp run -S train.hiden=256` stops the stage at once with one line naming the
key. Values have no defaults here: `params.yaml` is the one place they live, and DVC
tracks them key by key from there.
"""

import ast
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from fillblank.errors import UserError

Dataset = Literal["shapes", "flickr8k", "flickr30k", "coco"]

# Where methods are declared (fillblank/decode/registry.py): the package's own, and the
# project's folder of methods from outside the package.
BUILT_IN_METHODS = Path(__file__).parent / "decode"
USER_METHODS = Path("methods")


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
    holding the same files the official download gives."""

    shapes: ShapesSource
    flickr8k: str | None
    flickr30k: str | None
    coco: str | None


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
    """Per dataset, the keys of `settings` whose values differ, each optional. Every dataset
    has an entry, `{}` when it keeps the defaults: dvc.yaml lists `<section>.overrides.<dataset>`
    under that dataset's stages, and DVC refuses a missing key."""
    optional = {
        name: ((Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation) | None, None)
        for name, field in settings.model_fields.items()
    }
    override = create_model(settings.__name__.replace("Settings", "Override"), __base__=Section, **optional)
    return create_model(
        settings.__name__.replace("Settings", "Overrides"),
        __base__=Section,
        **{dataset: (override, ...) for dataset in get_args(Dataset)},
    )


def for_dataset(section: Section, settings: type[Section], dataset: str) -> Section:
    """`section`'s `settings`, with `dataset`'s overrides written over them."""
    defaults = section.model_dump(exclude={"overrides"})
    return settings(**defaults | getattr(section.overrides, dataset).model_dump(exclude_none=True))


class Train(TrainSettings):
    """The seed's settings, and per dataset the ones that differ from them."""

    overrides: overrides(TrainSettings)

    def settings(self, dataset: str) -> TrainSettings:
        """The settings that train captioners of `dataset`."""
        return for_dataset(self, TrainSettings, dataset)


class InfillSettings(Section):
    """How the context encoder for captions is built and trained (fillblank/infill.py)."""

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


class Infill(InfillSettings):
    """The infiller's settings, and per dataset the ones that differ from them."""

    overrides: overrides(InfillSettings)

    def settings(self, dataset: str) -> InfillSettings:
        """The settings that train the infiller of `dataset`."""
        return for_dataset(self, InfillSettings, dataset)


class Report(Section):
    examples: int = Field(ge=1)  # blanks shown in reports/<dataset>/examples.html


class Blanks(Section):
    """The blank sets (fillblank/blanks.py): each test caption is cut once per ratio."""

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


class Fill(Section):
    """How the blanks are filled (fillblank/decode)."""

    methods: list[str] = Field(min_length=1)  # one fill stage each; names declared in fillblank.decode.registry
    beam: int = Field(ge=1)  # hypotheses kept per blank by every beam search
    sweeps: int = Field(ge=0)  # BiBS sweeps after the first forward beam search, at most
    m_best: int = Field(
        ge=1
    )  # BiBS: each sweep's best fills scored by S(Y), and fills returned (the stage writes the first)
    max_length: int = Field(ge=1)  # longest fill considered when the length is unknown
    batch: int = Field(ge=1)  # blanks decoded together
    exact_max_rows: int = Field(ge=1)  # prefixes per blank that exact search keeps before giving up proof
    device: Literal["auto", "cpu", "cuda"]  # where the models decode (fillblank.decode.device)
    length_bonus: float | Literal["tuned"]  # nats per word when lengths compete (fillblank/decode/length.py)
    tune_images: int | None = Field(ge=1)  # val images whose captions tune length_bonus; None: all

    @field_validator("methods")
    @classmethod
    def declared(cls, names: list[str]) -> list[str]:
        if set(names) <= declared_once():
            return names
        from fillblank.decode.registry import methods  # torch, and the user's methods/, only for a name not read

        known = methods()
        if unknown := [name for name in names if name not in known]:
            raise ValueError(
                f"no method {unknown[0]!r}; the methods are {', '.join(known)} (user methods go in methods/*.py)"
            )
        return names


def declared_once() -> set[str]:
    """The names of the `@register("name", ...)` decorators in fillblank/decode/*.py and
    methods/*.py that are declared once, read from the source, not imported: importing them
    loads torch, three seconds of start-up in every stage that reads params, and most stages
    never decode. This only ever accepts; a name it misses (a file that registers in a loop,
    or does not parse) or reads twice (a user's method under a built-in's name) goes to the
    registry itself, which names the methods or shows the error."""
    files = [*BUILT_IN_METHODS.glob("*.py"), *(USER_METHODS.glob("*.py") if USER_METHODS.is_dir() else [])]
    names = Counter()
    for path in files:
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for function in (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)):
            for call in (
                d
                for d in function.decorator_list
                if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register"
            ):
                if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
                    names[call.args[0].value] += 1
    return {name for name, count in names.items() if count == 1}


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
    train: Train
    infill: Infill
    report: Report
    blanks: Blanks
    fill: Fill


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; any problem is one `UserError` line."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (run from the project root)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise UserError(f"{path}: {describe(error)}") from None


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
