#!/usr/bin/env python3
"""Generate the small synthetic datasets shipped with tx's built-in task plugins.

Everything here is produced by the project's own tiny grammars; no text is taken
from any external dataset.  The script is deterministic (fixed seeds, stdlib
only) and re-runnable: running it again rewrites byte-identical files.

    python scripts/make_builtin_data.py

Writes (relative to the repository root):

    plugins/summarization/data/{train,validation,test}.jsonl   {"document", "summary"}
    plugins/translation/data/{train,validation,test}.jsonl     {"translation": {"en", "xx"}}
    plugins/translation/data/sample_columns.csv                en,xx  (first 50 validation rows)
    plugins/classification/data/{train,validation,test}.csv    sentence,label
    plugins/classification/data/pairs_{train,validation}.csv   sentence1,sentence2,label

The tasks are designed to be learnable by a tiny model (T5 with d_model 64-128,
2 layers, a 1-2k-entry tokenizer) in a few hundred optimizer steps on CPU:

* summarization: lead-sentence extraction; the summary is exactly the first
  sentence of the document.
* translation: English -> "xx", a made-up language given by a fixed
  word-for-word lexicon plus three systematic rules (adjectives follow their
  noun, the verb moves to the end of its clause, plural nouns take a suffix).
* classification: review sentences whose label follows from sentiment words
  and simple negation (about 55% positive, so a majority-class baseline is
  clearly distinguishable from learning); plus a paraphrase-pair task.
"""

from __future__ import annotations

import csv
import json
import random
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUM_DIR = ROOT / "plugins" / "summarization" / "data"
TR_DIR = ROOT / "plugins" / "translation" / "data"
CLS_DIR = ROOT / "plugins" / "classification" / "data"

SEED = 20240611

SUM_SIZES = {"train": 3000, "validation": 300, "test": 300}
TR_SIZES = {"train": 4000, "validation": 300, "test": 300}
CLS_SIZES = {"train": 2000, "validation": 300, "test": 300}
PAIR_SIZES = {"train": 800, "validation": 200}
CLS_POSITIVE_SHARE = 0.55
PAIR_POSITIVE_SHARE = 0.5

SPLITS = ("train", "validation", "test")
WORD_RE = re.compile(r"[A-Za-z0-9'-]+")


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def split_counts(sizes: dict[str, int]) -> list[tuple[str, int]]:
    return [(name, sizes[name]) for name in SPLITS if name in sizes]


# ---------------------------------------------------------------------------
# 1. Summarization: lead-sentence extraction
# ---------------------------------------------------------------------------

TOWNS = [
    "Northbridge", "Eastvale", "Millford", "Redhaven", "Ashcombe", "Kingsmoor",
    "Lowerby", "Stonefield", "Westmarsh", "Brightwater", "Harrowdale", "Fenwick",
    "Glenmouth", "Calder Bay", "Oakhurst", "Pellingham",
]
LANDMARKS = [
    "old harbour", "main station", "river bridge", "town hall", "market square",
    "city park", "north gate", "coastal road", "retail park", "old mill",
]
SUBJECTS = [
    "the city council", "the local school", "a young engineer", "the regional hospital",
    "the football club", "a small bakery", "the transport board", "the police",
    "local farmers", "the mayor", "a group of students", "the water company",
    "the museum", "the university", "residents", "the fire service", "a local charity",
    "the village shop", "the harbour authority", "the national theatre", "a software firm",
    "the health board", "the railway operator", "environmental groups", "the county court",
    "a famous chef", "the town library", "the energy supplier", "a team of scientists",
    "the festival organisers", "the parish council", "a family business", "the sailing club",
    "the bus company", "a retired teacher", "the housing association", "the art gallery",
    "shop owners", "the cricket team", "the planning committee",
]
VERBS = [
    "approved", "announced", "opened", "closed", "rejected", "launched", "delayed",
    "completed", "cancelled", "criticised", "welcomed", "unveiled", "repaired", "funded",
    "sold", "bought", "expanded", "reviewed", "postponed", "celebrated", "investigated",
    "supported", "planned", "started", "finished", "built", "tested", "published", "won",
    "lost", "paused", "restored", "promoted", "defended", "questioned", "renamed",
    "moved", "cleaned", "inspected", "redesigned",
]
VERB_PHRASES = [
    "has approved", "has announced", "has opened", "will close", "has rejected",
    "is to launch", "has delayed", "has completed", "has cancelled", "is set to expand",
    "has agreed to fund", "has decided to sell", "plans to rebuild", "has begun to review",
    "hopes to restore",
]
OBJECTS = [
    "a new bridge", "the annual festival", "plans for a new road", "a plan to cut costs",
    "the old factory", "a community garden", "the summer market", "a new bus route",
    "the main hospital wing", "a report on air quality", "the local park",
    "a new sports centre", "the school canteen", "a study of river fish", "the harbour wall",
    "a prize for young writers", "the night train service", "a housing scheme",
    "the town clock", "a programme for older people", "a new water pipe", "the cycle path",
    "a fundraising campaign", "the library extension", "a solar farm", "the swimming pool",
    "a food bank", "the car park", "a music school", "the village hall", "a wind turbine",
    "the flood defences", "a new ferry", "the public toilets", "a book about the coast",
    "the main road", "a new playground", "the old lighthouse", "a football pitch",
    "the street lights",
]
TIMES = [
    "on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "on Saturday",
    "on Sunday", "last week", "earlier this year", "last month", "this morning",
    "on Friday evening", "at the weekend", "late last night", "after months of delay",
    "in the spring", "over the summer", "before the holidays",
]
FUTURE_TIMES = [
    "next year", "next month", "in the spring", "by the end of the year", "next week",
    "before the winter", "later this year", "in the autumn",
]
NUMBERS = [str(n) for n in list(range(2, 21)) + [24, 25, 30, 35, 40, 45, 50, 60, 75,
                                                    80, 90, 100, 120, 150, 200, 250,
                                                    300, 400, 500, 800]]
