"""The captioner: an LSTM language model of captions conditioned on an image feature.

`log p(y_t | y_<t, I)` as in NeuralTalk (Karpathy & Fei-Fei, CVPR 2015, eqs. 13 to 15):
the image feature is projected into the word-embedding space and added to the input of
the first step only, the step that reads `<start>` (the seed's `b_v` at t = 1). Dropout
acts on the non-recurrent connections (the LSTM's input and output), never inside it.

The backward captioner is this same class trained on reversed captions: from `<start>` it
predicts the last word first.

Two ways in, which agree: `forward` scores whole token sequences at once (training,
rescoring), while `init` + `step` advance one token at a time over a batch of hypotheses
(the decoders' interface). The decoding state is a tuple of tensors, each with the batch
as dim 0, so a decoder can reorder it with `index_select` along back-pointers:

    (h (N, hidden), c (N, hidden), image (N, embed))

`image` is the projected feature still to be added; `step` consumes it, leaving zeros.

Checkpoint layout (`save_checkpoint`; a plain dict that `torch.load(weights_only=True)`
reads, so a checkpoint from elsewhere cannot run code):

    {"sizes": {"vocab_size", "feature_dim", "embed", "hidden", "dropout"},
     "config": {...whatever the trainer records: dataset, direction, settings, and
                "provenance": the machine it trained on (`fillblank.provenance`)},
     "vocab_sha256": "...", "state_dict": {...}}
"""

import io
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fillblank.atomic import atomic_path
from fillblank.data.text import PAD_ID, Vocab
from fillblank.errors import UserError
from fillblank.provenance import file_sha256

State = tuple[Tensor, Tensor, Tensor]


class Captioner(nn.Module):
    def __init__(self, vocab_size: int, feature_dim: int, embed: int, hidden: int, dropout: float):
        super().__init__()
        self.sizes = dict(vocab_size=vocab_size, feature_dim=feature_dim, embed=embed, hidden=hidden, dropout=dropout)
        self.image = nn.Linear(feature_dim, embed)
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab_size)

    def hidden(self, features: Tensor, tokens: Tensor) -> Tensor:
        """LSTM outputs for `tokens` (B, T) starting with `<start>`, before dropout: (B, T, hidden).

        Padding after a caption's end cannot reach its earlier positions (the LSTM only
        looks back), so the trainer masks padded positions out of the loss instead of packing.
        """
        words = self.embed(tokens)  # shape: (B, T, embed)
        first = words[:, :1] + self.image(features).unsqueeze(1)  # shape: (B, 1, embed)
        outputs, _ = self.lstm(self.drop(torch.cat([first, words[:, 1:]], dim=1)))  # shape: (B, T, hidden)
        return outputs

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        """log_probs (B, T, V): `log_probs[:, t]` is the distribution of the token after `tokens[:, t]`."""
        return self.out(self.drop(self.hidden(features, tokens))).log_softmax(-1)

    def init(self, features: Tensor) -> State:
        """The state before the first `step` (which must read `<start>`) for images `features` (N, D)."""
        zeros = features.new_zeros(features.shape[0], self.lstm.hidden_size)  # shape: (N, hidden)
        return zeros, zeros, self.image(features)

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Read `tokens` (N,) and return the next token's log_probs (N, V) and the new state.

        The LSTM's gates are written out over its own weights: a one-step `nn.LSTM` call
        costs about 1 ms more (on two CPU cores), which decoders stepping small batches feel.
        """
        h, c, image = state
        words = self.drop(self.embed(tokens) + image)  # shape: (N, embed)
        lstm = self.lstm
        gates = F.linear(words, lstm.weight_ih_l0, lstm.bias_ih_l0) + F.linear(
            h, lstm.weight_hh_l0, lstm.bias_hh_l0
        )  # shape: (N, 4 hidden)
        i, f, g, o = gates.chunk(4, 1)  # nn.LSTM's order: input, forget, cell, output
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # shape: (N, hidden)
        h = torch.sigmoid(o) * torch.tanh(c)  # shape: (N, hidden)
        log_probs = self.out(self.drop(h)).log_softmax(-1)  # shape: (N, V)
        return log_probs, (h, c, torch.zeros_like(image))


def save_checkpoint(path: str | Path, model: nn.Module, config: dict, vocab: Vocab) -> None:
    """Write the model's sizes and weights, the trainer's `config` and the vocabulary's hash."""
    checkpoint = {
        "sizes": model.sizes,
        "config": config,
        "vocab_sha256": vocab.sha256,
        "state_dict": model.state_dict(),
    }
    buffer = io.BytesIO()  # torch.save names the archive inside after a file: a buffer keeps the bytes path-free
    torch.save(checkpoint, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_checkpoint(path: str | Path, vocab: Vocab, kind: type[nn.Module] = Captioner) -> nn.Module:
    """The model saved at `path` (a `kind`: the captioner, or `fillblank.infill.Infiller`), in
    eval mode, on the CPU; it must have been trained on `vocab`. Its `config` is the
    checkpoint's: how, and on what machine, it was trained."""
    checkpoint = read_checkpoint(path)
    if checkpoint["vocab_sha256"] != vocab.sha256:
        raise UserError(
            f"{path}: trained on another vocabulary (sha256 {checkpoint['vocab_sha256'][:12]}, "
            f"this one is {vocab.sha256[:12]}); retrain it or use the vocab.json it was trained with"
        )
    try:
        model = kind(**checkpoint["sizes"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError):  # another kind's sizes or weights
        raise UserError(f"{path}: not a checkpoint of a {kind.__name__}") from None
    model.config = checkpoint["config"]
    return model.eval()


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict as saved (`config` tells how the model was trained)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise UserError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or not {"sizes", "config", "vocab_sha256", "state_dict"} <= checkpoint.keys():
        raise UserError(f"{path}: not a fillblank checkpoint")
    return checkpoint


def load_models(
    folder: Path, vocab: Vocab, device: torch.device | str = "cpu", infiller: bool = True, features: Path | None = None
) -> "Models":
    """The captioners `folder/{forward,backward}.pt` and, when asked for and there, the
    infiller `folder/infill.pt`, on `device`. Each must be the model its file names, and all
    must read the same features, those of `features` when given (the CLI's, whose backbone
    reads the user's photo): a swapped pair, or models of other features, would fill fluently
    and wrongly."""
    from fillblank.decode.step import Models
    from fillblank.infill import Infiller

    paths = {"forward": folder / "forward.pt", "backward": folder / "backward.pt"}
    if infiller and (folder / "infill.pt").is_file():
        paths["infill"] = folder / "infill.pt"
    loaded = {
        role: load_checkpoint(path, vocab, Infiller if role == "infill" else Captioner) for role, path in paths.items()
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
            f"the models were not trained on the same features ({shown}); retrain them, or give the features they were trained on"
        )
    widths = {role: model.sizes["feature_dim"] for role, model in loaded.items()}
    if len(set(widths.values())) > 1:
        raise UserError(
            f"{folder}: the models read features of different sizes ({', '.join(f'{r} {w}' for r, w in widths.items())})"
        )
    return Models(
        loaded["forward"].to(device),
        loaded["backward"].to(device),
        loaded["infill"].to(device) if "infill" in loaded else None,
    )
