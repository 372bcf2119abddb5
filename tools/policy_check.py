"""Run the policy pack's rules over offline renders: `python -m tools.policy_check [--stack S | --all]`.

The same rule functions CrossGuard runs in `pulumi preview --policy-pack policy`;
exit 1 when a mandatory rule is violated (advisory findings are printed only).
"""
from __future__ import annotations

import argparse
import sys

from components.config.stack_files import stack_file
from policy import rules
from tools.render import STACKS_DIR, Rendered, all_stack_files, render_stack


def check(rendered: Rendered) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(mandatory violations, advisory findings) for one rendered stack, by rule name."""
    results = rules.check_stack([(r["type"], r["inputs"]) for r in rendered.resources])
    advisory = {k: v for k, v in results.items() if k in rules.ADVISORY_STACK_RULES and v}
    mandatory = {k: v for k, v in results.items() if k not in rules.ADVISORY_STACK_RULES and v}
    return mandatory, advisory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.policy_check")
    parser.add_argument("--stack", help="one stack name (default: every stack)")
    args = parser.parse_args(argv)
    files = [stack_file(STACKS_DIR, args.stack)] if args.stack else all_stack_files()
    failed = False
    for path in files:
        rendered = render_stack(path)
        mandatory, advisory = check(rendered)
        status = "FAIL" if mandatory else "ok"
        print(f"{rendered.stack}: {status}")
        for level, found in (("mandatory", mandatory), ("advisory", advisory)):
            for rule, messages in found.items():
                for message in messages:
                    print(f"  [{level}] {rule}: {message}")
        failed = failed or bool(mandatory)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
