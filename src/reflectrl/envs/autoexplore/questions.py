"""Offline question extraction: from one file's text, candidate questions of the three kinds.

* **code** (``.py``): from the first sentence of a module, class, function or
  method docstring (parsed with `ast`), phrased from what the docstring says
  rather than from the object's name;
* **text** (``.md``, ``.markdown``, ``.rst``, ``.txt``): from a section heading or
  the first sentence of a section or paragraph;
* **data** (``.csv``, ``.tsv``, ``.json``): from a column name, a row's value, or a
  JSON setting.

Each candidate carries a `key`, the normalised text that identifies its
answer, and each file reports every key it *mentions* (all docstring sentences,
headings, sentences, column names, cell values...). The task generator keeps a
candidate only when its key is mentioned by exactly one file of the repository,
which is how ambiguous questions are filtered out.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from dataclasses import dataclass
from random import Random

CODE_SUFFIXES = (".py",)
TEXT_SUFFIXES = (".md", ".markdown", ".rst", ".txt")
DATA_SUFFIXES = (".csv", ".tsv", ".json")
MIN_WORDS = 4
MAX_SENTENCE_CHARS = 200
MAX_DATA_ROWS = 2000

# Imperative verbs that open docstrings ("Return the...") and can be turned into
# "the function that returns the ...". A closed list: guessing the grammar of
# an arbitrary first word would produce broken questions.
_VERBS = frozenset(
    """add adjust allocate apply assign build calculate call cancel check clean clear close collect combine compare
    compute construct convert copy count create decode delete detect determine display emit encode ensure estimate
    evaluate execute export extract fetch fill filter find finish flag flush format generate get group handle import
    initialise initialize insert list load look make map mark match measure merge move normalise normalize notify
    open parse pick prepare print process produce raise read rebuild record reject release remove render replace
    report reset resolve restore retrieve return round run save schedule search select send serialize set show skip
    sort split start stop store strip sum summarise summarize test tell track transform translate trim try turn
    update validate verify wait walk warn wrap write yield""".split()
)
_IRREGULAR = {"do": "does", "go": "goes", "try": "tries", "carry": "carries", "apply": "applies", "copy": "copies"}


def _third_person(verb: str) -> str:
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    return verb + "es" if verb.endswith(("s", "sh", "ch", "x", "z")) else verb + "s"


_THIRD_PERSON = frozenset(_third_person(v) for v in _VERBS)

CODE_VERB_TEMPLATES = (
    "Which file contains the {what} that {phrase}?",
    "Where is the {what} that {phrase}?",
    "Which file implements the {what} that {phrase}?",
)
CODE_QUOTE_TEMPLATES = (
    'Which file defines the {what} documented as "{sentence}"?',
    'Where is the {what} whose documentation begins "{sentence}"?',
)
MODULE_TEMPLATES = (
    'Which module is described as "{sentence}"?',
    'Which file is the module whose documentation says "{sentence}"?',
)
HEADING_TEMPLATES = (
    'Which document has a section titled "{heading}"?',
    'Where is the section "{heading}" of the documentation?',
)
SENTENCE_TEMPLATES = (
    'Which document says: "{sentence}"?',
    'Where does the documentation state "{sentence}"?',
)
COLUMN_TEMPLATES = (
    'Which data file has a column named "{column}"?',
    'Which table records "{column}"?',
)
ROW_TEMPLATES = (
    'Which data file records {column} {value} for "{key}"?',
    'Where is "{key}" listed with {column} {value}?',
)
SETTING_TEMPLATES = (
    'Which file sets "{name}" to {value}?',
    'Where is the setting "{name}" configured?',
)


@dataclass(frozen=True)
class Candidate:
    """A question whose answer is the file it was extracted from, if its key is unique."""

    kind: str
    question: str
    key: str
    """Normalised identifying text; the question is ambiguous if another file mentions it."""
    evidence: str
    """The text the question was made from."""
    offset: int
    """Character offset in the file where the evidence ends (to check it is inside the agent's view)."""


def normalise(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: the form keys are compared in."""
    return re.sub(r"\s+", " ", text).strip().strip(".,:;!?\"'`").casefold()


def first_sentence(text: str) -> str | None:
    """The first sentence of the first paragraph, or None if it is too short, too long or not prose."""
    paragraph = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0]
    paragraph = " ".join(paragraph.split())
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    sentence = match.group(1) if match else paragraph
    words = sentence.split()
    if len(words) < MIN_WORDS or len(sentence) > MAX_SENTENCE_CHARS:
        return None
    if not sentence[0].isalpha() or any(mark in sentence for mark in (">>>", "::", "{", "}", "|", "http", "=")):
        return None
    return sentence


def verb_phrase(sentence: str) -> str | None:
    """'Return the total.' -> 'returns the total'; None when the sentence does not open with a known verb."""
    first, _, rest = sentence.partition(" ")
    word = first.casefold()
    body = rest.rstrip(".!?")
    if not body:
        return None
    if word in _VERBS:
        return f"{_third_person(word)} {body}"
    if word in _THIRD_PERSON:
        return f"{word} {body}"
    return None


def _line_offsets(text: str) -> list[int]:
    offsets, total = [0], 0
    for line in text.splitlines(keepends=True):
        total += len(line)
        offsets.append(total)
    return offsets


def code_candidates(text: str, rng: Random) -> tuple[list[Candidate], set[str]]:
    """Candidates from docstrings of a Python source, and every docstring sentence it mentions."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return [], set()
    lines = _line_offsets(text)
    found: list[Candidate] = []
    mentions: set[str] = set()

    def add(node, what: str) -> None:
        doc = ast.get_docstring(node, clean=True)
        if not doc:
            return
        sentence = first_sentence(doc)
        if sentence is None:
            return
        key = normalise(sentence)
        mentions.add(key)
        doc_node = node.body[0]
        end_line = getattr(doc_node, "end_lineno", doc_node.lineno) or doc_node.lineno
        offset = lines[min(end_line, len(lines) - 1)]
        if what == "module":
            question = rng.choice(MODULE_TEMPLATES).format(sentence=sentence)
        else:
            phrase = verb_phrase(sentence) if what != "class" else None
            if phrase is not None:
                question = rng.choice(CODE_VERB_TEMPLATES).format(what=what, phrase=phrase)
            else:
                question = rng.choice(CODE_QUOTE_TEMPLATES).format(what=what, sentence=sentence)
        found.append(Candidate("code", question, key, sentence, offset))

    add(tree, "module")
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            add(node, "function")
        elif isinstance(node, ast.ClassDef):
            add(node, "class")
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    add(member, "method")
    return found, mentions


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`*+#:.])\1{2,}\s*$")


def _sections(text: str, suffix: str) -> list[tuple[str | None, str, int]]:
    """(heading or None, body, offset of the body) for each section of a markdown/rst/plain text."""
    lines = text.splitlines(keepends=True)
    sections: list[tuple[str | None, list[str], int]] = [(None, [], 0)]
    offset = 0
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        heading = None
        skip = 0
        if not in_fence and suffix in (".md", ".markdown"):
            match = _MD_HEADING.match(stripped)
            if match:
                heading = match.group(2)
        elif not in_fence and suffix == ".rst" and i + 1 < len(lines) and stripped:
            under = lines[i + 1].strip()
            if _RST_UNDERLINE.match(under) and len(under) >= len(stripped) and not _RST_UNDERLINE.match(stripped):
                heading, skip = stripped, 1
        if heading is not None:
            consumed = len(line) + sum(len(lines[i + k + 1]) for k in range(skip))
            sections.append((heading, [], offset + consumed))
            offset += consumed
            i += 1 + skip
            continue
        if not in_fence:
            sections[-1][1].append(line)
        else:
            sections[-1][1].append("\n")
        offset += len(line)
        i += 1
    return [(h, "".join(body), start) for h, body, start in sections]


def text_candidates(text: str, suffix: str, rng: Random) -> tuple[list[Candidate], set[str]]:
    """Candidates from the headings and opening sentences of a document."""
    found: list[Candidate] = []
    mentions: set[str] = set()
    for heading, body, start in _sections(text, suffix):
        paragraphs = [p for p in re.split(r"\n\s*\n", body) if p.strip()]
        if heading is None and suffix in (".md", ".markdown", ".rst"):
            paragraphs = paragraphs[:1]
        sentences = []
        for paragraph in paragraphs[:3]:
            if paragraph.lstrip().startswith(("-", "*", "|", "    ", "\t", ">")):
                continue
            sentence = first_sentence(paragraph)
            if sentence is not None and len(sentence.split()) >= 6:
                sentences.append((sentence, start + body.find(paragraph.strip()[:20]) + len(paragraph)))
        for sentence, end in sentences:
            key = normalise(sentence)
            mentions.add(key)
            question = rng.choice(SENTENCE_TEMPLATES).format(sentence=sentence)
            found.append(Candidate("text", question, key, sentence, end))
        if heading is not None:
            title = heading.strip().strip("*_`")
            if 2 <= len(title.split()) <= 10 and len(title) <= 80 and title[0].isalnum():
                key = normalise(title)
                mentions.add(key)
                question = rng.choice(HEADING_TEMPLATES).format(heading=title)
                found.append(Candidate("text", question, key, title, start))
    return found, mentions


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def _key_worthy(value: str) -> bool:
    return 3 <= len(value) <= 60 and not _is_number(value) and "\n" not in value


def data_candidates(text: str, suffix: str, rng: Random) -> tuple[list[Candidate], set[str]]:
    """Candidates from the columns and rows of a CSV/TSV table or the settings of a JSON file."""
    if suffix == ".json":
        return _json_candidates(text, rng)
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))[: MAX_DATA_ROWS + 1]
    except csv.Error:
        return [], set()
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2 or len(rows[0]) < 2:
        return [], set()
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or not all(header):
        return [], set()
    header_end = len(text.split("\n", 1)[0]) + 1
    found: list[Candidate] = []
    mentions: set[str] = set()
    for column in header:
        if _key_worthy(column):
            key = normalise(column)
            mentions.add(key)
            found.append(Candidate("data", rng.choice(COLUMN_TEMPLATES).format(column=column), key, column, header_end))
    body = [r for r in rows[1:] if len(r) == len(header)]
    for row in body:
        mentions.update(normalise(cell) for cell in row if _key_worthy(cell.strip()))
    # a key column: its values name the rows (all distinct, none numeric)
    key_col = next(
        (c for c in range(len(header)) if len({r[c].strip() for r in body}) == len(body) and all(_key_worthy(r[c].strip()) for r in body)),
        None,
    )
    if key_col is not None and body:
        offset = header_end
        for row in body:
            offset += len(",".join(row)) + 1
            others = [c for c in range(len(header)) if c != key_col and row[c].strip()]
            if not others:
                continue
            col = rng.choice(others)
            key_value = row[key_col].strip()
            question = rng.choice(ROW_TEMPLATES).format(column=header[col], value=row[col].strip(), key=key_value)
            found.append(Candidate("data", question, normalise(key_value), f"{key_value}: {header[col]} = {row[col].strip()}", offset))
    return found, mentions