REASONS = [
    "because of heavy rain", "after complaints from residents", "following a long review",
    "despite strong opposition", "to save money", "as part of a wider plan",
    "due to a lack of funding", "after a public vote", "because of rising costs",
    "after a safety check", "following a storm", "to attract more visitors",
]
PEOPLE = [
    "a spokesperson", "the chief executive", "one resident", "a local teacher",
    "the head of the council", "a shop owner", "one volunteer", "the project manager",
    "a nurse", "the club captain", "a local doctor", "one student",
]
TOPICS = ["decision", "project", "plan", "work", "change", "result", "scheme", "news"]
OPINIONS = [
    "long overdue", "a big step forward", "good news for the area", "disappointing",
    "necessary", "too expensive", "very popular", "a great success", "a difficult choice",
    "a welcome change", "unfair to families", "the right thing to do",
]
EVENTS = ["meeting", "protest", "open day", "concert", "match", "fair", "vote", "ceremony"]
ORDINALS = ["first", "second", "third", "fourth", "fifth"]
PEOPLE_VERBS = ["attended", "joined", "watched", "signed up for", "supported", "missed"]
FUTURE_VERBS = [
    "open", "close", "cost more", "take several months", "create new jobs",
    "reduce traffic", "bring more visitors", "be reviewed again", "start",
]


def _place(rng: random.Random) -> str:
    t = rng.random()
    town = rng.choice(TOWNS)
    if t < 0.4:
        return f"in {town}"
    if t < 0.6:
        return f"near the {rng.choice(LANDMARKS)}"
    if t < 0.8:
        return f"in the {rng.choice(['north', 'south', 'east', 'west', 'centre'])} of {town}"
    return f"near the {rng.choice(LANDMARKS)} in {town}"


def _number_phrase(rng: random.Random) -> str:
    n = rng.choice(NUMBERS)
    return rng.choice([
        f"at a cost of {n} thousand pounds", f"after {n} days", f"with {n} new staff",
        f"for the first time in {n} years", f"affecting {n} homes",
        f"with the help of {n} volunteers", f"after {n} weeks of work",
    ])


def _head(rng: random.Random, lead: bool) -> tuple[str, list[str]]:
    """Return (clause, kinds of modifiers allowed)."""
    all_mods = ["place", "time", "number", "reason"]
    kind = "event" if lead else rng.choices(
        ["event", "said", "future", "people", "ordinal", "described"],
        weights=[5, 3, 2, 2, 1, 1])[0]
    if kind == "event":
        verb = rng.choice(VERBS) if rng.random() < 0.7 else rng.choice(VERB_PHRASES)
        return f"{rng.choice(SUBJECTS)} {verb} {rng.choice(OBJECTS)}", all_mods
    if kind == "said":
        return (f"{rng.choice(PEOPLE)} said the {rng.choice(TOPICS)} was "
                f"{rng.choice(OPINIONS)}", [])
    if kind == "future":
        return (f"the {rng.choice(TOPICS)} is expected to {rng.choice(FUTURE_VERBS)} "
                f"{rng.choice(FUTURE_TIMES)}", ["place", "reason"])
    if kind == "people":
        return (f"{rng.choice(NUMBERS)} people {rng.choice(PEOPLE_VERBS)} the "
                f"{rng.choice(EVENTS)}", ["place", "time"])
    if kind == "ordinal":
        return (f"it is the {rng.choice(ORDINALS)} {rng.choice(EVENTS)} of its kind",
                ["place", "time"])
    return (f"{rng.choice(PEOPLE)} from {rng.choice(TOWNS)} described it as "
            f"{rng.choice(OPINIONS)}", [])


def _sentence_target(rng: random.Random) -> int:
    # Long-tailed length between 5 and 20 words (mode ~8, mean ~10).
    return max(5, min(20, 5 + int(round(rng.gammavariate(2.0, 2.6)))))


def make_sentence(rng: random.Random, lead: bool) -> str:
    while True:
        target = _sentence_target(rng)
        head, allowed = _head(rng, lead)
        parts = [head]
        n = len(head.split())
        mods = list(allowed)
        rng.shuffle(mods)
        for mod in mods:
            phrase = {"place": _place, "time": lambda r: r.choice(TIMES),
                      "number": _number_phrase, "reason": lambda r: r.choice(REASONS)}[mod](rng)
            if n + len(phrase.split()) <= target:
                parts.append(phrase)
                n += len(phrase.split())
        if lead and n + 2 <= target and rng.random() < 0.3:
            parts[-1] += ","
            parts.append(rng.choice(["officials said", "police said", "organisers said"]))
            n += 2
        if 5 <= n <= 20:
            return cap(" ".join(parts)) + "."


