"""Config mistakes said in a few lines: the key path, what is allowed or the likely intended
key, and the file (and line) the value came from.

Snakemake's own message for a schema violation prints the whole sub-schema and the offending
config entry (hundreds of lines; the model's name far down); common.smk catches it and the
ValueErrors of the config checks and raises ConfigError(explain(...)) instead. Torch-free and
Snakemake-free: it reads the error, the schema and the config files as plain data.
"""

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# JSON Schema's types as a config's reader knows them (YAML), and Python's for the value given.
JSON_TYPES = {"integer": "an integer", "number": "a number", "string": "text", "boolean": "true or false",
              "object": "a mapping (key: value)", "array": "a list", "null": "null"}
PYTHON_TYPES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean", "dict": "object",
                "list": "array", "NoneType": "null"}
MAX_LISTED = 12  # allowed values or keys listed at most; the rest are counted
MAX_TEXT = 160  # characters of a value or message shown


class ConfigError(Exception):
    """A config mistake; its message is the whole story, shown as it is."""


@dataclass
class ConfigSources:
    """Where the config in force came from: its files (in load order) and the --config pairs."""

    files: list[str]
    overrides: dict = field(default_factory=dict)

    def origin(self, path: list) -> str:
        """The file and line that set ``path`` (or its nearest given parent), or the --config pair."""
        if path and path[0] in self.overrides:
            return f"--config {path[0]}={shorten(self.overrides[path[0]])}"
        for name in reversed(self.files):
            line = yaml_line(Path(name), path)
            if line is not None:
                return f"{display(name)}, line {line}"
        return " + ".join(map(display, self.files)) or "the command line"


def display(name) -> str:
    """A path relative to the working directory when inside it, as the user would type it."""
    path = Path(name)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def yaml_line(path: Path, keys: list) -> int | None:
    """1-based line of the deepest of ``keys`` (a path into the YAML mapping) that the file has;
    None when the file does not set even the first."""
    try:
        node = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if k.value == str(key)), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def shorten(value, limit: int = MAX_TEXT) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def listing(values) -> str:
    values = [str(v) for v in values]
    more = f", ... ({len(values) - MAX_LISTED} more)" if len(values) > MAX_LISTED else ""
    return ", ".join(values[:MAX_LISTED]) + more


def type_words(types) -> str:
    """A schema's type (one name or a list of them) in words."""
    return " or ".join(JSON_TYPES.get(t, t) for t in ([types] if isinstance(types, str) else types))


def suggestion(word, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def resolve(node: dict, schema: dict) -> dict:
    """``node`` with a local $ref ("#/$defs/model") replaced by what it points to."""
    while isinstance(node, dict) and node.get("$ref", "").startswith("#/"):
        target = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        # A node adds its own properties to those it refers to ($defs/training under model).
        properties = {**target.get("properties", {}), **rest.get("properties", {})}
        node = {**target, **rest} | ({"properties": properties} if properties else {})
    return node


def branches(node: dict, schema: dict) -> list[dict]:
    """``node`` and every sub-schema it combines (allOf/anyOf/oneOf, $refs resolved)."""
    node = resolve(node, schema)
    found = [node]
    for combinator in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(combinator, []):
            found += branches(sub, schema)
    return found


def known_keys(node: dict, schema: dict) -> dict:
    """Key -> sub-schema of every property ``node`` allows."""
    keys = {}
    for branch in branches(node, schema):
        keys.update(branch.get("properties", {}))
    return keys


def first_sentence(text: str) -> str:
    return shorten(re.split(r"(?<=[.;])\s", text.strip(), maxsplit=1)[0].rstrip(".;:"))


def unknown_keys(error, schema: dict, where: str) -> list[str]:
    allowed = known_keys(error.schema, schema)
    unexpected = [k for k in error.instance if k not in allowed] or re.findall(r"'([^']+)'", error.message)
    lines = []
    for key in unexpected:
        close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
        if not close:
            lines += [f"{where}{key}: unknown key", f"  allowed keys here: {listing(sorted(allowed))}"]
            continue
        lines.append(f"{where}{key}: unknown key; did you mean {close[0]!r}?")
        if allowed[close[0]].get("description"):
            lines.append(f"  ({close[0]}: {first_sentence(allowed[close[0]]['description'])})")
    return lines


def not_allowed(error, schema: dict, where: str) -> list[str]:
    """An enum, or an anyOf/oneOf of enums, patterns and types, that the value matches none of."""
    values, others = [], []
    for branch in branches(error.schema, schema):
        values += branch.get("enum", [])
        if "pattern" in branch:
            others.append(f"text matching {branch['pattern']}")
        elif "type" in branch and "enum" not in branch and not branch.get("anyOf") and not branch.get("oneOf"):
            others.append(type_words(branch["type"]))
    allowed = listing([shorten(v) for v in values] + others)
    hint = suggestion(error.instance, values) if isinstance(error.instance, str) else ""
    return [f"{where.rstrip('.')}: {shorten(error.instance)!s} is not allowed{hint}", f"  allowed: {allowed}"]


def schema_lines(error, schema: dict) -> tuple[list, list[str]]:
    """The key path and the lines that say what is wrong, for one jsonschema ValidationError."""
    path = list(error.absolute_path)
    where = "".join(f"{p}." for p in path)
    kind = error.validator
    if kind in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        lines = unknown_keys(error, schema, where)
        return path + [k for k in error.instance if k not in known_keys(error.schema, schema)][:1], lines
    if kind in ("enum", "anyOf", "oneOf"):
        return path, not_allowed(error, schema, where)
    if kind == "required":
        key = re.match(r"'([^']+)'", error.message)
        missing = key[1] if key else error.message
        return path, [f"{where}{missing}: missing; this key is required"]
    if kind == "type":
        given = type_words(PYTHON_TYPES.get(type(error.instance).__name__, type(error.instance).__name__))
        value = repr(error.instance) if isinstance(error.instance, str) else shorten(error.instance)
        return path, [f"{where.rstrip('.')}: {shorten(value)} is {given}; give {type_words(error.validator_value)}"]
    return path, [f"{where.rstrip('.') or 'config'}: {shorten(error.message)}"]


def validation_error(error: Exception):
    """The jsonschema ValidationError in ``error`` (Snakemake's validate() wraps it), if any."""
    for candidate in (error, *getattr(error, "args", ()), error.__cause__, error.__context__):
        if hasattr(candidate, "validator") and hasattr(candidate, "absolute_path"):
            return candidate
    return None


def path_in_message(message: str, config_keys) -> list:
    """The key path a config check's message starts with ("models.x.se_reduction only applies...")."""
    head = re.match(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*", message)
    if head is None or head[0].split(".")[0] not in config_keys:
        return []
    return head[0].split(".")


def explain(error: Exception, schema: dict, sources: ConfigSources) -> str:
    """A few lines for a config mistake: where it came from, the key path, what is allowed."""
    invalid = validation_error(error)
    if invalid is not None:
        path, lines = schema_lines(invalid, schema)
    else:
        message = str(error).strip()
        path, lines = path_in_message(message, schema.get("properties", {})), [message]
    origin = sources.origin(path)
    if origin.startswith("--config") and len(path) > 1 and invalid is not None and invalid.validator == "type":
        lines.append("(--config reads the values inside a mapping as text: set this key in a config file)")
    return "\n".join([f"Config error in {origin}:", *[f"  {line}" for line in lines]])
