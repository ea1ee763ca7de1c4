from fillblank.data.text import UNK_ID, Vocab, normalise


def test_normalise_lowercases_and_drops_everything_but_letters_and_digits():
    assert normalise("A Dog, running!") == ["a", "dog", "running"]
    assert normalise("Don't jump 2 T-shirts") == ["dont", "jump", "2", "tshirts"]
    assert normalise("  café\tau lait\n") == ["cafe", "au", "lait"]
    assert normalise("Café naïve RÉSUMÉ") == ["cafe", "naive", "resume"]  # accents folded, letters kept
    assert normalise("ℌorse № 5 in the Straße") == [
        "horse",
        "no",
        "5",
        "in",
        "the",
        "strasse",
    ]  # capitals once decomposed
    assert normalise("Æsop's Œuvre, Søren in Łódź") == [
        "aesops",
        "oeuvre",
        "soren",
        "in",
        "lodz",
    ]  # letters with no decomposition
    assert normalise("...!") == []


def test_vocab_orders_by_count_then_word_after_the_specials():
    vocab = Vocab.build([["b", "a", "c"], ["c", "b"], ["c"]], min_count=1)
    assert vocab.words == ("<pad>", "<start>", "<end>", "<unk>", "c", "b", "a")
    assert vocab.counts == (0, 0, 0, 0, 3, 2, 1)


def test_vocab_threshold_turns_rare_words_into_unk():
    vocab = Vocab.build([["dog", "dog", "cat"], ["dog"]], min_count=2)
    assert vocab.words[4:] == ("dog",)
    assert vocab.counts[UNK_ID] == 1  # the one "cat"
    assert vocab.ids(["dog", "cat"]) == [4, UNK_ID]
    assert vocab.decode([4, UNK_ID]) == ["dog", "<unk>"]


def test_vocab_round_trips_through_json_with_a_stable_hash(tmp_path):
    vocab = Vocab.build([["x", "y", "y"]], min_count=1)
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocab.load(tmp_path / "vocab.json")
    assert loaded == vocab
    assert loaded.sha256 == vocab.sha256
    assert Vocab.build([["x", "y"]], min_count=1).sha256 != vocab.sha256
