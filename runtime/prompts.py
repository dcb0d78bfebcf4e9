"""The embedded prompt set and prompt-file loading for workloads."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about the sea.",
    "List three uses of a paperclip.",
    "How do I boil an egg?",
    "Summarise the plot of Romeo and Juliet.",
    "What is speculative decoding in language models?",
    "Give me a recipe for pancakes.",
    "Why do cats purr?",
    "Describe how a bicycle works.",
    "What are the benefits of regular exercise?",
    "Translate 'good morning' into Spanish, French and German.",
)


def load_prompts(prompts: list[str] | None = None, path: str | None = None) -> list[str]:
    """Prompts given on the command line, else from a file (one per line), else the defaults."""
    if prompts:
        return list(prompts)
    if path:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
        found = [ln for ln in lines if ln and not ln.startswith("#")]
        if not found:
            raise ValueError(f"{path}: no prompts (one per line, '#' for comments)")
        return found
    return list(DEFAULT_PROMPTS)
