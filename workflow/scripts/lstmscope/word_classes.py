"""Simple word classes of a token, decided from the token alone (no tagger), which the cluster tables' purity and
the context-use tables' rows share: a module of its own, so that an edit of the cluster measures does not rerun the
context-use jobs, which need only these classes."""
from __future__ import annotations

import re

#: The classes, in the order the tables list them.
WORD_CLASSES = ("eos", "unk", "punctuation", "number", "function", "capitalized", "content")

FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every all both either neither no
i me my mine we us our ours you your yours he him his she her hers it its they them their theirs
one ones who whom whose which what where when why how there here
of in on at by for with from to into onto upon about above below over under between among through
during before after since until till against toward towards across along around behind beyond within
without via per than as like
and or but nor so yet if because although though while whereas unless whether
be am is are was were been being have has had having do does did done
will would shall should can could may might must
not n't 's ' also only just very too then thus
""".split())

_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*(?:s|st|nd|rd|th)?")


def word_class(word: str) -> str:
    """The simple class of a token: eos, unk, punctuation, number, function (a word of :data:`FUNCTION_WORDS` in
    lower case or with a capital first letter), capitalized or content."""
    if word == "<eos>":
        return "eos"
    if word == "<unk>":
        return "unk"
    if not any(ch.isalnum() for ch in word):
        return "punctuation"  # includes WikiText's @-@, @,@ and @.@
    if _NUMBER.fullmatch(word):
        return "number"
    if word.lower() in FUNCTION_WORDS and word in (word.lower(), word.capitalize()):
        return "function"  # "the", "The", "I"; not the all-capitals "US" or "AM", names
    if word[0].isupper():
        return "capitalized"
    return "content"
