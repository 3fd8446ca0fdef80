"""Amazon Fraud Detector's rule language (DETECTORPL): parse, validate and evaluate rule expressions."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, NoReturn, TypeAlias, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

__all__ = [
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_SUBJECT",
    "CompiledRule",
    "RuleEvaluationError",
    "RuleSyntaxError",
    "compile_rule",
    "model_score_variable",
    "validate_rule",
]

MAX_REGEX_LENGTH: Final = 256
# Together with the pattern checks these bound a regex_match() to about 130 ms in the worst case.
MAX_REGEX_SUBJECT: Final = 8192
_MAX_REGEX_CHAIN: Final = 2
# Deeper trees are rejected so that the recursive evaluator stays far from Python's stack limit;
# `and`/`or` chains are flattened, so long lists of conditions do not count against it.
_MAX_DEPTH: Final = 100

_Value: TypeAlias = bool | int | float | str | None
_Values: TypeAlias = Mapping[str, object]
_Lists: TypeAlias = Mapping[str, Collection[str]]


class RuleSyntaxError(ValueError):
    """A rule expression that cannot be compiled, with the 1-based position of the problem."""

    def __init__(self, message: str, *, line: int, column: int, snippet: str) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.snippet = snippet
        super().__init__(f"line {line}, column {column}: {message}\n{snippet}")


class RuleEvaluationError(ValueError):
    """A compiled rule that cannot be evaluated against the given values (type mismatch, unknown list...)."""

    def __init__(self, message: str, *, line: int, column: int) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"{message} (line {line}, column {column})")


def model_score_variable(model_id: str) -> str:
    """The variable name AFD gives a model's score, e.g. `sample_fraud_detection_model_insightscore`."""
    return f"{model_id}_insightscore"


# --- values -------------------------------------------------------------------------------------


