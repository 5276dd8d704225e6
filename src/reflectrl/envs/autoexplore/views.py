"""What `cat` shows of a file: its head, or a window at the line that best matches the question.

A head view answers "does this file answer the question?" only when the
answer sits at the top. A question view starts at the line sharing the most
(rare) words with the question, keeping the file's first line above it for
context (a CSV header, a module docstring's opening), so the evidence is
visible far more often in the same characters (experiments/autoexplore_rl/README.md,
"Question views"). The agent still has to judge what it sees: the view of a
file that does not answer is its best partial match.

Scoring is ours and deliberately simple (a dozen lines, no index to build):
words are weighted by how few lines of the file hold them, so words every line
has ("the", "def", a CSV's delimiters) count for nothing, and ties go to the
earliest line, so the view is a pure function of the file and the question.
"""

from __future__ import annotations

import math
import re
VIEW_STARTS = ("head", "question")
SCAN_CHARS = 65536
"""How much of a file a question view searches (a huge file is judged by its first 64 KiB characters)."""
_WORD = re.compile(r"[a-z0-9]{2,}")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def best_line(lines: list[str], question: str) -> int:
    """Index of the line sharing the most question words (weighted by rarity in the file); 0 when none does."""
    asked = _words(question)
    per_line = [_words(line) & asked for line in lines]
    counts: dict[str, int] = {}
    for found in per_line:
        for word in found:
            counts[word] = counts.get(word, 0) + 1
    weight = {word: math.log((len(lines) + 1) / n) for word, n in counts.items()}
    best, best_score = 0, 0.0
    for index, found in enumerate(per_line):
        score = sum(weight[w] for w in found)
        if score > best_score + 1e-12:
            best, best_score = index, score
    return best


def question_window(text: str, question: str, max_chars: int) -> tuple[str, int]:
    """At most `max_chars` characters of `text`, and the line they jump to (1: the head).

    The first line, "...", and the text from the best line on; the head is kept when the best line starts within its first half, so a view
    never jumps over text it could have shown from the top.
    """
    lines = text.splitlines(keepends=True)
    index = best_line(lines, question) if lines else 0
    offset = sum(len(line) for line in lines[:index])
    if offset < max_chars // 2:
        return text[:max_chars], 1
    first = lines[0].rstrip("\r\n")[: max_chars // 3].rstrip()
    return (first + "\n...\n" + text[offset:])[:max_chars], index + 1
