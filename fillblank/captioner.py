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
"""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fillblank.data.text import PAD_ID

CaptionerState = tuple[Tensor, Tensor, Tensor]  # h, c, image: each (N, ...)


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

    def init(self, features: Tensor) -> CaptionerState:
        """The state before the first `step` (which must read `<start>`) for images `features` (N, D)."""
        zeros = features.new_zeros(features.shape[0], self.lstm.hidden_size)  # shape: (N, hidden)
        return zeros, zeros, self.image(features)

    def step(self, tokens: Tensor, state: CaptionerState) -> tuple[Tensor, CaptionerState]:
        """Read `tokens` (N,) and return the next token's log_probs (N, V) and the new state.

        The LSTM's gates are written out over its own weights: a one-step `nn.LSTM` call
        costs more than these few operations, which decoders stepping small batches feel.
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
