"""Datasets: where they come from (`sources/`), and how their text becomes tokens (`text`)."""