def _num_sentences(rng: random.Random) -> int:
    return rng.choices(range(2, 10), weights=[14, 22, 20, 15, 11, 8, 6, 4])[0]


def make_summarization() -> dict[str, list[dict]]:
    rng = random.Random(SEED + 1)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split, size in split_counts(SUM_SIZES):
        rows = []
        while len(rows) < size:
            lead = make_sentence(rng, lead=True)
            if lead in seen:
                continue
            seen.add(lead)
            body = [make_sentence(rng, lead=False) for _ in range(_num_sentences(rng) - 1)]
            rows.append({"document": " ".join([lead] + body), "summary": lead})
        out[split] = rows
    return out


# ---------------------------------------------------------------------------
# 2. Translation: English -> synthetic language "xx"
# ---------------------------------------------------------------------------

# (singular, plural)
TR_NOUNS = [
    ("farmer", "farmers"), ("child", "children"), ("teacher", "teachers"),
    ("doctor", "doctors"), ("baker", "bakers"), ("sailor", "sailors"),
    ("king", "kings"), ("woman", "women"), ("man", "men"), ("girl", "girls"),
    ("boy", "boys"), ("cat", "cats"), ("dog", "dogs"), ("horse", "horses"),
    ("bird", "birds"), ("fish", "fish"), ("apple", "apples"), ("bread", "breads"),
    ("letter", "letters"), ("book", "books"), ("house", "houses"), ("boat", "boats"),
    ("river", "rivers"), ("tree", "trees"), ("stone", "stones"), ("song", "songs"),
    ("cup", "cups"), ("table", "tables"), ("door", "doors"), ("window", "windows"),
    ("friend", "friends"), ("neighbour", "neighbours"), ("student", "students"),
    ("soldier", "soldiers"), ("singer", "singers"), ("flower", "flowers"),
    ("basket", "baskets"), ("key", "keys"), ("coat", "coats"), ("road", "roads"),
    ("garden", "gardens"), ("market", "markets"), ("village", "villages"),
    ("mountain", "mountains"), ("lamp", "lamps"), ("cake", "cakes"),
    ("shoe", "shoes"), ("box", "boxes"), ("wall", "walls"), ("ship", "ships"),
]
TR_ANIMATE = {"farmer", "child", "teacher", "doctor", "baker", "sailor", "king", "woman",
              "man", "girl", "boy", "cat", "dog", "horse", "bird", "fish", "friend",
              "neighbour", "student", "soldier", "singer"}
TR_PLACES = ["river", "house", "garden", "market", "village", "mountain", "road", "boat",
             "ship", "tree", "table", "door", "window", "wall"]
TR_ADJS = [
    "big", "small", "old", "young", "red", "green", "blue", "white", "black", "happy",
    "tired", "quiet", "loud", "new", "warm", "cold", "heavy", "strong", "clever",
    "brave", "beautiful", "dark", "bright", "long", "sweet", "angry", "poor", "rich",
]
# (base, third-person singular)
TR_VERBS = [
    ("see", "sees"), ("find", "finds"), ("carry", "carries"), ("buy", "buys"),
    ("sell", "sells"), ("want", "wants"), ("make", "makes"), ("bring", "brings"),
    ("hold", "holds"), ("love", "loves"), ("paint", "paints"), ("open", "opens"),
    ("close", "closes"), ("wash", "washes"), ("follow", "follows"), ("help", "helps"),
    ("watch", "watches"), ("take", "takes"), ("give", "gives"), ("read", "reads"),
    ("write", "writes"), ("cook", "cooks"), ("eat", "eats"), ("hide", "hides"),
    ("call", "calls"), ("know", "knows"), ("like", "likes"), ("break", "breaks"),
    ("fix", "fixes"), ("draw", "draws"),
]
TR_PREPS = ["in", "near", "behind", "under", "on", "beside", "at", "from"]
TR_DETS_SG = ["the", "a", "this", "that", "my", "our", "every"]
TR_DETS_PL = ["the", "some", "these", "those", "my", "our", "many", ""]
TR_TIMES = ["today", "tonight", "again", "now", "often", "every day", "every morning",
            "in the evening", "at night", "every week"]
TR_FUNCTION = ["and", "an", "day", "morning", "evening", "night", "week"]


def _make_xx_lexicon() -> dict[str, str]:
    """Fixed word-for-word lexicon: English lemma -> made-up syllable word."""
    rng = random.Random(SEED + 2)
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
              "sh", "th", "kr", "tr", "pl"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "", "", "n", "r", "l", "k", "s"]
    english = [n for n, _ in TR_NOUNS] + TR_ADJS + [v for v, _ in TR_VERBS] + TR_PREPS
    english += [d for d in TR_DETS_SG + TR_DETS_PL if d]
    for t in TR_TIMES:
        english += t.split()
    english += TR_FUNCTION
    ordered = list(dict.fromkeys(english))  # stable de-duplication
    taken: set[str] = set(w.lower() for w in ordered)
    lex: dict[str, str] = {}
    short = {"the", "a", "an", "in", "on", "at", "and", "my", "our", "some", "this",
             "that", "these", "those", "from", "near", "every", "many"}
    for w in ordered:
        if w == "an":
            continue
        while True:
            n_syl = 1 if w in short else rng.choice([2, 2, 2, 3])
            cand = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(n_syl))
            cand += rng.choice(codas) if n_syl > 1 else ""
            forms = {cand, _xx_plural(cand)}
            if len(cand) >= 2 and not (forms & taken):
                taken |= forms
                lex[w] = cand
                break
    lex["an"] = lex["a"]
    return lex