def _json_candidates(text: str, rng: Random) -> tuple[list[Candidate], set[str]]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return [], set()
    if not isinstance(data, dict):
        return [], set()
    settings: list[tuple[str, object]] = []
    for name, value in data.items():
        if isinstance(value, dict):
            settings += [(f"{name}.{k}", v) for k, v in value.items() if not isinstance(v, (dict, list))]
        elif not isinstance(value, list):
            settings.append((str(name), value))
    found: list[Candidate] = []
    mentions: set[str] = set()
    for name, value in settings:
        leaf = name.rsplit(".", 1)[-1]
        if not _key_worthy(leaf):
            continue
        key = normalise(name)
        mentions.add(key)
        if isinstance(value, str):
            mentions.add(normalise(value))
        shown = json.dumps(value, ensure_ascii=False)
        if len(shown) > 60:
            continue
        end = text.find(json.dumps(leaf)) + len(leaf) + len(shown) + 4
        question = rng.choice(SETTING_TEMPLATES).format(name=name, value=shown)
        found.append(Candidate("data", question, key, f"{name} = {shown}", max(end, 0)))
    return found, mentions


def file_candidates(name: str, text: str, rng: Random) -> tuple[list[Candidate], set[str]]:
    """Dispatch on the file name's suffix; unknown suffixes give nothing."""
    lower = name.casefold()
    suffix = lower[lower.rfind(".") :] if "." in lower else ""
    if suffix in CODE_SUFFIXES:
        return code_candidates(text, rng)
    if suffix in TEXT_SUFFIXES:
        return text_candidates(text, suffix, rng)
    if suffix in DATA_SUFFIXES:
        return data_candidates(text, suffix, rng)
    return [], set()


def is_candidate_file(name: str) -> bool:
    """Whether `file_candidates` would look inside a file of this name."""
    lower = name.casefold()
    return lower.endswith(CODE_SUFFIXES + TEXT_SUFFIXES + DATA_SUFFIXES)
