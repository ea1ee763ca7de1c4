"""The models a decoder reads, and loading them from the pipeline's checkpoints.

A decoder sees a model only through the step interface (`Model`): the two captioners
(fillblank/captioner.py) and, for the methods that use it, the infiller
(fillblank/infiller.py), whose `begin` replaces `init`. `load_models` reads them from a
folder of checkpoints (fillblank/checkpoint.py) and refuses a set that does not belong together.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from fillblank.captioner import Captioner
from fillblank.checkpoint import load_checkpoint
from fillblank.data.text import Vocab
from fillblank.errors import UserError
from fillblank.infiller import Infiller
from fillblank.provenance import file_sha256

State = tuple[Tensor, ...]


class Model(Protocol):
    def init(self, features: Tensor) -> State: ...

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]: ...


@dataclass(frozen=True)
class Models:
    forward: Model
    backward: Model
    infiller: Infiller | None = None  # for the methods of role `infiller` (registry.py)

    def mirrored(self) -> "Models":
        """The captioners swapped, for a search right to left (the infiller reads both ways at once)."""
        return Models(self.backward, self.forward)


def load_models(
    folder: Path, vocab: Vocab, device: torch.device | str = "cpu", infiller: bool = True, features: Path | None = None
) -> Models:
    """The captioners `folder/{forward,backward}.pt` and, when asked for and there, the
    infiller `folder/infiller.pt`, on `device`. Each must be the model its file names, and all
    must read the same features, those of `features` when given (the CLI's, whose backbone
    reads the user's photo): a swapped pair, or models of other features, would fill fluently
    and wrongly."""
    paths = {"forward": folder / "forward.pt", "backward": folder / "backward.pt"}
    if infiller and (folder / "infiller.pt").is_file():
        paths["infiller"] = folder / "infiller.pt"
    loaded = {
        role: load_checkpoint(path, vocab, Infiller if role == "infiller" else Captioner)
        for role, path in paths.items()
    }
    for role, model in loaded.items():
        if model.config.get("direction") != role:
            raise UserError(f"{paths[role]}: holds the {model.config.get('direction')} model, not the {role} one")
    trained_on = {
        role: model.config["features_sha256"] for role, model in loaded.items() if "features_sha256" in model.config
    }
    if features is not None:
        trained_on["given"] = file_sha256(features)
    if len(set(trained_on.values())) > 1:
        shown = ", ".join(f"{paths.get(role, features)} {sha[:12]}" for role, sha in trained_on.items())
        raise UserError(
            f"the models were not trained on the same features ({shown}); "
            "retrain them, or give the features they were trained on"
        )
    widths = {role: model.sizes["feature_dim"] for role, model in loaded.items()}
    if len(set(widths.values())) > 1:
        shown = ", ".join(f"{role} {width}" for role, width in widths.items())
        raise UserError(f"{folder}: the models read features of different sizes ({shown})")
    return Models(
        loaded["forward"].to(device),
        loaded["backward"].to(device),
        loaded["infiller"].to(device) if "infiller" in loaded else None,
    )