def _xx_plural(stem: str) -> str:
    return stem + ("n" if stem[-1] in "aeiou" else "en")


class XX:
    lex = _make_xx_lexicon()

    @classmethod
    def np(cls, det: str, adjs: list[str], noun: str, plural: bool) -> str:
        # Rule 1: adjectives follow the noun.  Rule 3: plural nouns take -n/-en.
        xn = cls.lex[noun]
        if plural:
            xn = _xx_plural(xn)
        toks = ([cls.lex[det]] if det else []) + [xn] + [cls.lex[a] for a in adjs]
        return " ".join(toks)

    @classmethod
    def words(cls, phrase: str) -> str:
        return " ".join(cls.lex[w] for w in phrase.split())


def _en_np(det: str, adjs: list[str], noun_form: str) -> str:
    toks = ([det] if det else []) + adjs + [noun_form]
    if toks[0] == "a" and toks[1][0] in "aeiou":
        toks[0] = "an"
    return " ".join(toks)


def _tr_np(rng: random.Random, nouns: list[tuple[str, str]], max_adj: int):
    sg, pl = rng.choice(nouns)
    plural = rng.random() < 0.35
    det = rng.choice(TR_DETS_PL if plural else TR_DETS_SG)
    n_adj = rng.choices(range(max_adj + 1), weights=[5, 4, 1][: max_adj + 1])[0]
    adjs = rng.sample(TR_ADJS, n_adj)
    en = _en_np(det, adjs, pl if plural else sg)
    return en, XX.np("an" if en.startswith("an ") else det, adjs, sg, plural), plural


def _tr_clause(rng: random.Random) -> tuple[str, str]:
    animate = [n for n in TR_NOUNS if n[0] in TR_ANIMATE]
    places = [n for n in TR_NOUNS if n[0] in TR_PLACES]
    s_en, s_xx, s_pl = _tr_np(rng, animate, 2)
    base, third = rng.choice(TR_VERBS)
    o_en, o_xx, _ = _tr_np(rng, TR_NOUNS, 2)
    en = [s_en, base if s_pl else third, o_en]
    xx = [s_xx, o_xx]
    if rng.random() < 0.45:
        prep = rng.choice(TR_PREPS)
        p_en, p_xx, _ = _tr_np(rng, places, 1)
        en.append(f"{prep} {p_en}")
        xx.append(f"{XX.lex[prep]} {p_xx}")
    if rng.random() < 0.3:
        t = rng.choice(TR_TIMES)
        en.append(t)
        xx.append(XX.words(t))
    # Rule 2: the verb goes to the end of its clause.
    xx.append(XX.lex[base])
    return " ".join(en), " ".join(xx)


def make_translation_pair(rng: random.Random) -> tuple[str, str]:
    while True:
        en, xx = _tr_clause(rng)
        if rng.random() < 0.2:
            en2, xx2 = _tr_clause(rng)
            en, xx = f"{en} and {en2}", f"{xx} {XX.lex['and']} {xx2}"
        if 4 <= len(en.split()) <= 16:
            return cap(en) + ".", cap(xx) + "."


def make_translation() -> dict[str, list[dict]]:
    rng = random.Random(SEED + 3)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split, size in split_counts(TR_SIZES):
        rows = []
        while len(rows) < size:
            en, xx = make_translation_pair(rng)
            if en in seen:
                continue
            seen.add(en)
            rows.append({"translation": {"en": en, "xx": xx}})
        out[split] = rows
    return out


# ---------------------------------------------------------------------------
# 3a. Classification: sentiment with negation
# ---------------------------------------------------------------------------

POS_ADJS = [
    "good", "great", "excellent", "wonderful", "amazing", "pleasant", "impressive",
    "solid", "delightful", "superb", "fantastic", "reliable", "comfortable", "charming",
    "brilliant", "enjoyable", "lovely", "satisfying",
]
NEG_ADJS = [
    "bad", "terrible", "awful", "poor", "boring", "disappointing", "dull", "mediocre",
    "horrible", "weak", "bland", "frustrating", "useless", "annoying", "unpleasant",
    "sloppy", "dreadful", "tedious",
]
POS_VERBS = ["loved", "enjoyed", "liked", "appreciated", "adored"]
NEG_VERBS = ["hated", "disliked", "regretted", "resented", "loathed"]
PRODUCTS = [
    "movie", "phone", "hotel", "restaurant", "book", "laptop", "album", "camera",
    "game", "show", "cafe", "jacket", "blender", "tablet", "museum tour", "concert",
]
ASPECTS = [
    "food", "service", "battery", "screen", "plot", "acting", "staff", "room", "price",
    "delivery", "sound", "design", "ending", "music", "packaging", "menu", "keyboard",
    "story", "view", "support team",
]
INTENSIFIERS = ["", "", "", "really", "very", "truly", "quite", "pretty", "absolutely"]
NEGATORS = ["not", "never", "hardly", "far from", "not at all"]
OPENERS = ["", "", "", "honestly, ", "overall, ", "to be fair, ", "in my opinion, ",
           "all in all, ", "for the money, "]
