"""The decoders on toy captioners whose best fills are known: by hand from a transition
table, or by brute force over a tiny vocabulary."""

import pytest
import torch
from toy_models import bigram, brute_force, fill_params, ids, log_prob, one_thread, random_models, true_score  # noqa: F401

from fillblank.data.text import END_ID, SPECIALS
from fillblank.decode import fill
from fillblank.decode.baselines import beam_search
from fillblank.decode.bibs import bibs, bibs_unknown, mbest
from fillblank.decode.models import Models
from fillblank.decode.registry import methods
from fillblank.decode.step import Blanks, advance, side, start
from fillblank.errors import UserError

WORDS = ["the", "big", "dog", "dogs", "cat", "sleeps", "sleep"]
# "the ___ sleeps": the forward captioner alone prefers "dogs", which cannot go before
# "sleeps"; the backward captioner, reading "sleeps" first, knows that.
FORWARD = {
    "<start>": {"the": 0.9},
    "the": {"dogs": 0.5, "dog": 0.3, "cat": 0.15},
    "dog": {"sleeps": 0.8},
    "dogs": {"sleep": 0.9, "sleeps": 0.01},
    "cat": {"sleeps": 0.8},
    "sleeps": {"<end>": 0.9},
    "sleep": {"<end>": 0.9},
}
BACKWARD = {
    "<start>": {"sleeps": 0.5, "sleep": 0.4},
    "sleeps": {"dog": 0.6, "cat": 0.35, "dogs": 0.01},
    "sleep": {"dogs": 0.9},
    "dog": {"the": 0.9},
    "dogs": {"the": 0.9},
    "cat": {"the": 0.9},
    "the": {"<end>": 0.9},
}
DOGS = Models(bigram(WORDS, FORWARD), bigram(WORDS, BACKWARD))


def blanks_of(*captions: str, features=None) -> Blanks:
    """Blanks from captions such as "the ___ sleeps", in the words of WORDS."""
    sides = [caption.split("___") for caption in captions]
    features = torch.zeros(len(captions), 1) if features is None else features
    return Blanks(features, [ids(WORDS, left) for left, _ in sides], [ids(WORDS, right) for _, right in sides])


def words(fills: list[list[int]]) -> list[str]:
    vocab = list(SPECIALS) + WORDS
    return [" ".join(vocab[i] for i in fill) for fill in fills]


def test_forward_beam_search_cannot_see_the_right_words():
    blanks = blanks_of("the ___ sleeps", "the ___ sleep")
    assert words(methods()["forward"].fill(DOGS, blanks, 1, fill_params(beam=2))) == [
        "dogs",
        "dogs",
    ]  # whatever follows
    assert words(bibs(DOGS, blanks, 1, fill_params(beam=1))) == ["dog", "dogs"]


# "the ___ ___ sleeps": alone, the forward captioner says "the red ball", the backward one
# "small dog sleeps"; "the black cat sleeps" is second for both and the best sentence.
SHARED = {"ball": {"sleeps": 0.8}, "cat": {"sleeps": 0.8}, "dog": {"sleeps": 0.8}, "sleeps": {"<end>": 0.9}}
GARDEN_FORWARD = {
    "<start>": {"the": 0.9},
    "the": {"red": 0.5, "black": 0.4},
    "red": {"ball": 0.5, "cat": 0.45},
    "black": {"cat": 0.9},
} | SHARED
GARDEN_BACKWARD = {
    "<start>": {"sleeps": 0.9},
    "sleeps": {"dog": 0.5, "cat": 0.45},
    "dog": {"small": 0.9},
    "cat": {"black": 0.6, "red": 0.3},
    "ball": {"red": 0.9},
    **{adjective: {"the": 0.9} for adjective in ("red", "black", "small")},
    "the": {"<end>": 0.9},
}


