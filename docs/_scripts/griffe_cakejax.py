"""griffe extensions for the API reference (mkdocstrings' `extensions:` option). They change
what the site shows, never the source.

`DisplayMath`: display maths written inside a paragraph of a docstring, `text $$ ... $$ text`,
is moved into a paragraph of its own. pymdownx.arithmatex recognises `$$ ... $$` as display
maths only when it is a block by itself; inside a paragraph its inline pattern would take the
inner `$ ... $` and leave a stray `$` on each side.

`EquinoxModules`: an `eqx.Module` is a dataclass whose `__init__` Python writes at import
time, so static analysis sees no signature. For each Equinox module of cakejax without an
`__init__` of its own, one is written here from its fields (its own and its cakejax parents'),
as Equinox would: the annotated instance attributes in order, with their defaults
(`eqx.field(default=...)`, `default_factory`, or the plain value), leaving out
`eqx.field(init=False)`, `ClassVar` and `eqx.AbstractVar`. The fields themselves are then not
listed as attributes: each docstring describes them under **Fields:**, and the signature gives
their types and defaults. Enumerations (`eqx.Enumeration`) keep their members.
"""

import re

import griffe


# `$$ ... $$` (not `$$$`), and the spaces and newlines around it.
_DISPLAY = re.compile(r"[ \t]*\n?[ \t]*(?<!\$)\$\$(?!\$)(.+?)(?<!\$)\$\$(?!\$)[ \t]*\n?", re.S)


def separate_display_maths(text: str) -> str:
    """`text` with each `$$ ... $$` on lines of its own, blank lines around it."""
    return _DISPLAY.sub(lambda m: f"\n\n$${m.group(1)}$$\n\n", text)


class DisplayMath(griffe.Extension):
    """Applies `separate_display_maths` to every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and "$$" in obj.docstring.value:
            obj.docstring.value = separate_display_maths(obj.docstring.value)


def _path(expr) -> str:
    return expr.canonical_path if isinstance(expr, griffe.Expr) else str(expr)


def _parent_classes(cls: griffe.Class) -> list[griffe.Class]:
    """`cls`'s bases that griffe loaded (cakejax's own), resolved through aliases."""
    parents = []
    for base in cls.bases:
        try:
            found = cls.modules_collection[_path(base)]
            while isinstance(found, griffe.Alias):
                found = found.final_target
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        if isinstance(found, griffe.Class):
            parents.append(found)
    return parents


def _kind(cls: griffe.Class) -> str | None:
    """ "module", "enumeration" or None: what Equinox class `cls` derives from, if any."""
    for base in cls.bases:
        path = _path(base)
        if path == "equinox.Enumeration":
            return "enumeration"
        if path == "equinox.Module":
            return "module"
    for parent in _parent_classes(cls):
        kind = _kind(parent)
        if kind is not None:
            return kind
    return None


def _field_options(value) -> dict | None:
    """The keyword arguments of `eqx.field(...)`, or None if `value` is not such a call."""
    if isinstance(value, griffe.ExprCall) and _path(value.function) == "equinox.field":
        return {
            arg.name: arg.value for arg in value.arguments if isinstance(arg, griffe.ExprKeyword)
        }
    return None


def _default(value):
    """What a field's class-level value means as an `__init__` default (None: required)."""
    if value is None:
        return None
    options = _field_options(value)
    if options is not None:
        if "default_factory" in options:
            return f"{options['default_factory']}()"
        return options.get("default")
    # A private helper wrapping `eqx.field` (`_field(10.0)`): its one argument is the default.
    if (
        isinstance(value, griffe.ExprCall)
        and str(value.function).startswith("_")
        and len(value.arguments) == 1
        and not isinstance(value.arguments[0], griffe.ExprKeyword)
    ):
        return value.arguments[0]
    return value


def _fields(cls: griffe.Class) -> list[griffe.Attribute]:
    """`cls`'s own dataclass fields, in source order."""
    fields = []
    for member in cls.members.values():
        if (
            isinstance(member, griffe.Attribute)
            and member.annotation is not None
            and "instance-attribute" in member.labels
            and not _path(member.annotation).startswith("equinox.AbstractVar")
        ):
            options = _field_options(member.value) or {}
            if str(options.get("init", "True")) != "False":
                fields.append(member)
    return fields


def _all_fields(cls: griffe.Class) -> dict[str, griffe.Attribute]:
    """Fields of `cls` and its cakejax parents, parents first (as dataclasses order them)."""
    fields: dict[str, griffe.Attribute] = {}
    for parent in reversed(_parent_classes(cls)):
        fields.update(_all_fields(parent))
    for field in _fields(cls):
        fields.pop(field.name, None)
        fields[field.name] = field
    return fields


class EquinoxModules(griffe.Extension):
    """Writes the `__init__` of cakejax's Equinox modules (see the module's docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._visit(pkg, set())

    def _visit(self, obj, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        for member in list(obj.members.values()):
            if member.is_alias:
                continue
            if isinstance(member, (griffe.Module, griffe.Class)):
                self._visit(member, seen)
        if isinstance(obj, griffe.Class) and _kind(obj) == "module":
            self._write_init(obj)

    @staticmethod
    def _write_init(cls: griffe.Class) -> None:
        fields = _all_fields(cls)
        if "__init__" not in cls.members:
            parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
            for name, field in fields.items():
                parameters.append(
                    griffe.Parameter(
                        name,
                        annotation=field.annotation,
                        default=_default(field.value),
                        kind=griffe.ParameterKind.positional_or_keyword,
                    )
                )
            init = griffe.Function(
                "__init__",
                lineno=cls.lineno,
                endlineno=cls.lineno,
                parent=cls,
                parameters=griffe.Parameters(*parameters),
                returns="None",
            )
            cls.set_member("__init__", init)
            cls.labels.add("dataclass")
        for field in _fields(cls):
            cls.del_member(field.name)
