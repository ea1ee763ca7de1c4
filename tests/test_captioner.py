import pytest
import torch

from fillblank.captioner import Captioner
from fillblank.checkpoint import load_checkpoint, save_checkpoint
from fillblank.data.text import END_ID, PAD_ID, START_ID, Vocab
from fillblank.decode.models import load_models
from fillblank.errors import UserError

VOCAB = Vocab.build([["a", "red", "blue", "circle", "square"]], min_count=1)  # 9 ids with the specials


def captioner(dropout: float = 0.0) -> Captioner:
    torch.manual_seed(0)
    return Captioner(vocab_size=len(VOCAB), feature_dim=6, embed=32, hidden=64, dropout=dropout)


def sentence(*words: str) -> torch.Tensor:
    return torch.tensor([START_ID, *VOCAB.ids(words)])


def test_forward_gives_a_distribution_per_position():
    model = captioner().eval()
    log_probs = model(torch.randn(3, 6), torch.randint(1, len(VOCAB), (3, 5)))
    assert log_probs.shape == (3, 5, len(VOCAB))
    assert (log_probs <= 0).all()
    assert torch.allclose(log_probs.logsumexp(-1), torch.zeros(3, 5), atol=1e-5)


def test_step_by_step_agrees_with_forward():
    model = captioner().eval()
    features, tokens = torch.randn(2, 6), torch.stack([sentence("a", "red", "circle"), sentence("a", "blue", "square")])
    state = model.init(features)
    assert all(part.shape[0] == 2 for part in state)  # decoders reorder the state along dim 0
    steps = []
    for t in range(tokens.shape[1]):
        log_probs, state = model.step(tokens[:, t], state)
        assert log_probs.shape == (2, len(VOCAB))
        steps.append(log_probs)
    assert torch.allclose(torch.stack(steps, 1), model(features, tokens), atol=1e-5)


def test_the_image_changes_the_prediction():
    model = captioner().eval()
    tokens = sentence("a", "red").repeat(2, 1)
    log_probs = model(torch.stack([torch.zeros(6), torch.ones(6)]), tokens)
    assert not torch.allclose(log_probs[0], log_probs[1])


def test_padding_after_a_caption_does_not_change_its_log_probs():
    model = captioner().eval()
    short, long = sentence("a", "red", "circle"), sentence("a", "blue", "square", "a", "red", "circle")
    padded = torch.cat([short, torch.full((len(long) - len(short),), PAD_ID)])
    features = torch.randn(2, 6)
    alone = model(features[:1], short[None])
    together = model(features, torch.stack([padded, long]))
    assert torch.allclose(together[0, : len(short)], alone[0], atol=1e-6)


def test_a_tiny_batch_is_learnt_by_heart_in_a_few_steps():
    model = captioner(dropout=0.1)
    captions = [("a", "red", "circle"), ("a", "blue", "square"), ("a", "red", "square"), ("a", "blue", "circle")]
    sequences = torch.stack([torch.cat([sentence(*words), torch.tensor([END_ID])]) for words in captions])
    features = torch.eye(4, 6)  # one image per caption: the image decides the colour and the shape
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.01)
    for _ in range(80):
        log_probs = model(features, sequences[:, :-1])
        loss = -log_probs.gather(2, sequences[:, 1:, None]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    log_probs = model(features, sequences[:, :-1])
    assert (log_probs.argmax(-1) == sequences[:, 1:]).all()
    assert -log_probs.gather(2, sequences[:, 1:, None]).mean() < 0.1


def test_checkpoint_round_trip_gives_the_same_model(tmp_path):
    model = captioner(dropout=0.3).eval()
    save_checkpoint(tmp_path / "forward.pt", model, {"direction": "forward"}, VOCAB)
    loaded = load_checkpoint(tmp_path / "forward.pt", VOCAB, Captioner)
    assert not loaded.training
    assert loaded.sizes == model.sizes
    features, tokens = torch.randn(2, 6), torch.randint(1, len(VOCAB), (2, 4))
    assert torch.equal(loaded(features, tokens), model(features, tokens))


def test_loading_against_another_vocabulary_names_the_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "forward.pt", captioner(), {}, VOCAB)
    other = Vocab.build([["a", "green", "star"]], min_count=1)
    with pytest.raises(UserError, match="forward.pt: trained on another vocabulary"):
        load_checkpoint(tmp_path / "forward.pt", other, Captioner)


class Payload:
    """Stands for code a pickled checkpoint could run when unpickled."""


def test_a_checkpoint_holding_objects_is_refused(tmp_path):
    model = captioner()
    torch.save(
        {"sizes": model.sizes, "config": Payload(), "vocab_sha256": VOCAB.sha256, "state_dict": model.state_dict()},
        tmp_path / "evil.pt",
    )
    with pytest.raises(UserError, match="evil.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt", VOCAB, Captioner)


def test_a_missing_or_foreign_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="nothing.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "nothing.pt", VOCAB, Captioner)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="other.pt: not a fillblank checkpoint"):
        load_checkpoint(tmp_path / "other.pt", VOCAB, Captioner)


def test_a_pair_is_loaded_only_if_each_is_its_direction_and_both_read_the_same_features(tmp_path):
    def pair(forward: dict, backward: dict, backward_features: int = 6) -> None:
        save_checkpoint(tmp_path / "forward.pt", captioner(), forward, VOCAB)
        torch.manual_seed(1)
        other = Captioner(vocab_size=len(VOCAB), feature_dim=backward_features, embed=32, hidden=64, dropout=0.0)
        save_checkpoint(tmp_path / "backward.pt", other, backward, VOCAB)

    pair({"direction": "forward", "features_sha256": "aa"}, {"direction": "backward", "features_sha256": "aa"})
    assert load_models(tmp_path, VOCAB).infiller is None
    pair({"direction": "backward"}, {"direction": "backward"})
    with pytest.raises(UserError, match="forward.pt: holds the backward model, not the forward one"):
        load_models(tmp_path, VOCAB)
    pair({"direction": "forward", "features_sha256": "aa"}, {"direction": "backward", "features_sha256": "bb"})
    with pytest.raises(UserError, match="not trained on the same features .*forward.pt aa, .*backward.pt bb"):
        load_models(tmp_path, VOCAB)
    pair({"direction": "forward"}, {"direction": "backward"}, backward_features=5)
    with pytest.raises(UserError, match="read features of different sizes \\(forward 6, backward 5\\)"):
        load_models(tmp_path, VOCAB)