def test_bibs_finds_the_sentence_that_every_baseline_misses():
    # By hand, beam 1: forward search gives "red ball". The backward sweep then ranks the
    # last word by p_bwd(w | sleeps) p_fwd(w | the red): "cat" (.45 x .45 against .5 x
    # p_fwd(dog | red), near 0); the first by p_bwd(v | cat) p_fwd(v | the): "black"
    # (.6 x .4 against .3 x .5 for "red").
    garden = WORDS + ["red", "ball", "black", "small"]
    models = Models(bigram(garden, GARDEN_FORWARD), bigram(garden, GARDEN_BACKWARD))
    blank = Blanks(torch.zeros(1, 1), [ids(garden, "the")], [ids(garden, "sleeps")])
    vocab = list(SPECIALS) + garden

    def said(fills: list[list[int]]) -> str:
        return " ".join(vocab[i] for i in fills[0])

    p = fill_params(beam=1, sweeps=1)
    assert said(methods()["forward"].fill(models, blank, 2, p)) == "red ball"
    assert said(methods()["backward"].fill(models, blank, 2, p)) == "small dog"
    assert said(methods()["fb_max"].fill(models, blank, 2, p)) in ("red ball", "small dog")
    assert said(methods()["fb_rerank"].fill(models, blank, 2, p)) in ("red ball", "small dog")
    assert said(bibs(models, blank, 2, p)) == "black cat"
    oracle, _ = brute_force(models, blank.features[0], blank.left[0], blank.right[0], [2], vocab=len(vocab))
    assert said([oracle]) == "black cat"


def test_bibs_never_returns_worse_than_the_forward_beam_it_starts_from():
    models = random_models(vocab=9, seed=0)
    blanks = Blanks(
        torch.randn(12, 3, generator=torch.Generator().manual_seed(0)), [[4, 5], [6]] * 6, [[7], [8, 4, 5]] * 6
    )
    p = fill_params(beam=2, sweeps=3)
    forward = [
        true_score(models, blanks.features[n], blanks.left[n] + f + blanks.right[n])
        for n, f in enumerate(methods()["forward"].fill(models, blanks, 2, p))
    ]
    found = [
        true_score(models, blanks.features[n], blanks.left[n] + f + blanks.right[n])
        for n, f in enumerate(bibs(models, blanks, 2, p))
    ]
    assert all(b >= f - 1e-5 for b, f in zip(found, forward, strict=True))
    assert sum(found) > sum(forward)  # and on a random model, sometimes better


def test_fb_max_keeps_the_answer_its_own_captioner_likes_more():
    models = random_models(vocab=9, seed=17)
    blanks = Blanks(
        torch.randn(16, 3, generator=torch.Generator().manual_seed(6)), [[4], [5, 6]] * 8, [[7, 8], [4]] * 8
    )
    p = fill_params(beam=2)
    chosen = methods()["fb_max"].fill(models, blanks, 2, p)
    picked = []
    for n, (f, b) in enumerate(
        zip(
            methods()["forward"].fill(models, blanks, 2, p),
            methods()["backward"].fill(models, blanks, 2, p),
            strict=True,
        )
    ):
        forward = log_prob(models.forward, blanks.features[n], blanks.left[n] + f + blanks.right[n])
        backward = log_prob(models.backward, blanks.features[n], (blanks.left[n] + b + blanks.right[n])[::-1])
        picked.append("forward" if forward > backward else "backward")
        assert chosen[n] == (f if forward > backward else b)
    assert set(picked) == {"forward", "backward"}


def test_beam_search_keeps_what_greedy_search_drops():
    tables = {
        "<start>": {"the": 0.9},
        "the": {"dog": 0.6, "cat": 0.4},
        "dog": {"sleeps": 0.35, "sleep": 0.3},
        "cat": {"sleeps": 0.95},
    }
    models = Models(bigram(WORDS, tables), bigram(WORDS, {}))
    blank = blanks_of("the ___")
    assert words(methods()["forward"].fill(models, blank, 2, fill_params(beam=1))) == ["dog sleeps"]
    assert words(methods()["forward"].fill(models, blank, 2, fill_params(beam=2))) == ["cat sleeps"]


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_beam_width_one_is_greedy_search(direction):
    models = random_models(vocab=12, seed=3)
    blanks = Blanks(
        torch.randn(4, 3, generator=torch.Generator().manual_seed(1)),
        [[4, 5, 6], [], [7], [8, 9]],
        [[10, 11], [11], [], [4, 5, 6]],
    )
    model = getattr(models, direction)
    for length in (1, 3):
        greedy = []
        for n in range(len(blanks)):
            context = (
                blanks.left[n] if direction == "forward" else blanks.right[n][::-1]
            )  # the backward captioner reads right to left
            state, log_probs = start(model, blanks.features[n : n + 1])
            state, log_probs, _ = advance(model, state, log_probs, [context])
            fill = []
            for _ in range(length):
                word = int(log_probs[0, len(SPECIALS) :].argmax()) + len(SPECIALS)
                fill.append(word)
                log_probs, state = model.step(torch.tensor([word]), state)
            greedy.append(fill if direction == "forward" else fill[::-1])
        assert methods()[direction].fill(models, blanks, length, fill_params(beam=1)) == greedy