WHOM = ["anyone", "my friends", "my family", "other travellers", "a friend", "everyone"]


def _sent_adj_phrase(rng: random.Random, positive: bool) -> str:
    """A copular complement whose overall polarity is `positive`."""
    if rng.random() < 0.35:  # negated: polarity of the adjective is flipped
        adj = rng.choice(NEG_ADJS if positive else POS_ADJS)
        neg = rng.choice(NEGATORS)
        if neg == "not at all":
            return f"not {adj} at all"
        return f"{neg} {adj}"
    adj = rng.choice(POS_ADJS if positive else NEG_ADJS)
    inten = rng.choice(INTENSIFIERS)
    return f"{inten} {adj}".strip()


def make_review(rng: random.Random, positive: bool) -> str:
    kind = rng.choices(["aspect", "product", "verb", "recommend", "but", "two"],
                       weights=[5, 4, 3, 2, 2, 2])[0]
    product, aspect = rng.choice(PRODUCTS), rng.choice(ASPECTS)
    opener = rng.choice(OPENERS)
    if kind == "aspect":
        tense = rng.choice(["was", "is"])
        s = f"{opener}the {aspect} {tense} {_sent_adj_phrase(rng, positive)}"
    elif kind == "product":
        s = f"{opener}this {product} is {_sent_adj_phrase(rng, positive)}"
    elif kind == "verb":
        if rng.random() < 0.3:  # "did not hate" -> positive, "did not enjoy" -> negative
            verb = rng.choice(NEG_VERBS if positive else POS_VERBS)
            base = {"loved": "love", "enjoyed": "enjoy", "liked": "like",
                    "appreciated": "appreciate", "adored": "adore", "hated": "hate",
                    "disliked": "dislike", "regretted": "regret", "resented": "resent",
                    "loathed": "loathe"}[verb]
            s = f"{opener}i did not {base} the {aspect} of this {product}"
        else:
            verb = rng.choice(POS_VERBS if positive else NEG_VERBS)
            s = f"{opener}i {verb} the {aspect} of this {product}"
    elif kind == "recommend":
        if positive:
            mod = rng.choice(["would", "would definitely", "would happily", "will always"])
        else:
            mod = rng.choice(["would not", "would never", "will never", "could not"])
        s = f"{opener}i {mod} recommend this {product} to {rng.choice(WHOM)}"
    elif kind == "but":
        # The clause after "but" decides the label.
        first = _sent_adj_phrase(rng, not positive)
        aspect2 = rng.choice([a for a in ASPECTS if a != aspect])
        s = (f"the {aspect} was {first} but the {aspect2} was "
             f"{_sent_adj_phrase(rng, positive)}")
    else:  # two clauses that agree
        aspect2 = rng.choice([a for a in ASPECTS if a != aspect])
        s = (f"{opener}the {aspect} was {_sent_adj_phrase(rng, positive)} and the "
             f"{aspect2} was {_sent_adj_phrase(rng, positive)}")
    s = re.sub(r"\bi\b", "I", s)
    return cap(s) + rng.choice([".", ".", ".", "!"])


def _labels(rng: random.Random, n: int, pos_share: float) -> list[bool]:
    n_pos = round(n * pos_share)
    labels = [True] * n_pos + [False] * (n - n_pos)
    rng.shuffle(labels)
    return labels


def make_classification() -> dict[str, list[dict]]:
    rng = random.Random(SEED + 4)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split, size in split_counts(CLS_SIZES):
        rows = []
        for positive in _labels(rng, size, CLS_POSITIVE_SHARE):
            while True:
                s = make_review(rng, positive)
                if s.lower() not in seen:
                    seen.add(s.lower())
                    break
            rows.append({"sentence": s, "label": "positive" if positive else "negative"})
        out[split] = rows
    return out


# ---------------------------------------------------------------------------
# 3b. Paraphrase pairs (for fine-tuning a small pretrained BERT-style model)
# ---------------------------------------------------------------------------

