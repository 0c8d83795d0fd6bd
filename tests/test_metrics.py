"""sacrebleu-backed scores: cased and lowercased BLEU, chrF, exact match, signatures."""

from s2s.metrics import perplexity, score


def test_lowercased_bleu_ignores_case_and_cased_bleu_does_not():
    hypotheses = ["A Man Is Riding A Bike Down The Street .", "two dogs play in the snow ."]
    references = ["A man is riding a bike down the street .", "Two dogs play in the snow ."]
    metrics = score(hypotheses, references)
    assert metrics["bleu_lc"] == 100.0
    assert metrics["bleu"] < 100.0
    assert "case:lc" in metrics["bleu_lc_signature"] and "case:mixed" in metrics["bleu_signature"]
    assert metrics["exact_match"] == 0.0


def test_exact_match_counts_identical_lines_ignoring_outer_spaces():
    metrics = score(["2001-01-01 ", "1999-12-31"], ["2001-01-01", "1999-12-30"])
    assert metrics["exact_match"] == 50.0
    assert 0.0 < metrics["chrf"] < 100.0


def test_perplexity_is_exp_loss_and_stays_finite():
    assert abs(perplexity(1.0) - 2.718281828) < 1e-6
    assert perplexity(1e9) < float("inf")


def test_moses_bleu_tokenizes_and_lowercases_both_sides():
    # untokenized, cased hypotheses against tokenized, lowercased references: equal after Moses + lowercasing
    hypotheses = ["The dog's toy is red.", "Two dogs play, then sleep."]
    references = ["the dog's toy is red .", "two dogs play , then sleep ."]
    metrics = score(hypotheses, references, moses_lang="en")
    assert metrics["bleu_lc_moses"] == 100.0
    assert "tok:none" in metrics["bleu_lc_moses_signature"] and "moses-en-lc" in metrics["bleu_lc_moses_signature"]
    assert score(["a dog runs ."], ["A cat runs ."], moses_lang="de")["bleu_lc_moses"] < 100.0
    assert "bleu_lc_moses" not in score(hypotheses, references)