def test_a_beam_wider_than_the_vocabulary_is_a_clear_error():
    with pytest.raises(UserError, match=r"beam width 8 is larger than the 7 words a blank can hold"):
        methods()["bibs"].fill(DOGS, blanks_of("the ___ sleeps"), 1, fill_params(beam=8))
    assert methods()["bibs"].fill(DOGS, blanks_of("the ___ sleeps"), 1, fill_params(beam=7))


def agreeing(noun: str) -> tuple[dict, dict]:
    """Transition tables where both captioners say "the <noun> sleeps"."""
    forward = {"<start>": {"the": 0.9}, "the": {noun: 0.8}, noun: {"sleeps": 0.8}, "sleeps": {"<end>": 0.9}}
    backward = {"<start>": {"sleeps": 0.9}, "sleeps": {noun: 0.8}, noun: {"the": 0.9}, "the": {"<end>": 0.9}}
    return forward, backward


# The infiller is a trained model, not a transition table: tests/test_infill.py shows that it reads the image.
@pytest.mark.parametrize("method", [name for name, entry in methods().items() if entry.role != "infiller"])
def test_every_method_reads_the_image(method):
    (dog_forward, dog_backward), (cat_forward, cat_backward) = agreeing("dog"), agreeing("cat")
    models = Models(bigram(WORDS, dog_forward, cat_forward), bigram(WORDS, dog_backward, cat_backward))
    blanks = blanks_of("the ___ sleeps", "the ___ sleeps", features=torch.tensor([[0.0], [1.0]]))
    for length in [1, None] if "known" in methods()[method].settings else [None]:
        assert words(methods()[method].fill(models, blanks, length, fill_params(beam=2))) == ["dog", "cat"]


@pytest.mark.parametrize("method", methods())
def test_fills_leave_the_context_alone_and_score_the_whole_sentence(method):
    models = random_models(vocab=8, seed=5)
    blanks = Blanks(
        torch.randn(5, 3, generator=torch.Generator().manual_seed(2)),
        [[4, 5], [], [6], [7, 4, 5], [6]],
        [[7], [4, 5], [], [6], [5, 7]],
    )
    p = fill_params(beam=3, max_length=3, batch=2)
    for setting in methods()[method].settings:
        lengths = [2, 1, 3, 2, 1] if setting == "known" else None
        filled = fill(method, models, blanks, lengths, p)
        for n, result in enumerate(filled):
            assert all(token >= len(SPECIALS) for token in result.tokens)
            assert len(result.tokens) == lengths[n] if lengths else 1 <= len(result.tokens) <= p.max_length
            sentence = blanks.left[n] + result.tokens + blanks.right[n]
            assert result.score == pytest.approx(true_score(models, blanks.features[n], sentence), abs=1e-4)
            assert result.seconds > 0


def test_bibs_keeps_the_m_best_fills_with_their_true_scores():
    models = random_models(vocab=9, seed=7)
    blanks = Blanks(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)), [[4], [5, 6], []], [[7, 8], [], [4]])
    for length in (2, None):
        for n, found in enumerate(mbest(models, blanks, length, fill_params(beam=3, m_best=4))):
            assert len(found) == 4 and len({tuple(fill) for fill, _ in found}) == 4
            scores = [score for _, score in found]
            assert scores == sorted(scores, reverse=True)
            for words, score in found:
                assert score == pytest.approx(
                    true_score(models, blanks.features[n], blanks.left[n] + words + blanks.right[n]), abs=1e-4
                )