# Each entry is a group of interchangeable phrasings.
PP_PEOPLE = [
    ["the doctor", "the physician"], ["the lawyer", "the attorney"],
    ["the teacher", "the instructor"], ["the student", "the pupil"],
    ["the child", "the kid"], ["the shop owner", "the store owner"],
    ["the chef", "the cook"], ["the boss", "the manager"],
    ["the reporter", "the journalist"], ["the taxi driver", "the cab driver"],
    ["my neighbour", "the person next door"], ["the nurse"], ["the pilot"],
    ["the farmer"], ["the mayor"], ["the coach", "the trainer"],
]
# (past, participle, base) groups; person -> person
PP_VERBS_PERSON = [
    [("called", "called", "call"), ("phoned", "phoned", "phone")],
    [("helped", "helped", "help"), ("assisted", "assisted", "assist")],
    [("praised", "praised", "praise"), ("commended", "commended", "commend")],
    [("hired", "hired", "hire"), ("employed", "employed", "employ")],
    [("warned", "warned", "warn"), ("cautioned", "cautioned", "caution")],
    [("questioned", "questioned", "question"), ("interviewed", "interviewed", "interview")],
    [("chose", "chosen", "choose"), ("selected", "selected", "select")],
    [("thanked", "thanked", "thank")],
    [("visited", "visited", "visit")],
    [("blamed", "blamed", "blame")],
]
PP_THINGS = [
    ["car", "automobile"], ["house", "home"], ["gift", "present"], ["film", "movie"],
    ["sofa", "couch"], ["picture", "photo"], ["bike", "bicycle"], ["trip", "journey"],
    ["boat"], ["laptop", "notebook computer"], ["jacket", "coat"], ["flat", "apartment"],
    ["fridge", "refrigerator"], ["lorry", "truck"],
]
# Adjective groups; each has an antonym group index for meaning changes.
PP_ADJS = [
    ["big", "large"], ["small", "little"], ["expensive", "costly"],
    ["cheap", "inexpensive"], ["old", "used"], ["new", "brand-new"],
]
PP_ANTONYM = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4}
# person -> thing
PP_VERBS_THING = [
    [("bought", "bought", "buy"), ("purchased", "purchased", "purchase")],
    [("fixed", "fixed", "fix"), ("repaired", "repaired", "repair")],
    [("found", "found", "find"), ("discovered", "discovered", "discover")],
    [("chose", "chosen", "choose"), ("picked", "picked", "pick")],
    [("sold", "sold", "sell")],
    [("painted", "painted", "paint")],
    [("lost", "lost", "lose"), ("misplaced", "misplaced", "misplace")],
    [("damaged", "damaged", "damage"), ("broke", "broken", "break")],
]
PP_PLACES = [
    ["near the station", "close to the station"], ["next to the bank", "beside the bank"],
    ["in the city centre", "in the centre of the city", "downtown"],
    ["at the market"], ["in the village"], ["outside the school", "in front of the school"],
]
PP_TIMES = [
    ["yesterday"], ["last week", "the previous week"], ["on Monday"], ["on Friday"],
    ["in the morning", "during the morning"], ["at noon", "at midday"],
    ["last year", "the previous year"], ["this afternoon"],
]


def _pick(rng: random.Random, group: list, synonym: bool, current=None):
    """Pick from `group`; with synonym=True prefer a different member than `current`."""
    if synonym and len(group) > 1:
        return rng.choice([g for g in group if g != current])
    return current if current is not None else rng.choice(group)


def _other_group(rng: random.Random, groups: list, idx: int) -> int:
    return rng.choice([i for i in range(len(groups)) if i != idx])


def _render(f: dict) -> str:
    """Render a frame into a sentence, honouring voice/time position/negation."""
    past, part, base = f["verb"]
    obj = f["obj"]
    if f["kind"] == "thing":
        obj = f"the {f['adj']} {f['thing']}"
    tail = [f["place"]] if f.get("place") else []
    if f["passive"]:
        aux = "was not" if f["neg"] else "was"
        core = f"{obj} {aux} {part} by {f['subj']}"
    else:
        core = f"{f['subj']} did not {base} {obj}" if f["neg"] else f"{f['subj']} {past} {obj}"
    clause = " ".join([core] + tail)
    if f["time_front"]:
        s = f"{f['time']}, {clause}"
    else:
        s = f"{clause} {f['time']}"
    return cap(s) + "."


def _frame(rng: random.Random) -> dict:
    kind = rng.choice(["person", "thing"])
    f = {"kind": kind, "passive": False, "neg": False, "time_front": rng.random() < 0.2}
    f["subj_g"] = rng.randrange(len(PP_PEOPLE))
    f["subj"] = rng.choice(PP_PEOPLE[f["subj_g"]])
    if kind == "person":
        f["verb_g"] = rng.randrange(len(PP_VERBS_PERSON))
        f["verb"] = rng.choice(PP_VERBS_PERSON[f["verb_g"]])
        f["obj_g"] = _other_group(rng, PP_PEOPLE, f["subj_g"])
        f["obj"] = rng.choice(PP_PEOPLE[f["obj_g"]])
        f["place"] = ""
    else:
        f["verb_g"] = rng.randrange(len(PP_VERBS_THING))
        f["verb"] = rng.choice(PP_VERBS_THING[f["verb_g"]])
        f["thing_g"] = rng.randrange(len(PP_THINGS))
        f["thing"] = rng.choice(PP_THINGS[f["thing_g"]])
        f["adj_g"] = rng.randrange(len(PP_ADJS))
        f["adj"] = rng.choice(PP_ADJS[f["adj_g"]])
        f["obj"] = ""
        f["place_g"] = rng.randrange(len(PP_PLACES))
        f["place"] = rng.choice(PP_PLACES[f["place_g"]]) if rng.random() < 0.6 else ""
    f["time_g"] = rng.randrange(len(PP_TIMES))
    f["time"] = rng.choice(PP_TIMES[f["time_g"]])
    return f


