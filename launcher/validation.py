"""Turn pydantic errors into messages that name the file, the line, the field path and the fix."""
from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from launcher.yamlsource import ConfigError, YamlSource


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """Follow `loc` through nested models to find the model that owns the last key."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Find a BaseModel inside Optional[...] / list[...] / dict[str, ...] annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _clean_loc(loc: tuple) -> tuple:
    # pydantic inserts the tag of discriminated/function validators into loc; drop non-data parts
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def format_errors(exc: ValidationError, model: type[BaseModel], source: YamlSource | None, prefix: tuple = ()) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = prefix + _clean_loc(tuple(err["loc"]))
        where = source.where(loc) if source else "<input>"
        field = _dotted(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc[len(prefix):-1]) if loc else None
            allowed = sorted(owner.model_fields) if owner else []
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = f"unknown key '{loc[-1]}'"
            if hint:
                msg += f" (did you mean '{hint[0]}'?)"
            if allowed:
                msg += f"; allowed here: {', '.join(allowed)}"
        else:
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "required field is missing"
            elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
                msg += f" (got {err['input']!r})"
        problems.append(f"{where}: {field}: {msg}")
    return problems


def validate_model(model: type[BaseModel], data: Any, source: YamlSource | None) -> BaseModel:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, model, source)) from None
