"""``python -m eval_sandbox {prepare,selftest,info}``."""
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv.pop(0) if argv else "info"
    if cmd == "prepare":
        from .toolchain import main as m
        return m(["--prepare", *argv])
    if cmd == "info":
        from .toolchain import main as m
        return m(argv)
    if cmd == "selftest":
        from .selftest import main as m
        return m(argv)
    print("usage: python -m eval_sandbox {prepare [--dir DIR] | selftest | info}",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