def _paraphrase(rng: random.Random, f: dict, min_changes: int) -> dict:
    """Meaning-preserving edits: synonyms, moving the time phrase, passive voice."""
    g = dict(f)
    ops = ["subj", "verb", "time", "front", "passive"]
    ops += ["obj"] if f["kind"] == "person" else ["thing", "adj", "place"]
    rng.shuffle(ops)
    changed = 0
    for op in ops:
        if changed >= min_changes and rng.random() < 0.5:
            break
        before = _render(g)
        if op == "subj":
            g["subj"] = _pick(rng, PP_PEOPLE[g["subj_g"]], True, g["subj"])
        elif op == "obj":
            g["obj"] = _pick(rng, PP_PEOPLE[g["obj_g"]], True, g["obj"])
        elif op == "verb":
            groups = PP_VERBS_PERSON if g["kind"] == "person" else PP_VERBS_THING
            g["verb"] = _pick(rng, groups[g["verb_g"]], True, g["verb"])
        elif op == "thing":
            g["thing"] = _pick(rng, PP_THINGS[g["thing_g"]], True, g["thing"])
        elif op == "adj":
            g["adj"] = _pick(rng, PP_ADJS[g["adj_g"]], True, g["adj"])
        elif op == "place" and g["place"]:
            g["place"] = _pick(rng, PP_PLACES[g["place_g"]], True, g["place"])
        elif op == "time":
            g["time"] = _pick(rng, PP_TIMES[g["time_g"]], True, g["time"])
        elif op == "front":
            g["time_front"] = not g["time_front"]
        elif op == "passive":
            g["passive"] = not g["passive"]
        if _render(g) != before:
            changed += 1
    return g


def _change_meaning(rng: random.Random, f: dict) -> dict:
    g = dict(f)
    options = ["neg", "subj", "verb", "time"]
    options += ["swap", "swap", "obj"] if f["kind"] == "person" else ["thing", "adj", "adj"]
    op = rng.choice(options)
    if op == "neg":
        g["neg"] = not g["neg"]
    elif op == "subj":
        g["subj_g"] = _other_group(rng, PP_PEOPLE, g["subj_g"])
        if g["kind"] == "person" and g["subj_g"] == g["obj_g"]:
            g["subj_g"] = _other_group(rng, PP_PEOPLE, g["obj_g"])
        g["subj"] = rng.choice(PP_PEOPLE[g["subj_g"]])
    elif op == "obj":
        g["obj_g"] = _other_group(rng, PP_PEOPLE, g["obj_g"])
        if g["obj_g"] == g["subj_g"]:
            g["obj_g"] = _other_group(rng, PP_PEOPLE, g["subj_g"])
        g["obj"] = rng.choice(PP_PEOPLE[g["obj_g"]])
    elif op == "swap":  # "A called B" vs "B called A"
        g["subj"], g["obj"] = g["obj"], g["subj"]
        g["subj_g"], g["obj_g"] = g["obj_g"], g["subj_g"]
    elif op == "verb":
        groups = PP_VERBS_PERSON if g["kind"] == "person" else PP_VERBS_THING
        g["verb_g"] = _other_group(rng, groups, g["verb_g"])
        g["verb"] = rng.choice(groups[g["verb_g"]])
    elif op == "thing":
        g["thing_g"] = _other_group(rng, PP_THINGS, g["thing_g"])
        g["thing"] = rng.choice(PP_THINGS[g["thing_g"]])
    elif op == "adj":
        g["adj_g"] = PP_ANTONYM[g["adj_g"]]
        g["adj"] = rng.choice(PP_ADJS[g["adj_g"]])
    elif op == "time":
        g["time_g"] = _other_group(rng, PP_TIMES, g["time_g"])
        g["time"] = rng.choice(PP_TIMES[g["time_g"]])
    # Surface noise so that negatives are not just "one word differs".
    if rng.random() < 0.6:
        g = _paraphrase(rng, g, 0)
    return g


def make_pairs() -> dict[str, list[dict]]:
    rng = random.Random(SEED + 5)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split in ("train", "validation"):
        rows = []
        for positive in _labels(rng, PAIR_SIZES[split], PAIR_POSITIVE_SHARE):
            while True:
                f = _frame(rng)
                s1 = _render(f)
                if s1 in seen:
                    continue
                g = _paraphrase(rng, f, 1) if positive else _change_meaning(rng, f)
                s2 = _render(g)
                if s2 != s1:
                    break
            seen.add(s1)
            rows.append({"sentence1": s1, "sentence2": s2, "label": 1 if positive else 0})
        out[split] = rows
    return out


# ---------------------------------------------------------------------------
# Writing, stats and read-back checks
# ---------------------------------------------------------------------------

def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([row[h] for h in header])


def _len_stats(texts: list[str]) -> str:
    lens = [len(words(t)) for t in texts]
    return (f"mean {statistics.mean(lens):.1f} / median {statistics.median(lens):g} / "
            f"min {min(lens)} / max {max(lens)} words")


def _vocab(texts: list[str]) -> int:
    return len({w.lower() for t in texts for w in words(t)})


SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")


