"""`completion bash|zsh|fish`: shell completion for the commands and their flags, generated from
the parser itself so it never falls behind. Installs for both `certmint` and `kubectl-certmint`."""
from __future__ import annotations

import argparse

COMMANDS = ("certmint", "kubectl-certmint")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help="print a shell completion script",
                       description="Print a completion script. bash: `source <(certmint completion bash)`; "
                                   "zsh: `source <(certmint completion zsh)`; fish: "
                                   "`certmint completion fish | source`.")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    p.set_defaults(handler=completion)


def completion(args: argparse.Namespace) -> int:
    from certmint.cli import parser

    tree = command_tree(parser())
    print({"bash": bash, "zsh": zsh, "fish": fish}[args.shell](tree), end="")
    return 0


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_tree(p: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], dict]:
    """Every command path (e.g. ('check', 'api')) with its subcommands, flags and their help and choices."""
    subs = _subparsers(p)
    flags = []
    for action in p._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            flags.append({"names": [s for s in action.option_strings], "help": (action.help or "").split("(")[0].strip(),
                          "takes_value": action.nargs != 0, "choices": list(action.choices or [])})
    positional = [list(a.choices) for a in p._actions
                  if not a.option_strings and a.choices and not isinstance(a, argparse._SubParsersAction)]
    tree = {prefix: {"subcommands": {name: (sp.description or "").split(".")[0] for name, sp in subs.items()},
                     "flags": flags, "choices": positional[0] if positional else []}}
    for name, sp in subs.items():
        tree.update(command_tree(sp, prefix + (name,)))
    return tree


def _words(node: dict) -> str:
    return " ".join([*node["subcommands"], *node["choices"],
                     *(n for f in node["flags"] for n in f["names"] if n.startswith("--"))])


def bash(tree: dict) -> str:
    cases = []
    for path, node in sorted(tree.items()):
        value_flags = " ".join(n for f in node["flags"] if f["takes_value"] for n in f["names"])
        choices = "".join(f'        {"|".join(f["names"])}) COMPREPLY=($(compgen -W "{" ".join(f["choices"])}" '
                          f'-- "$cur")); return;;\n' for f in node["flags"] if f["choices"])
        cases.append(f'    "{" ".join(path)}")\n      case "$prev" in\n{choices}'
                     f'        {"|".join(value_flags.split()) or "--no-such-flag"}) COMPREPLY=(); return;;\n'
                     f'      esac\n      COMPREPLY=($(compgen -W "{_words(node)}" -- "$cur"));;')
    known = " ".join(sorted({p[-1] for p in tree if p}))
    return f"""# certmint bash completion
_certmint() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} path="" word i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${{COMP_WORDS[i]}}
    case " {known} " in *" $word "*) path="${{path:+$path }}$word";; esac
  done
  case "$path" in
{chr(10).join(cases)}
  esac
}}
complete -o default -F _certmint {' '.join(COMMANDS)}
"""


def zsh(tree: dict) -> str:
    # zsh runs bash completion functions through bashcompinit, which ships with zsh.
    return "# certmint zsh completion\nautoload -U +X bashcompinit && bashcompinit\n" + bash(tree)


def fish(tree: dict) -> str:
    lines = ["# certmint fish completion"]
    top = tree[()]
    for command in COMMANDS:
        for name, about in top["subcommands"].items():
            lines.append(f"complete -c {command} -f -n __fish_use_subcommand -a {name} -d {_quote(about)}")
        for path, node in tree.items():
            if not path:
                continue
            seen = f"__fish_seen_subcommand_from {path[-1]}"
            for name, about in node["subcommands"].items():
                lines.append(f"complete -c {command} -f -n {_quote(seen)} -a {name} -d {_quote(about)}")
            for choice in node["choices"]:
                lines.append(f"complete -c {command} -f -n {_quote(seen)} -a {choice}")
            for f in node["flags"]:
                names = " ".join(f"-l {n[2:]}" if n.startswith("--") else f"-s {n[1:]}" for n in f["names"])
                value = f" -x -a {_quote(' '.join(f['choices']))}" if f["choices"] else " -r" if f["takes_value"] else ""
                lines.append(f"complete -c {command} -n {_quote(seen)} {names}{value} -d {_quote(f['help'])}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