def test_a_batch_of_blanks_decodes_as_each_blank_alone():
    # Contexts of every length, and (for BiBS) blanks that settle after different numbers of sweeps.
    models = random_models(vocab=10, seed=2)
    left, right = [[4, 5, 6], [], [7], [8, 9], [5], [6, 7], [9], [4]], [[], [5, 6, 7], [4], [9], [8], [], [6, 4], [5]]
    blanks = Blanks(torch.randn(8, 3, generator=torch.Generator().manual_seed(2)), left, right)
    p = fill_params(beam=2, sweeps=6)
    for method in ("forward", "backward", "fb_rerank", "bibs"):
        together = methods()[method].fill(models, blanks, 3, p)
        alone = [methods()[method].fill(models, blanks.take([n]), 3, p)[0] for n in range(len(blanks))]
        assert together == alone, method
    assert bibs_unknown(models, blanks, None, p) == [
        bibs_unknown(models, blanks.take([n]), None, p)[0] for n in range(len(blanks))
    ]
    every = p.model_copy(update={"m_best": 100})  # all that BiBS scored, not just the winner

    def fills(found: list) -> list[list[list[int]]]:
        return [[fill for fill, _ in ranked] for ranked in found]

    assert fills(mbest(models, blanks, 3, every)) == [
        fills(mbest(models, blanks.take([n]), 3, every))[0] for n in range(len(blanks))
    ]


@torch.inference_mode()  # as the decoders call it
def test_advance_reads_sequences_of_any_length_as_each_alone():
    # It reads the longest first and steps only the rows still going on: each row must
    # come out where it would reading alone, in the order given, the empty one untouched.
    model = random_models(vocab=10, seed=3).forward
    sequences = [[4, 5], [], [6, 7, 8, 9, 4], [5], [9, 8, 7]]
    features = torch.randn(len(sequences), 3, generator=torch.Generator().manual_seed(3))
    state, log_probs = start(model, features)
    (h, c, _), after, total = advance(model, state, log_probs, sequences)
    for n, sequence in enumerate(sequences):
        one = start(model, features[n : n + 1])
        (h1, c1, _), after1, total1 = advance(model, *one, [sequence])
        torch.testing.assert_close((h[n], c[n], after[n], total[n]), (h1[0], c1[0], after1[0], total1[0]))
        assert float(total[n] + after[n, END_ID]) == pytest.approx(log_prob(model, features[n], sequence), abs=1e-5)
    torch.testing.assert_close((h[1], after[1]), (state[0][1], log_probs[1]))


def test_bibs_unknown_chooses_the_length_of_the_best_sentence():
    # "the dog sleeps" is grammatical, but both captioners much prefer "the big dog sleeps".
    forward = {
        "<start>": {"the": 0.9},
        "the": {"big": 0.7, "dog": 0.2},
        "big": {"dog": 0.9},
        "dog": {"sleeps": 0.9},
        "sleeps": {"<end>": 0.9},
    }
    backward = {
        "<start>": {"sleeps": 0.9},
        "sleeps": {"dog": 0.9},
        "dog": {"big": 0.8, "the": 0.15},
        "big": {"the": 0.9},
        "the": {"<end>": 0.9},
    }
    models = Models(bigram(WORDS, forward), bigram(WORDS, backward))
    blanks = blanks_of("the ___ sleeps")
    assert words(bibs_unknown(models, blanks, None, fill_params(max_length=4))) == ["big dog"]
    oracle, _ = brute_force(
        models, blanks.features[0], blanks.left[0], blanks.right[0], [1, 2, 3], vocab=len(SPECIALS) + len(WORDS)
    )
    assert words([oracle]) == ["big dog"]
    with pytest.raises(UserError, match="unknown-length setting only"):
        bibs_unknown(models, blanks, 2, fill_params())


def test_one_search_holds_the_beam_of_every_length():
    models = random_models(vocab=10, seed=13)
    blanks = Blanks(torch.randn(3, 3, generator=torch.Generator().manual_seed(5)), [[4], [5, 6], []], [[], [], []])
    long = beam_search(side(models, blanks), 4, beam=3)
    for length in (1, 2, 3):
        assert torch.equal(beam_search(side(models, blanks), length, beam=3)[-1].tokens, long[length].tokens)