def check_files() -> None:
    """Read every written file back and assert its shape and content."""
    for split, n in split_counts(SUM_SIZES):
        path = SUM_DIR / f"{split}.jsonl"
        raw = path.read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n"), path
        rows = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
        assert len(rows) == n, (path, len(rows))
        for r in rows:
            assert set(r) == {"document", "summary"}, r
            assert r["document"].strip() and r["summary"].strip(), r
            sents = SENT_SPLIT.split(r["document"])
            assert 2 <= len(sents) <= 9, r
            assert sents[0] == r["summary"], r
            assert all(5 <= len(words(s)) <= 20 for s in sents), r
    for split, n in split_counts(TR_SIZES):
        path = TR_DIR / f"{split}.jsonl"
        raw = path.read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n"), path
        rows = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
        assert len(rows) == n, (path, len(rows))
        for r in rows:
            assert set(r) == {"translation"} and set(r["translation"]) == {"en", "xx"}, r
            en, xx = r["translation"]["en"], r["translation"]["xx"]
            assert en.strip() and xx.strip(), r
            assert 4 <= len(en.split()) <= 16, r
    with open(TR_DIR / "sample_columns.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    val = [json.loads(x) for x in (TR_DIR / "validation.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == 50 and list(rows[0]) == ["en", "xx"]
    assert all(r == v["translation"] for r, v in zip(rows, val[:50]))
    for split, n in split_counts(CLS_SIZES):
        with open(CLS_DIR / f"{split}.csv", encoding="utf-8", newline="") as fh:
            rd = csv.DictReader(fh)
            assert rd.fieldnames == ["sentence", "label"], rd.fieldnames
            rows = list(rd)
        assert len(rows) == n, (split, len(rows))
        assert all(r["sentence"].strip() and r["label"] in ("positive", "negative")
                   for r in rows)
        pos = sum(r["label"] == "positive" for r in rows) / n
        assert 0.52 <= pos <= 0.58, pos
    for split, n in PAIR_SIZES.items():
        with open(CLS_DIR / f"pairs_{split}.csv", encoding="utf-8", newline="") as fh:
            rd = csv.DictReader(fh)
            assert rd.fieldnames == ["sentence1", "sentence2", "label"], rd.fieldnames
            rows = list(rd)
        assert len(rows) == n, (split, len(rows))
        assert all(r["sentence1"].strip() and r["sentence2"].strip()
                   and r["label"] in ("0", "1") and r["sentence1"] != r["sentence2"]
                   for r in rows)


def main() -> int:
    summ = make_summarization()
    trans = make_translation()
    cls = make_classification()
    pairs = make_pairs()

    files: list[Path] = []
    for split, rows in summ.items():
        write_jsonl(SUM_DIR / f"{split}.jsonl", rows)
        files.append(SUM_DIR / f"{split}.jsonl")
    for split, rows in trans.items():
        write_jsonl(TR_DIR / f"{split}.jsonl", rows)
        files.append(TR_DIR / f"{split}.jsonl")
    write_csv(TR_DIR / "sample_columns.csv", ["en", "xx"],
              [r["translation"] for r in trans["validation"][:50]])
    files.append(TR_DIR / "sample_columns.csv")
    for split, rows in cls.items():
        write_csv(CLS_DIR / f"{split}.csv", ["sentence", "label"], rows)
        files.append(CLS_DIR / f"{split}.csv")
    for split, rows in pairs.items():
        write_csv(CLS_DIR / f"pairs_{split}.csv", ["sentence1", "sentence2", "label"], rows)
        files.append(CLS_DIR / f"pairs_{split}.csv")

    check_files()

    print("files:")
    total = 0
    for p in files:
        size = p.stat().st_size
        total += size
        with open(p, encoding="utf-8", newline="") as fh:
            n = sum(1 for _ in fh) - (1 if p.suffix == ".csv" else 0)
        print(f"  {p.relative_to(ROOT)}: {n} rows, {size / 1024:.1f} KiB")
    print(f"  total: {total / 1024 / 1024:.2f} MiB")
    assert total < 3 * 1024 * 1024, total

    docs = [r["document"] for rows in summ.values() for r in rows]
    sums = [r["summary"] for rows in summ.values() for r in rows]
    sents = [s for d in docs for s in SENT_SPLIT.split(d)]
    print("summarization:")
    print(f"  vocabulary: {_vocab(docs)} word types")
    print(f"  documents: {_len_stats(docs)}")
    print(f"  summaries: {_len_stats(sums)}")
    print(f"  sentences: {_len_stats(sents)}")
    n_sent = [len(SENT_SPLIT.split(d)) for d in docs]
    print(f"  sentences/document: mean {statistics.mean(n_sent):.1f} / "
          f"median {statistics.median(n_sent):g} / max {max(n_sent)}")

    en = [r["translation"]["en"] for rows in trans.values() for r in rows]
    xx = [r["translation"]["xx"] for rows in trans.values() for r in rows]
    print("translation:")
    print(f"  vocabulary: en {_vocab(en)} / xx {_vocab(xx)} word types")
    print(f"  en: {_len_stats(en)}")
    print(f"  xx: {_len_stats(xx)}")

    sent = [r["sentence"] for rows in cls.values() for r in rows]
    print("classification:")
    print(f"  vocabulary: {_vocab(sent)} word types")
    print(f"  sentences: {_len_stats(sent)}")
    for split, rows in cls.items():
        pos = sum(r["label"] == "positive" for r in rows)
        print(f"  {split}: positive {pos} / negative {len(rows) - pos} "
              f"({100 * pos / len(rows):.1f}% positive)")
    ps = [r[k] for rows in pairs.values() for r in rows for k in ("sentence1", "sentence2")]
    print(f"  pairs vocabulary: {_vocab(ps)} word types; sentences: {_len_stats(ps)}")
    for split, rows in pairs.items():
        pos = sum(r["label"] for r in rows)
        print(f"  pairs_{split}: label 1 {pos} / label 0 {len(rows) - pos}")
    print("all read-back checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