class _EvalFailure(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


_NUMERIC_TEXT: Final = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
_INTEGER_TEXT: Final = re.compile(r"\s*[+-]?\d+\s*")


def _describe(value: _Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    return f"number {_text(value)}"


def _text(value: bool | int | float | str) -> str:
    """The string form used for list membership and string functions."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _parse_number(text: str) -> int | float | None:
    if _INTEGER_TEXT.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts from text
            return float(text)
    if _NUMERIC_TEXT.fullmatch(text):
        return float(text)
    return None


def _number(value: _Value, pos: int, what: str) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        parsed = _parse_number(value)
        if parsed is not None:
            return parsed
    raise _EvalFailure(f"{what} needs a number, got {_describe(value)}", pos)


def _truth(value: _Value, pos: int) -> bool:
    if value is True or value is False:
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _EvalFailure(f"expected true or false, got {_describe(value)}", pos)


def _equals(a: _Value, b: _Value, pos: int) -> bool:
    if a is None or b is None:
        return a is b
    a_bool, b_bool = type(a) is bool, type(b) is bool
    if a_bool or b_bool:
        if a_bool and b_bool:
            return a is b
        flag, other = (a, b) if a_bool else (b, a)
        if isinstance(other, str) and other.strip().lower() in ("true", "false"):
            return (other.strip().lower() == "true") is flag
        raise _EvalFailure(f"cannot compare {_describe(a)} with {_describe(b)}", pos)
    a_str, b_str = isinstance(a, str), isinstance(b, str)
    if a_str and b_str:
        return a == b
    if a_str or b_str:
        return _number(a, pos, "comparing with a number") == _number(
            b, pos, "comparing with a number"
        )
    return a == b


def _same(value: _Value, item: _Value, pos: int) -> bool:
    # An inline list may mix types ([1, "1a", true]); an item the value cannot be compared with
    # is simply not a match, whereas `==` reports the mismatch.
    try:
        return _equals(value, item, pos)
    except _EvalFailure:
        return False


_ORDERINGS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _order(op: str, a: _Value, b: _Value, pos: int) -> bool:
    if a is None or b is None:
        return False
    if type(a) is bool or type(b) is bool:
        raise _EvalFailure(f"'{op}' cannot order {_describe(a)} and {_describe(b)}", pos)
    if isinstance(a, str) and isinstance(b, str):
        return bool(_ORDERINGS[op](a, b))
    return bool(_ORDERINGS[op](_number(a, pos, f"'{op}'"), _number(b, pos, f"'{op}'")))


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def _scalar(name: str, value: object, pos: int) -> _Value:
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    raise _EvalFailure(f"${name} has a value of unsupported type {type(value).__name__}", pos)


# --- AST ----------------------------------------------------------------------------------------

# Static kinds, used to reject at compile time what can never evaluate (`$a + 1` as a rule, `"x" * 2`).
_BOOL, _NUMBER, _STRING, _NULL, _ANY = "condition", "number", "string", "null", "any"


@dataclass(frozen=True, slots=True)
class _Node:
    pos: int

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        raise NotImplementedError

    def children(self) -> tuple[_Node, ...]:
        return ()

    def kind(self) -> str:
        return _BOOL


@dataclass(frozen=True, slots=True)
class _Literal(_Node):
    value: _Value

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        return self.value

    def kind(self) -> str:
        if self.value is None:
            return _NULL
        if isinstance(self.value, bool):
            return _BOOL
        return _STRING if isinstance(self.value, str) else _NUMBER


@dataclass(frozen=True, slots=True)
class _Var(_Node):
    name: str

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        value = values.get(self.name)
        if type(value) in _SCALARS:
            return value  # type: ignore[return-value]
        return _scalar(self.name, value, self.pos)

    def kind(self) -> str:
        return _ANY


@dataclass(frozen=True, slots=True)
class _Neg(_Node):
    operand: _Node

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        value = self.operand.compute(values, lists)
        return None if value is None else -_number(value, self.operand.pos, "'-'")

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)

    def kind(self) -> str:
        return _NUMBER


@dataclass(frozen=True, slots=True)
class _Arith(_Node):
    op: str
    left: _Node
    right: _Node

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        a = self.left.compute(values, lists)
        b = self.right.compute(values, lists)
        if a is None or b is None:
            return None
        op = self.op
        x = _number(a, self.left.pos, f"'{op}'")
        y = _number(b, self.right.pos, f"'{op}'")
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if y == 0:
            raise _EvalFailure("division by zero", self.right.pos)
        if op == "/":
            try:
                return x / y
            except OverflowError:
                raise _EvalFailure("number too large to divide", self.pos) from None
        # AFD evaluates on the JVM, whose remainder takes the sign of the dividend (-7 % 3 == -1).
        if isinstance(x, float) or isinstance(y, float):
            return math.fmod(x, y)
        remainder = abs(x) % abs(y)
        return -remainder if x < 0 else remainder

    def children(self) -> tuple[_Node, ...]:
        return (self.left, self.right)

    def kind(self) -> str:
        return _NUMBER


@dataclass(frozen=True, slots=True)
class _Compare(_Node):
    op: str
    left: _Node
    right: _Node

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        a = self.left.compute(values, lists)
        b = self.right.compute(values, lists)
        op = self.op
        kind_a, kind_b = type(a), type(b)
        if (kind_a is int or kind_a is float) and (kind_b is int or kind_b is float):
            if op == "==":
                return a == b
            if op == "!=":
                return a != b
            return bool(_ORDERINGS[op](a, b))
        if op == "==":
            return _equals(a, b, self.pos)
        if op == "!=":
            return not _equals(a, b, self.pos)
        return _order(op, a, b, self.pos)

    def children(self) -> tuple[_Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class _InList(_Node):
    operand: _Node
    name: str
    list_pos: int
    negated: bool

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        entries = lists.get(self.name)
        if entries is None:
            raise _EvalFailure(f"unknown list @{self.name}", self.list_pos)
        value = self.operand.compute(values, lists)
        found = value is not None and _text(value) in entries
        return found is not self.negated

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class _InItems(_Node):
    operand: _Node
    items: tuple[_Value, ...]
    negated: bool

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        value = self.operand.compute(values, lists)
        if value is None:
            found = None in self.items
        else:
            found = any(_same(value, item, self.pos) for item in self.items)
        return found is not self.negated

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class _And(_Node):
    operands: tuple[_Node, ...]

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        for operand in self.operands:
            value = operand.compute(values, lists)
            if value is False or (value is not True and not _truth(value, operand.pos)):
                return False
        return True

    def children(self) -> tuple[_Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class _Or(_Node):
    operands: tuple[_Node, ...]

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        for operand in self.operands:
            value = operand.compute(values, lists)
            if value is True or (value is not False and _truth(value, operand.pos)):
                return True
        return False

    def children(self) -> tuple[_Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class _Not(_Node):
    operand: _Node

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        return not _truth(self.operand.compute(values, lists), self.operand.pos)

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class _RegexMatch(_Node):
    pattern: re.Pattern[str] = field(compare=False)
    subject: _Node

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        value = self.subject.compute(values, lists)
        if value is None:
            return False
        text = _text(value)
        if len(text) > MAX_REGEX_SUBJECT:
            raise _EvalFailure(
                f"regex_match() value is longer than {MAX_REGEX_SUBJECT} characters",
                self.subject.pos,
            )
        # AFD matches like Java's String.matches(): the whole value, not a prefix or substring.
        return self.pattern.fullmatch(text) is not None

    def children(self) -> tuple[_Node, ...]:
        return (self.subject,)


@dataclass(frozen=True, slots=True)
class _ChangeCase(_Node):
    upper: bool
    operand: _Node

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        value = self.operand.compute(values, lists)
        if value is None:
            return None
        return _text(value).upper() if self.upper else _text(value).lower()

    def children(self) -> tuple[_Node, ...]:
        return (self.operand,)

    def kind(self) -> str:
        return _STRING


@dataclass(frozen=True, slots=True)
class _TextTest(_Node):
    function: str
    subject: _Node
    needle: _Node

    def compute(self, values: _Values, lists: _Lists) -> _Value:
        value = self.subject.compute(values, lists)
        needle = self.needle.compute(values, lists)
        if value is None or needle is None:
            return False
        text, part = _text(value), _text(needle)
        if self.function == "starts_with":
            return text.startswith(part)
        if self.function == "ends_with":
            return text.endswith(part)
        return part in text

    def children(self) -> tuple[_Node, ...]:
        return (self.subject, self.needle)


@dataclass(frozen=True, slots=True)
class _ListName:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class _ListItems:
    items: tuple[_Value, ...]


# --- regular expressions ------------------------------------------------------------------------


class _RegexRejected(Exception):
    pass


# RE2 (which AFD uses) has none of these; Python's backtracking engine would accept them.
_NON_RE2: Final = re.compile(r"(?<!\\)(?:\\[1-9]|\(\?P=|\(\?<?[=!]|\(\?>|\(\?\(|[*+?}]\+)")


@dataclass(slots=True)
class _ReItem:
    atom: str | None  # source of a single-character atom; None for groups and anchors
    group: list[list[_ReItem]] | None
    low: int = 1
    high: int | None = 1  # None: no upper bound


_COUNTED: Final = re.compile(r"\{(\d*)(,?)(\d*)\}")


class _ReScanner:
    """Just enough of a regex parser to judge backtracking, for patterns that already compiled."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def alternatives(self) -> list[list[_ReItem]]:
        alternatives: list[list[_ReItem]] = [[]]
        while self.i < len(self.p) and self.p[self.i] != ")":
            if self.p[self.i] == "|":
                self.i += 1
                alternatives.append([])
                continue
            item = self._atom()
            if item is not None:
                self._quantifier(item)
                alternatives[-1].append(item)
        return alternatives

    def _atom(self) -> _ReItem | None:
        p, i = self.p, self.i
        c = p[i]
        if c == "(":
            self.i = i + 1
            if p.startswith("?", self.i):
                if p.startswith("?#", self.i):
                    self.i = p.index(")", self.i) + 1
                    return None
                if p.startswith("?P<", self.i):
                    self.i = p.index(">", self.i) + 1
                else:
                    j = self.i + 1
                    while p[j] not in ":)":
                        j += 1
                    self.i = j + 1
                    if p[j] == ")":
                        return None
            body = self.alternatives()
            self.i += 1
            return _ReItem(None, body)
        if c == "[":
            j = i + 1
            if p[j] == "^":
                j += 1
            if p[j] == "]":
                j += 1
            while p[j] != "]":
                j += 2 if p[j] == "\\" else 1
            self.i = j + 1
            return _ReItem(p[i : j + 1], None)
        if c == "\\":
            nxt = p[i + 1]
            width = {"x": 4, "u": 6, "U": 10}.get(nxt, 2)
            if nxt == "N":
                width = p.index("}", i) + 1 - i
            elif nxt == "0":
                while width < 4 and i + width < len(p) and p[i + width] in "01234567":
                    width += 1
            self.i = i + width
            return _ReItem(None if nxt in "AbBZ" else p[i : i + width], None)
        self.i = i + 1
        return _ReItem(None if c in "^$" else c, None)

    def _quantifier(self, item: _ReItem) -> None:
        p, i = self.p, self.i
        if i >= len(p):
            return
        if p[i] in "*+?":
            item.low = 1 if p[i] == "+" else 0
            item.high = 1 if p[i] == "?" else None
            self.i = i + 1
        elif counted := _COUNTED.match(p, i):
            low, comma, high = counted.groups()
            item.low = int(low or 0)
            item.high = item.low if not comma else (int(high) if high else None)
            self.i = counted.end()
        else:
            return
        if self.i < len(p) and p[self.i] == "?":
            self.i += 1


def _fixed(item: _ReItem) -> bool:
    """Whether an item always consumes the same number of characters."""
    if item.low != item.high:
        return False
    return item.group is None or (
        len(item.group) == 1 and all(_fixed(inner) for inner in item.group[0])
    )


def _rigid(item: _ReItem) -> bool:
    """Whether an item's length varies only through alternation (a constant factor, unlike `*`)."""
    if item.low != item.high:
        return False
    return item.group is None or all(_rigid(inner) for seq in item.group for inner in seq)


@lru_cache(maxsize=4096)
def _charset(atom: str) -> frozenset[str]:
    """The ASCII characters a single-character atom matches, in either case.

    Both cases count because a (?i) flag elsewhere in the pattern may apply to the atom.
    """
    pattern = re.compile(atom, re.ASCII)
    matched = [c for c in map(chr, range(128)) if pattern.fullmatch(c)]
    return frozenset(matched + [c.swapcase() for c in matched])


def _overlap(first: str, second: str) -> bool:
    return not _charset(first).isdisjoint(_charset(second))


def _item_chars(item: _ReItem) -> frozenset[str]:
    if item.group is not None:
        return frozenset().union(*(_item_chars(inner) for seq in item.group for inner in seq))
    return _charset(item.atom) if item.atom else frozenset()


def _chain_length(alternatives: list[list[_ReItem]]) -> int:
    """The longest run of variable-length items that can trade characters (`.*a.*a.*a` has 3).

    Backtracking over k such items costs O(n**k) on a value of length n.
    """
    longest = 0
    for sequence in alternatives:
        chain, absorbed = 0, frozenset[str]()
        for item in sequence:
            if item.group is not None:
                longest = max(longest, _chain_length(item.group))
            chars = _item_chars(item)
            if not chars:
                continue
            if absorbed.isdisjoint(chars):
                chain, absorbed = 0, frozenset()
            if not _rigid(item):
                chain, absorbed = chain + 1, absorbed | chars
                longest = max(longest, chain)
    return longest


def _splits_uniquely(body: list[list[_ReItem]]) -> bool:
    """Whether a repeated group can divide its input into passes in only one way.

    `([a-z0-9-]+\\.)+` does: each pass ends with the one '.' its inner repetition cannot consume.
    `(a+)+`, `(\\w+\\s?)+`, `(a.?)*` and `(a|ab)+` do not, and backtrack exponentially on a near miss.
    """
    if len(body) > 1:
        firsts = [sequence[0] if sequence else None for sequence in body]
        if not all(item is not None and item.atom and item.low == 1 for item in firsts):
            return False
        if not all(_fixed(item) for sequence in body for item in sequence):
            return False
        atoms = [item.atom for item in firsts if item is not None and item.atom]
        return not any(_overlap(a, b) for n, a in enumerate(atoms) for b in atoms[n + 1 :])
    variable = [item for item in body[0] if not _fixed(item)]
    if not variable:
        return True
    if any(item.atom is None for item in variable):
        return False
    return any(
        item.atom is not None
        and item.low == item.high == 1
        and not any(_overlap(item.atom, other.atom) for other in variable if other.atom)
        for item in body[0]
    )


def _ambiguous_repetition(alternatives: list[list[_ReItem]]) -> bool:
    for sequence in alternatives:
        for item in sequence:
            if item.group is None:
                continue
            if _ambiguous_repetition(item.group):
                return True
            if (item.high is None or item.high > 1) and not _splits_uniquely(item.group):
                return True
    return False


@lru_cache(maxsize=1024)
def _compile_regex(pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise _RegexRejected(f"regular expression is longer than {MAX_REGEX_LENGTH} characters")
    unsupported = _NON_RE2.search(pattern)
    if unsupported is not None:
        raise _RegexRejected(
            f"regular expression uses {unsupported.group()!r}: backreferences, lookaround, "
            "atomic groups and possessive quantifiers are not supported"
        )
    try:
        # ASCII classes, as in RE2/Java: \d is 0-9 and \w is [A-Za-z0-9_], not every Unicode digit.
        compiled = re.compile(pattern, re.ASCII)
    except re.error as exc:
        raise _RegexRejected(f"invalid regular expression: {exc}") from None
    parsed = _ReScanner(pattern).alternatives()
    if _ambiguous_repetition(parsed):
        raise _RegexRejected(
            "regular expression repeats a group whose passes can overlap (like (a+)+ or (a|ab)+), "
            "which can take exponential time; rewrite it so that each pass is unambiguous"
        )
    if _chain_length(parsed) > _MAX_REGEX_CHAIN:
        raise _RegexRejected(
            f"regular expression has more than {_MAX_REGEX_CHAIN} repetitions in a row that can "
            "match the same characters (like .*a.*a.*a), which can take polynomial time on long "
            "values; separate them with characters they cannot match"
        )
    return compiled


# --- grammar ------------------------------------------------------------------------------------

_GRAMMAR: Final = r"""
?start: expr

?expr: expr OR and_expr -> or_
     | and_expr
?and_expr: and_expr AND not_expr -> and_
         | not_expr
?not_expr: NOT not_expr -> not_
         | BANG not_expr -> not_
         | comparison
?comparison: sum COMP_OP sum -> compare
           | sum IN list_ref -> member
           | sum NOT_IN list_ref -> member
           | sum
?sum: sum PLUS product -> arith
    | sum MINUS product -> arith
    | product
?product: product STAR unary -> arith
        | product SLASH unary -> arith
        | product PERCENT unary -> arith
        | unary
?unary: MINUS unary -> neg
      | atom
?atom: VAR -> var
     | NUMBER -> number
     | STRING -> string
     | TRUE -> constant
     | FALSE -> constant
     | NULL -> constant
     | NAME _LPAR arguments? _RPAR -> call
     | _LPAR expr _RPAR
arguments: expr (_COMMA expr)*
?list_ref: LIST -> named_list
         | _LSQB items? _RSQB -> inline_list
items: item (_COMMA item)*
item: MINUS? NUMBER | STRING | TRUE | FALSE | NULL

OR: /or\b/i
AND: /and\b/i
NOT: /not\b/i
IN: /in\b/i
NOT_IN: /not\s+in\b/i
TRUE: /true\b/i
FALSE: /false\b/i
NULL: /null\b/i
NAME: /(?!(and|or|not|in|true|false|null)\b)[a-z_][a-z0-9_]*/i
VAR: /\$[A-Za-z0-9_]+/
LIST: /@[A-Za-z0-9_]+/
NUMBER: /\d+(\.\d+)?([eE][+-]?\d+)?/
STRING: /"([^"\\\n]|\\[^\n])*"/
COMP_OP: "==" | "!=" | ">=" | "<=" | ">" | "<"
BANG: "!"
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
PERCENT: "%"
_LPAR: "("
_RPAR: ")"
_LSQB: "["
_RSQB: "]"
_COMMA: ","

%ignore /\s+/
"""

_FUNCTIONS: Final = {
    "regex_match": 2,
    "lowercase": 1,
    "uppercase": 1,
    "starts_with": 2,
    "ends_with": 2,
    "contains": 2,
}
_CONSTANTS: Final[dict[str, _Value]] = {"true": True, "false": False, "null": None}


class _BuildError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _pos(token: Token) -> int:
    return token.start_pos if token.start_pos is not None else 0


def _unescape(body: str) -> str:
    # Only \" and \\ are escapes; any other backslash stays, so regex patterns such as
    # ".*@gmail\.com" (as AFD's documentation writes them) reach the regex engine unchanged.
    return re.sub(r"\\([\"\\])", r"\1", body)


def _number_literal(text: str) -> int | float:
    if text.isdigit() and len(text) <= 300:
        return int(text)
    return float(text)


def _expect(node: _Node, allowed: tuple[str, ...], message: str) -> None:
    kind = node.kind()
    if kind not in allowed:
        raise _BuildError(message.format(found=f"a {kind}" if kind != _NULL else "null"), node.pos)


@v_args(inline=True)
class _Builder(Transformer[Token, _Node]):
    """Builds the AST while LALR reduces, so no recursive pass over the parse tree is needed."""

    def or_(self, left: _Node, _op: Token, right: _Node) -> _Node:
        return self._logical(_Or, left, right, "or")

    def and_(self, left: _Node, _op: Token, right: _Node) -> _Node:
        return self._logical(_And, left, right, "and")

    @staticmethod
    def _logical(cls: type[_And] | type[_Or], left: _Node, right: _Node, word: str) -> _Node:
        for side in (left, right):
            _expect(
                side, (_BOOL, _ANY), f"'{word}' needs conditions on both sides, found {{found}}"
            )
        operands = left.operands if isinstance(left, cls) else (left,)
        return cls(left.pos, (*operands, right))

    def not_(self, op: Token, operand: _Node) -> _Node:
        _expect(operand, (_BOOL, _ANY), f"'{op.value}' needs a condition, found {{found}}")
        return _Not(_pos(op), operand)

    def compare(self, left: _Node, op: Token, right: _Node) -> _Node:
        if op.value not in ("==", "!="):
            for side in (left, right):
                _expect(side, (_NUMBER, _STRING, _ANY), f"'{op.value}' cannot order {{found}}")
        return _Compare(left.pos, op.value, left, right)

    def member(self, operand: _Node, op: Token, target: _ListName | _ListItems) -> _Node:
        _expect(
            operand,
            (_NUMBER, _STRING, _BOOL, _ANY),
            "'in' needs a value on its left, found {found}",
        )
        negated = op.type == "NOT_IN"
        if isinstance(target, _ListName):
            return _InList(operand.pos, operand, target.name, target.pos, negated)
        return _InItems(operand.pos, operand, target.items, negated)

    def arith(self, left: _Node, op: Token, right: _Node) -> _Node:
        for side in (left, right):
            _expect(side, (_NUMBER, _ANY), f"'{op.value}' needs numbers, found {{found}}")
        return _Arith(left.pos, op.value, left, right)

    def neg(self, op: Token, operand: _Node) -> _Node:
        _expect(operand, (_NUMBER, _ANY), "'-' needs a number, found {found}")
        if isinstance(operand, _Literal) and isinstance(operand.value, int | float):
            return _Literal(_pos(op), -operand.value)
        return _Neg(_pos(op), operand)

    def var(self, token: Token) -> _Node:
        return _Var(_pos(token), token.value[1:])

    def number(self, token: Token) -> _Node:
        return _Literal(_pos(token), _number_literal(token.value))

    def string(self, token: Token) -> _Node:
        return _Literal(_pos(token), _unescape(token.value[1:-1]))

    def constant(self, token: Token) -> _Node:
        return _Literal(_pos(token), _CONSTANTS[token.value.lower()])

    def arguments(self, *arguments: _Node) -> tuple[_Node, ...]:
        return arguments

    def call(self, name: Token, arguments: tuple[_Node, ...] = ()) -> _Node:
        function = name.value.lower()
        expected = _FUNCTIONS.get(function)
        if expected is None:
            known = ", ".join(sorted(_FUNCTIONS))
            raise _BuildError(
                f"unknown function '{name.value}' (known functions: {known})", _pos(name)
            )
        if len(arguments) != expected:
            plural = "s" if expected > 1 else ""
            raise _BuildError(
                f"{function}() takes {expected} argument{plural}, got {len(arguments)}", _pos(name)
            )
        text_found = f"{function}() needs text, found {{found}}"
        if function == "regex_match":
            pattern, subject = arguments
            if not (isinstance(pattern, _Literal) and isinstance(pattern.value, str)):
                raise _BuildError(
                    'regex_match() takes the pattern first, as a string: regex_match("^abc", $variable)',
                    pattern.pos,
                )
            _expect(subject, (_STRING, _NUMBER, _ANY), text_found)
            try:
                compiled = _compile_regex(pattern.value)
            except _RegexRejected as exc:
                raise _BuildError(str(exc), pattern.pos) from None
            return _RegexMatch(_pos(name), compiled, subject)
        for argument in arguments:
            _expect(argument, (_STRING, _NUMBER, _ANY), text_found)
        if function in ("lowercase", "uppercase"):
            return _ChangeCase(_pos(name), function == "uppercase", arguments[0])
        return _TextTest(_pos(name), function, arguments[0], arguments[1])

    def named_list(self, token: Token) -> _ListName:
        return _ListName(token.value[1:], _pos(token))

    def items(self, *items: _Value) -> tuple[_Value, ...]:
        return items

    def inline_list(self, items: tuple[_Value, ...] = ()) -> _ListItems:
        return _ListItems(items)

    def item(self, *tokens: Token) -> _Value:
        token = tokens[-1]
        if token.type == "NUMBER":
            value = _number_literal(token.value)
            return -value if len(tokens) == 2 else value
        if token.type == "STRING":
            return _unescape(token.value[1:-1])
        return _CONSTANTS[token.value.lower()]


_PARSER: Final = Lark(
    _GRAMMAR, parser="lalr", lexer="contextual", transformer=_Builder(), maybe_placeholders=False
)


# --- errors -------------------------------------------------------------------------------------


def _locate(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


def _context(text: str, pos: int, span: int = 40) -> str:
    # Same window as lark's UnexpectedInput.get_context, indented and without the trailing newline,
    # so lark's errors and the compiler's own (unknown function, type errors) read alike.
    before = text[max(pos - span, 0) : pos].rsplit("\n", 1)[-1].expandtabs()
    after = text[pos : pos + span].split("\n", 1)[0]
    return f"  {before}{after}\n  {' ' * len(before)}^"


def _syntax_error(text: str, message: str, pos: int) -> RuleSyntaxError:
    line, column = _locate(text, pos)
    return RuleSyntaxError(message, line=line, column=column, snippet=_context(text, pos))


_PREVIOUS: Final = re.compile(
    r'(?:==|!=|>=|<=|[<>+\-*/%(,\[!]|"(?:[^"\\\n]|\\.)*"|[$@]?[A-Za-z0-9_.]+)$'
)
_VALUE_START: Final = "VAR"
_OPERATOR_FIXES: Final = {
    "=>": "'>='",
    "=<": "'<='",
    "=": "'=='",
    "&&": "'and'",
    "&": "'and'",
    "||": "'or'",
    "|": "'or'",
}


def _previous(text: str, pos: int) -> str | None:
    head = text[:pos].rstrip()
    match = _PREVIOUS.search(head)
    if match is None:
        return head[-1:] or None
    found = match.group()
    return found if len(found) <= 30 else found[:27] + "..."


def _after(text: str, pos: int) -> str:
    previous = _previous(text, pos)
    return f" after '{previous}'" if previous else ""


def _explain_characters(text: str, pos: int) -> tuple[str, int]:
    char = text[pos]
    if char == '"':
        return 'unclosed string: missing the closing "', pos
    if char == "'":
        return 'strings use double quotes: "like this"', pos
    for wrong, right in _OPERATOR_FIXES.items():
        if text.startswith(wrong, pos):
            return f"unknown operator '{wrong}'; use {right}", pos
    if char in "$@":
        kind = "variable" if char == "$" else "list"
        return f"expected a {kind} name after '{char}' (letters, digits and _)", pos
    return f"unexpected character {char!r}", pos


def _explain_token(text: str, exc: UnexpectedToken) -> tuple[str, int]:
    token: Token = exc.token
    expected = set(exc.expected)
    at_end = token.type == "$END"
    pos = len(text.rstrip()) if at_end else _pos(token)
    found = "the end of the rule" if at_end else f"'{token.value}'"
    if expected == {"_LPAR"}:
        word = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", text[:pos].rstrip())
        start = word.start() if word else pos
        name = word.group() if word else ""
        return f"unknown word '{name}': variables are written $name, functions name(...)", start
    if token.type == "STAR" and pos > 0 and text[pos - 1] == "*":
        return "unknown operator '**' (supported: + - * / %)", pos - 1
    if _VALUE_START in expected:
        return f"expected a value{_after(text, pos)} but found {found}", pos
    if expected <= {"LIST", "_LSQB"}:
        return f"expected a list (@name or [...]){_after(text, pos)} but found {found}", pos
    if "NUMBER" in expected and "STRING" in expected:
        return f"list items must be numbers, strings, true, false or null; found {found}", pos
    if token.type == "COMP_OP" and "COMP_OP" not in expected:
        return "comparisons cannot be chained; combine them with 'and'", pos
    if at_end and "_RPAR" in expected:
        return "missing ')'", pos
    if at_end and "_RSQB" in expected:
        return "missing ']'", pos
    if token.type == "_RPAR":
        return "unmatched ')'", pos
    return (
        f"expected an operator (and, or, ==, >, in ...){_after(text, pos)} but found {found}",
        pos,
    )


def _from_lark(text: str, exc: UnexpectedInput) -> RuleSyntaxError:
    if isinstance(exc, UnexpectedToken):
        message, pos = _explain_token(text, exc)
    elif isinstance(exc, UnexpectedCharacters):
        message, pos = _explain_characters(text, exc.pos_in_stream or 0)
    else:
        message, pos = "unexpected end of the rule", len(text.rstrip())
    return _syntax_error(text, message, pos)


# --- public API ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledRule:
    """A parsed rule expression, ready to evaluate any number of times (thread-safe, immutable)."""

    expression: str
    variables: frozenset[str]
    lists: frozenset[str]
    _root: _Node = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, object], lists: Mapping[str, Collection[str]]) -> bool:
        """Whether the rule matches; `values` maps variable names (no `$`) to scalars or None."""
        try:
            result = self._root.compute(values, lists)
            return result if result is True or result is False else _truth(result, self._root.pos)
        except _EvalFailure as exc:
            line, column = _locate(self.expression, exc.pos)
            raise RuleEvaluationError(exc.message, line=line, column=column) from None

    def references(self) -> list[tuple[str, str, int]]:
        """(`$` or `@`, name, offset in the expression) for each variable and list use, in order."""
        found: list[tuple[int, str, str]] = []
        for node, _depth in _walk(self._root):
            if isinstance(node, _Var):
                found.append((node.pos, "$", node.name))
            elif isinstance(node, _InList):
                found.append((node.list_pos, "@", node.name))
        return [(sigil, name, pos) for pos, sigil, name in sorted(found)]


def _walk(root: _Node) -> Iterator[tuple[_Node, int]]:
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in node.children())


def _fail(text: str, message: str, pos: int) -> NoReturn:
    raise _syntax_error(text, message, pos)


def _expect_root(expression: str, root: _Node) -> None:
    try:
        _expect(root, (_BOOL, _ANY), "a rule must be a condition (true or false), not {found}")
    except _BuildError as exc:
        raise _syntax_error(expression, exc.message, exc.pos) from None


def compile_rule(expression: str, *, max_length: int = 4000) -> CompiledRule:
    """Parse an AFD rule expression; raises RuleSyntaxError with the position of the first problem."""
    if len(expression) > max_length:
        _fail(expression, f"rule is longer than {max_length} characters", max_length)
    if not expression.strip():
        _fail(expression, "rule is empty", 0)
    try:
        root = cast(_Node, _PARSER.parse(expression))
    except _BuildError as exc:
        raise _syntax_error(expression, exc.message, exc.pos) from None
    except UnexpectedInput as exc:
        raise _from_lark(expression, exc) from None
    variables: set[str] = set()
    lists: set[str] = set()
    for node, depth in _walk(root):
        if depth > _MAX_DEPTH:
            _fail(expression, f"rule is nested more than {_MAX_DEPTH} levels deep", node.pos)
        if isinstance(node, _Var):
            variables.add(node.name)
        elif isinstance(node, _InList):
            lists.add(node.name)
    _expect_root(expression, root)
    return CompiledRule(expression, frozenset(variables), frozenset(lists), root)


def validate_rule(
    expression: str, *, known_variables: Collection[str], known_lists: Collection[str]
) -> CompiledRule:
    """Compile a rule and check that every `$variable` and `@list` it uses exists.

    Model scores are variables too: include `model_score_variable(model_id)` in `known_variables`.
    """
    rule = compile_rule(expression)
    variables = {name.removeprefix("$") for name in known_variables}
    lists = {name.removeprefix("@") for name in known_lists}
    problems: list[tuple[int, str]] = []
    reported: set[tuple[str, str]] = set()
    for sigil, name, pos in rule.references():
        known = variables if sigil == "$" else lists
        if name in known or (sigil, name) in reported:
            continue
        reported.add((sigil, name))
        line, column = _locate(expression, pos)
        kind = "variable" if sigil == "$" else "list"
        problems.append((pos, f"unknown {kind} {sigil}{name} (line {line}, column {column})"))
    if problems:
        _fail(expression, "; ".join(message for _, message in problems), problems[0][0])
    return rule
