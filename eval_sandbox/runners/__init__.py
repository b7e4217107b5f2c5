"""One runner per language."""
from .cpp import CppRunner
from .go import GoRunner
from .java import JavaRunner
from .js import JsRunner
from .python import PythonRunner
from .rust import RustRunner

RUNNERS = {r.language: r for r in (PythonRunner(), JsRunner(), JavaRunner(), CppRunner(),
                                    GoRunner(), RustRunner())}
ALIASES = {"javascript": "js", "c++": "cpp", "py": "python", "rs": "rust", "golang": "go"}


def get_runner(language: str):
    lang = ALIASES.get(language.lower(), language.lower())
    try:
        return RUNNERS[lang]
    except KeyError:
        raise ValueError(f"unsupported language {language!r}; choose from {sorted(RUNNERS)}") from None
