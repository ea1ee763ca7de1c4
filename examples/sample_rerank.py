"""sample_rerank: an example of a method from outside the package (README, "Add your own method").

Draws `SAMPLES` fills per blank from the forward captioner, word by word after the left
words, and keeps the one of highest S(Y) = log P_fwd(Y|I) + log P_bwd(Y|I): fb_rerank
(BiBS paper, URNN-fb-BiRNN) with samples instead of a beam search's hypotheses.
With the length unknown, each sample also draws its length, uniformly from 1 to
`p.max_length`, and S(Y) plus `p.length_bonus` per word chooses among them: the length
rule of scale `captioners` (fillblank/decode/length.py), whose bonus `p` carries.

To use it, copy this file into the project's `methods/` folder and add `sample_rerank` to
`fill.methods` in params.yaml; `dvc repro` then fills, scores and tables it like a built-in,
and `make test` lists its metrics as new.
"""

import torch

from fillblank.decode.models import Models
from fillblank.decode.registry import register
from fillblank.decode.step import FIRST_WORD, Blanks, advance, best, bidirectional, start
from fillblank.params import Fill

SAMPLES = 16  # fills drawn per blank
SEED = 0  # the same fills on every run


@register(
    "sample_rerank",
    role="baseline",
    scale="captioners",
    description="16 fills sampled from the forward captioner, reranked by S(Y) (examples/sample_rerank.py)",
)
@torch.inference_mode()
def sample_rerank(models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
    generator = torch.Generator().manual_seed(SEED)
    n = len(blanks)
    rows = torch.arange(n).repeat_interleave(SAMPLES)  # shape: (N * S,): each blank's row, S times
    state, log_probs = start(models.forward, blanks.features[rows])
    state, log_probs, _ = advance(models.forward, state, log_probs, [blanks.left[i] for i in rows.tolist()])
    if length is None:
        lengths = torch.randint(1, p.max_length + 1, (n * SAMPLES,), generator=generator)  # shape: (N * S,)
    else:
        lengths = torch.full((n * SAMPLES,), length)  # shape: (N * S,)
    words = []
    for _ in range(int(lengths.max())):
        probs = log_probs[:, FIRST_WORD:].exp()  # shape: (N * S, V - specials): real words only
        drawn_here = torch.multinomial(probs.cpu(), 1, generator=generator)[
            :, 0
        ]  # on the CPU: the same draws on any device
        word = drawn_here.to(probs.device) + FIRST_WORD  # shape: (N * S,)
        words.append(word)
        log_probs, state = models.forward.step(word, state)
    drawn = torch.stack(words, 1).tolist()  # (N * S, longest)
    fills = [sample[:size] for sample, size in zip(drawn, lengths.tolist(), strict=True)]
    candidates = [fills[i * SAMPLES : (i + 1) * SAMPLES] for i in range(n)]
    bonus = p.length_bonus if length is None else 0.0
    return best(blanks, candidates, lambda features, sentences: bidirectional(models, features, sentences), bonus)[0]
