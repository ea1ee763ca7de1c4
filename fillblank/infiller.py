"""The context encoder for captions: a Transformer trained to fill the blank.

Context Encoders (Pathak et al., CVPR 2016) fill a hole in an image with a network that
reads everything around it. Here the hole is a run of words: the model reads the image and
the words on both sides of the blank, and writes the missing words, as the text-infilling
models trained to fill do (Zhu et al., 2019, "Text Infilling"; Donahue et al., ACL 2020,
"Enabling Language Models to Fill in the Blanks").

Architecture: an encoder-decoder Transformer (Vaswani et al., 2017; pre-norm layers of `nn`). The
encoder reads the context with attention both ways, so every context word sees the words
past the blank, which is the whole point; an ILM-style single decoder reads the context
left to right only. The encoder runs once per blank, the decoder once per step of the beam
search over a few words. Inputs of the encoder, each a `width` vector plus a sinusoidal
position:

    image_tokens vectors projected from the image feature, then
    left words, <blank>, right words          (<blank>: an extra row of the word embedding)

The decoder starts from a length token, k (the blank has k words, clamped to LENGTHS) or 0
(length not given), and writes the fill word by word, then <end>. With the length given
it plans for exactly k words and the search stops it there; with it unknown it ends the
fill itself with <end>.

It is trained by `fillblank.train.infiller`.

The decoding state for `fillblank.decode.beam.sweep` (the step interface) is

    (memory (N, I + S, width), memory_pad (N, I + S) bool, prefix (N, t + 1) int64)

and `step` re-reads the whole prefix: fills are short, so a key-value cache would save little.
"""

import math

import torch
from torch import Tensor, nn

from fillblank.data.text import PAD_ID

LENGTHS = 32  # length tokens 1 .. 32; a longer blank is told 32 (no test blank of a real caption is longer)

InfillerState = tuple[Tensor, Tensor, Tensor]  # memory, memory_pad, prefix


class Infiller(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        width: int,
        heads: int,
        layers: int,
        feedforward: int,
        image_tokens: int,
        dropout: float,
    ):
        super().__init__()
        self.sizes = dict(
            vocab_size=vocab_size,
            feature_dim=feature_dim,
            width=width,
            heads=heads,
            layers=layers,
            feedforward=feedforward,
            image_tokens=image_tokens,
            dropout=dropout,
        )
        self.blank = vocab_size  # the <blank> marker's row of `words`
        self.image = nn.Linear(feature_dim, image_tokens * width)
        self.words = nn.Embedding(vocab_size + 1, width, padding_idx=PAD_ID)
        self.lengths = nn.Embedding(LENGTHS + 1, width)
        layer = dict(
            d_model=width, nhead=heads, dim_feedforward=feedforward, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(**layer), layers, nn.LayerNorm(width), enable_nested_tensor=False
        )
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), layers, nn.LayerNorm(width))
        self.out = nn.Linear(width, vocab_size)

    def encode(self, features: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """The memory (N, I + S, width) of images `features` (N, D) and `context` (N, S): left
        words, `self.blank`, right words, then <pad>; and its padding mask (N, I + S)."""
        n, width = features.shape[0], self.sizes["width"]
        image = self.image(features).view(n, self.sizes["image_tokens"], width)  # shape: (N, I, width)
        tokens = torch.cat([image, self.words(context)], 1)  # shape: (N, I + S, width)
        pad = torch.cat(
            [context.new_zeros(n, image.shape[1], dtype=torch.bool), context == PAD_ID], 1
        )  # shape: (N, I + S)
        memory = self.encoder(tokens + positions(tokens), src_key_padding_mask=pad)  # shape: (N, I + S, width)
        return memory, pad

    def decode(self, memory: Tensor, pad: Tensor, prefix: Tensor) -> Tensor:
        """log_probs (N, T, V) of the word after each position of `prefix` (N, T): its length
        token, then the fill's words so far (then <pad>, which only later positions could see)."""
        tokens = torch.cat([self.lengths(prefix[:, :1]), self.words(prefix[:, 1:])], 1)  # shape: (N, T, width)
        causal = nn.Transformer.generate_square_subsequent_mask(prefix.shape[1], device=prefix.device)  # shape: (T, T)
        hidden = self.decoder(
            tokens + positions(tokens), memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=pad
        )  # shape: (N, T, width)
        return self.out(hidden).log_softmax(-1)

    def begin(self, memory: Tensor, pad: Tensor, lengths: Tensor) -> tuple[InfillerState, Tensor]:
        """The decoding state after the length token (`lengths` (N,): k, or 0 for unknown) and
        the log-probs (N, V) of the fill's first word, for the `encode`d `memory` and `pad`."""
        prefix = lengths.clamp(max=LENGTHS)[:, None]  # shape: (N, 1)
        return (memory, pad, prefix), self.decode(memory, pad, prefix)[:, -1]

    def step(self, tokens: Tensor, state: InfillerState) -> tuple[Tensor, InfillerState]:
        """Read the fill's next words `tokens` (N,): the log-probs (N, V) of the word after them."""
        memory, pad, prefix = state
        prefix = torch.cat([prefix, tokens[:, None]], 1)  # shape: (N, t + 2)
        return self.decode(memory, pad, prefix)[:, -1], (memory, pad, prefix)


def positions(tokens: Tensor) -> Tensor:
    """Sinusoidal position vectors (1, T, width) for `tokens` (N, T, width) (Vaswani et al., 2017, sec. 3.5)."""
    length, width = tokens.shape[1], tokens.shape[2]
    position = torch.arange(length, device=tokens.device, dtype=tokens.dtype)[:, None]  # shape: (T, 1)
    rate = torch.exp(
        torch.arange(0, width, 2, device=tokens.device, dtype=tokens.dtype) * (-math.log(10000.0) / width)
    )  # shape: (width / 2,)
    table = torch.zeros(length, width, device=tokens.device, dtype=tokens.dtype)  # shape: (T, width)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : width // 2]
    return table[None]


def context_ids(left: list[int], right: list[int], blank: int) -> list[int]:
    return [*left, blank, *right]


def padded(rows: list[list[int]]) -> Tensor:
    """Ragged rows of ids as one (N, longest) tensor, <pad> after each."""
    width = max(len(row) for row in rows)
    return torch.tensor([row + [PAD_ID] * (width - len(row)) for row in rows], dtype=torch.long)
